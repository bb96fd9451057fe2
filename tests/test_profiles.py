"""Hardware profiles: every shipped one loads and validates, config.toml overrides it, bad ones say where
and what, detection from /proc texts, and the `edgevoice profiles` command."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from edgevoice.cli import main
from edgevoice.config import ConfigError, parse_config
from edgevoice.hw.detect import Machine, card_lines, detect
from edgevoice.hw.profiles import BUILTIN_DIR, ProfileError, list_profiles, load_profile

SHIPPED = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))

# What each board's sources say (see the citations in each file), checked against what loads.
EXPECTED = {
    "respeaker-2mic": {"button": 17, "leds": ("apa102", 3, 10, 11), "card": "seeed2micvoicec"},
    "respeaker-4mic": {"button": None, "leds": ("apa102", 12, 10, 11), "card": "seeed4micvoicec"},
    "adafruit-voice-bonnet": {"button": 17, "leds": ("apa102", 3, 5, 6), "card": "seeed2micvoicec"},
    "aiy-voice-hat-v1": {"button": 23, "leds": ("pwm", 25), "card": "sndrpigooglevoi"},
    "generic-usb": {"button": 17, "leds": ("gpio", 27), "card": "USB-Audio"},
    "respeaker-2mic-v2": {"button": 17, "leds": ("apa102", 3, 10, 11), "card": "seeed2micvoicec"},
    "waveshare-wm8960": {"button": 17, "leds": ("gpio", 27), "card": "wm8960soundcard"},
    "respeaker-lite": {"button": 17, "leds": ("gpio", 27), "card": "ReSpeaker Lite", "aec": 0},
    "respeaker-usb-mic-array-v2": {"button": 17, "leds": ("gpio", 27), "card": "ArrayUAC10", "aec": 0},
    "usb-speakerphone": {"button": 17, "leds": ("gpio", 27), "card": "Jabra SPEAK", "aec": 0},
    "rpi-codec-zero": {"button": 27, "leds": ("gpio", 23), "card": "RPi Codec Zero"},
}
# Boards whose codec comes up unrouted: the mixer controls their vendor's ALSA state sets.
MIXERS = {
    "waveshare-wm8960": ("wm8960soundcard", "Left Output Mixer PCM Playback Switch", True),
    "rpi-codec-zero": ("Zero", "Mixin Left Mic 2 Switch", True),
}

CARDS = {
    "seeed2micvoicec": " 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n"
    "                      bcm2835 Headphones\n"
    " 1 [seeed2micvoicec]: seeed-2mic-voi - seeed-2mic-voicecard\n"
    "                      seeed-2mic-voicecard\n",
    "seeed4micvoicec": " 1 [seeed4micvoicec]: seeed-4mic-voi - seeed-4mic-voicecard\n"
    "                      seeed-4mic-voicecard\n",
    "sndrpigooglevoi": " 0 [sndrpigooglevoi]: snd_rpi_googlevoicehat_soundcar - snd_rpi_googlevoicehat_soundcard\n"
    "                      snd_rpi_googlevoicehat_soundcard\n",
    "USB-Audio": " 2 [Device         ]: USB-Audio - USB PnP Sound Device\n"
    "                      C-Media Electronics Inc. USB PnP Sound Device at usb-0000:01:00.0-1.3, full speed\n",
}


def test_the_required_boards_are_shipped() -> None:
    assert set(EXPECTED) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_validates(name: str) -> None:
    config = parse_config(f'[hardware]\nprofile = "{name}"\n', "config.toml")
    profile = load_profile(name)
    assert profile.sources and profile.title and profile.cards
    assert f"on top of hardware profile {BUILTIN_DIR / (name + '.toml')}" in config.source
    assert config.audio.input_device and config.audio.input_device != "default"
    expected = EXPECTED.get(name)
    if expected is None:
        return
    assert config.button.enabled == (expected["button"] is not None)
    if expected["button"] is not None:
        assert config.button.pin == expected["button"]
    leds = config.leds
    driver, *pins = expected["leds"]
    assert leds.driver == driver
    if driver == "apa102":
        assert (leds.count, leds.data_pin, leds.clock_pin) == tuple(pins)
        assert leds.brightness < 1  # pixel boards come with a brightness limit
    else:
        assert leds.pin == pins[0]
    assert expected["card"] in profile.cards
    # A device that cancels its own echo captures the channel it processes, and says so.
    assert config.audio.hardware_aec == ("aec" in expected)
    if "aec" in expected:
        assert profile.processed_channel == expected["aec"] == config.audio.input_channel
        assert config.audio.output_device == config.audio.input_device  # its canceller hears what it plays
    if name in MIXERS:
        card, control, value = MIXERS[name]
        assert config.mixer.card == card and config.mixer.controls[control] == value
    else:
        assert not config.mixer.controls


@pytest.mark.parametrize("name", SHIPPED)
def test_every_pin_in_a_profile_says_where_it_comes_from(name: str) -> None:
    for line in (BUILTIN_DIR / f"{name}.toml").read_text().splitlines():
        if re.match(r"\s*(\w+_)?pin\s*=", line):
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 5, f"{name}: uncited pin: {line}"


def test_config_overrides_any_field_of_the_profile() -> None:
    config = parse_config(
        '[hardware]\nprofile = "respeaker-2mic"\n[button]\npin = 22\nlong_press = "none"\n[leds]\nbrightness = 0.1\n'
        "[audio]\ninput_channel = 1\n",
        "config.toml",
    )
    assert config.button.pin == 22 and config.button.active_low is True
    assert config.leds.driver == "apa102" and config.leds.count == 3 and config.leds.brightness == 0.1
    assert config.audio.input_channel == 1 and config.audio.input_rate == 48000


def write_profile(directory: Path, name: str, body: str, meta: str | None = None) -> Path:
    path = directory / f"{name}.toml"
    meta = meta if meta is not None else '[profile]\ntitle = "Test board"\nsources = ["made up for a test"]\n'
    path.write_text(meta + body)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[button]\npin = 99\n", r"\[button\] pin = 99: must be between 0 and 53 \(a BCM GPIO number\)"),
        (
            "[leds]\ndriver = 'neopixel'\n",
            r"\[leds\] driver = 'neopixel': must be one of 'gpio', 'pwm', 'rgb', 'apa102'",
        ),
        ("[leds]\ndriver = 'apa102'\ndata_pin = 17\n", r"\[button\] pin and \[leds\] data_pin are both 17"),
        ("[leds]\ndriver = 'rgb'\nred_pin = 5\n", r"\[leds\] driver = 'rgb' needs red_pin, green_pin and blue_pin"),
        ("[buttons.mute]\npin = 22\nshort_press = 'talk'\n", r"\[buttons.mute\] short_press = 'talk'"),
    ],
)
def test_a_bad_profile_is_reported_against_its_own_file(tmp_path: Path, body: str, expected: str) -> None:
    path = write_profile(tmp_path, "board", body)
    with pytest.raises(ConfigError, match=expected) as caught:
        parse_config('[hardware]\nprofile = "board"\n', "/etc/edgevoice/config.toml", profile_dirs=[tmp_path])
    message = str(caught.value)
    assert message.startswith(f"{path} (the hardware profile 'board' named in /etc/edgevoice/config.toml): ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[profile]\ntitle = 'x'\nsources = ['y']\n[realtime]\nmodel = 'x'\n", r"\[realtime\] cannot be in a profile"),
        ("[profile]\ntitle = 'x'\n", r"sources is empty: say where the pin assignments come from"),
        ("[button]\npin = 5\n", r"a profile starts with a \[profile\] table"),
        ("[profile]\ntitle = 'x'\nsources = ['y']\ncolour = 'red'\n", r"unknown key \[profile\] colour"),
        ("[profile\n", r"not valid TOML"),
        (
            "[profile]\ntitle = 'x'\nsources = ['y']\nusb_ids = ['2886-0018']\n",
            r"usb_ids: '2886-0018' is not a USB id; write vendor:product in hex",
        ),
        ("[profile]\ntitle = 'x'\nsources = ['y']\ngeneric = 'yes'\n", r"\[profile\] generic must be true or false"),
        (
            "[profile]\ntitle = 'x'\nsources = ['y']\n[audio]\nhardware_aec = true\n",
            r"hardware_aec = true needs \[profile\] processed_channel",
        ),
        (
            "[profile]\ntitle = 'x'\nsources = ['y']\nprocessed_channel = 0\n[audio]\nhardware_aec = true\n"
            "input_channel = 2\n",
            r"\[audio\] input_channel = 2 is not the processed channel \(0\)",
        ),
    ],
)
def test_malformed_profile_files(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "board.toml").write_text(text)
    with pytest.raises(ProfileError, match=expected):
        load_profile("board", [tmp_path])
    with pytest.raises(ConfigError, match=r"config.toml: \[hardware\] profile = 'board': .*" + expected):
        parse_config('[hardware]\nprofile = "board"\n', "config.toml", profile_dirs=[tmp_path])


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no hardware profile named 'respeaker2'; known: .*respeaker-2mic"):
        parse_config('[hardware]\nprofile = "respeaker2"\n', "config.toml")


def test_the_combination_with_the_users_file_is_checked_and_says_so() -> None:
    with pytest.raises(ConfigError, match=r"config.toml on top of hardware profile .*respeaker-2mic.toml: "):
        parse_config('[hardware]\nprofile = "respeaker-2mic"\n[buttons.mute]\npin = 10\n', "config.toml")


def test_a_profile_by_path_and_an_installers_own_profile_wins(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "respeaker-2mic", "[button]\npin = 4  # my own wiring\n")
    config = parse_config(f'[hardware]\nprofile = "{path}"\n', "c.toml")
    assert config.button.pin == 4
    found = {p.name: p for p in list_profiles([tmp_path, BUILTIN_DIR])}
    assert found["respeaker-2mic"].path == path and "aiy-voice-hat-v1" in found


@pytest.mark.parametrize("card", sorted(CARDS))
def test_detect_from_the_sound_cards(card: str) -> None:
    expected = sorted(name for name, e in EXPECTED.items() if e["card"] == card)
    machine = Machine(model="Raspberry Pi 4 Model B Rev 1.4", cards=tuple(card_lines(CARDS[card])))
    detection = detect(list_profiles([BUILTIN_DIR]), machine)
    assert sorted(m.profile.name for m in detection.best) == expected
    assert all(kind == "card" for m in detection.best for kind, _ in m.evidence)
    assert not detection.machine.is_pi5


def test_detect_says_clearly_when_nothing_matches() -> None:
    machine = Machine(cards=tuple(card_lines(CARDS["seeed2micvoicec"].split(" 1 [")[0])))
    detection = detect(list_profiles([BUILTIN_DIR]), machine)
    assert detection.best == [] and detection.fits == [] and len(detection.machine.cards) == 1


def test_profiles_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def profiles_cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = main(["profiles", *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    listing = profiles_cli("list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in SHIPPED)
    shown = profiles_cli("show", "aiy-voice-hat-v1")
    assert shown.returncode == 0
    assert "pin = 23" in shown.stdout and "sources:" in shown.stdout and "aiyprojects-raspbian" in shown.stdout
    missing = profiles_cli("show", "nope")
    assert missing.returncode == 2 and "no hardware profile named 'nope'" in missing.stderr

    cards, model = tmp_path / "cards", tmp_path / "model"
    (tmp_path / "sys").mkdir()  # an empty sysfs: no USB or I2C devices
    cards.write_text(CARDS["seeed4micvoicec"])
    model.write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    roots = ("--sysfs", str(tmp_path / "sys"), "--procfs", str(tmp_path / "proc"))
    found = profiles_cli("detect", *roots, "--cards", str(cards), "--model", str(model))
    assert found.returncode == 0, found.stderr
    assert 'profile = "respeaker-4mic"' in found.stdout and "Raspberry Pi 5: GPIO goes through lgpio" in found.stdout
    cards.write_text(CARDS["seeed2micvoicec"])
    several = profiles_cli("detect", *roots, "--cards", str(cards), "--model", str(model))
    assert several.returncode == 0 and "adafruit-voice-bonnet" in several.stdout and "respeaker-2mic" in several.stdout
    nothing = profiles_cli("detect", *roots)
    assert nothing.returncode == 1 and "no profile matches this machine" in nothing.stdout


def test_every_shipped_board_is_in_the_hardware_doc() -> None:
    doc = (BUILTIN_DIR.parent / "docs" / "hardware.md").read_text()
    for name in SHIPPED:
        # Once in the table of boards, once in the table of what works and how it was checked.
        assert doc.count(f"| `{name}` |") == 2, name
