"""Configuration: defaults, validation errors that name file, key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevoice.config import Config, ConfigError, load_config, parse_config
from edgevoice.config_warnings import config_warnings


def test_empty_file_gives_defaults() -> None:
    config = parse_config("", "x.toml")
    assert config == Config()
    assert config.realtime.turn_detection.type == "none"
    assert config.button.pin == 17 and config.leds.pin == 27
    assert config.source == "x.toml"


def test_values_are_read_into_nested_sections() -> None:
    config = parse_config(
        """
        [realtime]
        model = "gpt-realtime-mini"
        [realtime.turn_detection]
        type = "server_vad"
        threshold = 0.7
        [audio]
        input_device = 3
        output_device = "USB"
        input_rate = 16000
        [conversation]
        idle_timeout_s = 30
        trim_lead_ms = 500
        """,
        "c.toml",
    )
    assert config.realtime.model == "gpt-realtime-mini"
    assert config.realtime.turn_detection.type == "server_vad"
    assert config.realtime.turn_detection.threshold == 0.7
    assert config.audio.input_device == 3 and config.audio.output_device == "USB"
    assert config.conversation.idle_timeout_s == 30.0 and isinstance(config.conversation.idle_timeout_s, float)
    assert config.conversation.trim_lead_ms == 500 and config.conversation.trim_silence  # on by default


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[audio]\ninptu_device = 1",
            r"c.toml: unknown key \[audio\] inptu_device \(did you mean 'input_device'\?\)",
        ),
        ("[audoi]\n", r"unknown section \[audoi\] \(did you mean 'audio'\?\)"),
        ("[audio]\ninput_rate = -1", r"\[audio\] input_rate = -1: must be between 0 and 192000"),
        ("[audio]\ninput_rate = 'fast'", r"\[audio\] input_rate = 'fast': must be a whole number"),
        ("[audio]\nframe_ms = 25", r"\[audio\] frame_ms = 25: must be one of 10, 20, 40"),
        ("[button]\nenabled = 1", r"\[button\] enabled = 1: must be true or false"),
        ("[button]\npin = true", r"\[button\] pin = True: must be a whole number, not a boolean"),
        (
            "[realtime.turn_detection]\ntype = 'vad'",
            r"\[realtime.turn_detection\] type = 'vad': must be one of",
        ),
        ("[realtime.turn_detection]\nthreshold = 2", r"threshold = 2.0: must be between 0.0 and 1.0"),
        ("[realtime]\nturn_detection = 'none'", r"\[realtime\] turn_detection = 'none': expected a table"),
        ("[realtime]\nurl = 'http://x'", r"\[realtime\] url = 'http://x': must start with wss://"),
        ("[realtime]\nmodel = ' '", r"\[realtime\] model is empty"),
        ("[realtime]\nurl = 'ws://api.openai.com/v1/realtime'", r"ws:// would send the API key unencrypted"),
        ("[realtime]\nurl = 'ws://localhost.attacker.example/v1'", r"ws:// would send the API key unencrypted"),
        ("[realtime]\ntoken_url = 'http://localhost.attacker.example/t'", r"token_url = .*: must be https://"),
        ("[realtime]\ntoken_url = 'http://10.0.0.2/t'", r"http:// only to this machine"),
        ("[leds]\npin = 17", r"\[button\] pin and \[leds\] pin are both 17"),
        ("[buttons.mute]\npin = 17", r"\[button\] pin and \[buttons.mute\] pin are both 17"),
        ("[buttons.mute]\npinn = 5", r"unknown key \[buttons.mute\] pinn \(did you mean 'pin'\?\)"),
        ("[buttons.mute]\npin = 60", r"\[buttons.mute\] pin = 60: must be between 0 and 53"),
        ("[buttons]\nmute = 5", r"\[buttons\] mute = 5: expected a table, \[buttons.mute\]"),
        ('[buttons."my button"]\npin = 5', r"\[buttons.my button\]: name it with letters, digits"),
        ("[button]\nshort_press = 'talk'", r"\[button\] short_press = 'talk': talking needs the button held"),
        ("[button]\nlong_press = 'end'", r"hold = 'talk' and long_press = 'end': a long hold would be both"),
        ("[button]\nhold = 'shout'", r"\[button\] hold = 'shout': must be one of 'auto', 'none', 'talk'"),
        ("[leds]\ndriver = 'apa102'\n[button]\npin = 9", r"\[button\] pin and \[leds\] \(SPI0 MISO\) are both 9"),
        ("[leds]\nmute_pin = 27", r"\[leds\] pin and \[leds\] mute_pin are both 27"),
        ("[leds]\ndriver = 'rgb'", r"\[leds\] driver = 'rgb' needs red_pin, green_pin and blue_pin"),
        ("[leds]\nbrightness = 1.5", r"\[leds\] brightness = 1.5: must be between 0.0 and 1.0"),
        ("[conversation]\ntrim_lead_ms = 50", r"\[conversation\] trim_lead_ms = 50: must be between 100 and 2000"),
        ("[conversation]\ntrim_trail_ms = 0.5", r"\[conversation\] trim_trail_ms = 0.5: must be a whole number"),
        ("[conversation]\ntrim_silence = 'yes'", r"\[conversation\] trim_silence = 'yes': must be true or false"),
        ("buttons = 5", r"buttons = 5: expected tables, one per name: \[buttons.NAME\]"),
        ("[hardware]\nprofile = 5", r"\[hardware\] profile = 5: must be a string"),
        (
            "[audio]\ninput_channels = 2\ninput_channel = 2",
            r"input_channel = 2: the microphone has input_channels = 2",
        ),
        ("audio = 5", r"audio = 5: expected a table"),
        ("[audio]\noutput_rate = 800", r"\[audio\] output_rate = 800: sound devices run at 8000 Hz or more"),
        ("[audio\n", r"not valid TOML"),
        ("[control]\nmode = 0o777", r"\[control\] mode = 0o777: must be between 0o600 and 0o666"),
        (
            "[[realtime.tools]]\nname = 'x'\ncommand = ['/bin/true']\nparameters = {type = 'string'}",
            r"\[\[realtime.tools\]\] 'x': parameters must be a JSON Schema object",
        ),
        ("[control]\nrequests_per_s = nan", r"\[control\] requests_per_s = nan: must be a number \(nan is not one\)"),
        ("[conversation]\nidle_timeout_s = -nan", r"idle_timeout_s = nan: must be a number"),
        ("a = " + "[" * 5000 + "]" * 5000, r"nested too deeply"),
    ],
)
def test_bad_values_name_the_file_the_key_and_what_is_allowed(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "c.toml")


def test_a_tool_whose_program_does_not_exist_is_warned_about() -> None:
    config = parse_config("[[realtime.tools]]\nname = 'x'\ncommand = ['/nonexistent/x-tool']", "c.toml")
    assert any("'/nonexistent/x-tool' is not an executable program here" in w for w in config_warnings(config))
    config = parse_config("[[realtime.tools]]\nname = 'x'\ncommand = ['sh', '-c', 'echo']", "c.toml")
    assert not any("executable" in w for w in config_warnings(config))


def test_plain_ws_and_http_are_accepted_to_this_machine_only() -> None:
    config = parse_config(
        "[realtime]\nurl = 'ws://[::1]:8765/v1/realtime'\ntoken_url = 'http://127.0.0.1:8080/token'", "c.toml"
    )
    assert config.realtime.url.startswith("ws://[::1]") and config.realtime.token_url.startswith("http://127.0.0.1")


def test_extra_buttons_and_a_vad_mapping() -> None:
    config = parse_config(
        "[realtime.turn_detection]\ntype = 'server_vad'\n"
        "[button]\nlong_press = 'end'\n[buttons.mute]\npin = 22\nshort_press = 'mute'\ndouble_press = 'none'\n"
        "[leds]\ndriver = 'rgb'\nred_pin = 5\ngreen_pin = 6\nblue_pin = 13\nmute_pin = 26\n",
        "c.toml",
    )
    assert set(config.buttons) == {"mute"} and config.buttons["mute"].pin == 22
    assert config.buttons["mute"].short_press == "mute" and config.buttons["mute"].bounce_ms == 20


def test_explicit_missing_file_is_an_error_but_missing_default_is_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(None, {"EDGEVOICE_CONFIG": str(tmp_path / "nope.toml")})
    path = tmp_path / "c.toml"
    path.write_text("[leds]\nenabled = false\n")
    assert load_config(None, {"EDGEVOICE_CONFIG": str(path)}).leds.enabled is False
    assert load_config(str(path)).source == str(path)


def test_warnings_for_models_with_a_shutdown_date_and_unknown_models() -> None:
    assert config_warnings(Config()) == []
    warn = config_warnings(parse_config("[realtime]\nmodel = 'gpt-realtime'\nreasoning_effort = 'low'"))
    assert any("shutdown" in w for w in warn) and any("reasoning_effort is ignored" in w for w in warn)
    unknown = config_warnings(parse_config("[realtime]\nmodel = 'gpt-9'"))
    assert any("not in edgevoice's model catalogue" in w and "[[usage.prices]]" in w for w in unknown)
    no_button = config_warnings(parse_config("[button]\nenabled = false"))
    assert any("push-to-talk" in w and "no button enabled" in w for w in no_button)
    assert (
        config_warnings(parse_config("[button]\nenabled = false\n[realtime.turn_detection]\ntype = 'server_vad'")) == []
    )


def test_every_key_is_documented() -> None:
    """docs/configuration.md must list every section and key the code accepts."""
    import dataclasses
    import typing
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()

    def walk(cls: type, section: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "source":
                continue
            if dataclasses.is_dataclass(hints[f.name]):
                name = f"{section}.{f.name}" if section else f.name
                assert f"## [{name}]" in doc, f"section [{name}] is not documented"
                walk(hints[f.name], name)
            elif typing.get_origin(hints[f.name]) is dict and dataclasses.is_dataclass(
                typing.get_args(hints[f.name])[1]
            ):  # named sections: [buttons.NAME] (a plain table such as [mixer] controls is a key)
                assert f"## [{f.name}.NAME]" in doc, f"sections [{f.name}.NAME] are not documented"
                walk(typing.get_args(hints[f.name])[1], f"{f.name}.NAME")
            else:
                assert f"| `{f.name}` |" in doc, f"[{section}] {f.name} is not documented"

    walk(Config, "")
