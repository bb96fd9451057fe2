"""edgevoice's configuration: TOML in, frozen dataclasses out, every key optional and validated.

Each section of `config.toml` is one frozen dataclass, defined by the subsystem it configures
(`edgevoice.audio.settings`, `edgevoice.realtime.settings`, `edgevoice.hw.settings`) or here for the
daemon's own sections. A key's Python type (and the `min`/`max`/`choices`
in its field metadata) is its validation rule. Unknown sections and keys are errors (a typo must not
silently fall back to a default), and every error names the file, the key, what was found and what is
allowed. The API key never lives here: see `edgevoice.realtime.credentials`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgevoice.audio.mixer import mixer_problems
from edgevoice.audio.settings import AudioSettings, MixerSettings
from edgevoice.control.settings import ControlSettings
from edgevoice.conversation.settings import ConversationSettings
from edgevoice.fleet.settings import DEFAULT_COMMANDS, MetricsSettings, MqttSettings, settings_problems
from edgevoice.hw.gestures import gesture_problems
from edgevoice.hw.settings import ButtonSettings, HardwareSettings, LedSettings
from edgevoice.realtime import models
from edgevoice.realtime.settings import RealtimeSettings, UsageSettings
from edgevoice.realtime.tool_schema import schema_problem
from edgevoice.realtime.urls import is_loopback_url

if TYPE_CHECKING:
    from edgevoice.hw.profiles import Profile

DEFAULT_PATH = Path("/etc/edgevoice/config.toml")
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ConfigError(Exception):
    """The configuration is unusable; the message says where and what to write instead."""


@dataclass(frozen=True)
class LoggingSettings:
    """`[logging]`: the least severe messages the daemon logs (to the journal under systemd, else stderr)."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class Config:
    """The whole of config.toml, one field per section, every one with its default; get it from `load_config`
    or `parse_config`, which validate it (a `Config()` built by hand skips the checks). Frozen: derive a
    changed copy with `replace(section=...)`. `source` says where it came from, for error messages."""

    realtime: RealtimeSettings = RealtimeSettings()
    audio: AudioSettings = AudioSettings()
    button: ButtonSettings = ButtonSettings()
    buttons: dict[str, ButtonSettings] = field(default_factory=dict)  # more buttons: [buttons.NAME]
    leds: LedSettings = LedSettings()
    mixer: MixerSettings = MixerSettings()
    hardware: HardwareSettings = HardwareSettings()
    conversation: ConversationSettings = ConversationSettings()
    control: ControlSettings = ControlSettings()
    usage: UsageSettings = UsageSettings()
    logging: LoggingSettings = LoggingSettings()
    mqtt: MqttSettings = MqttSettings()
    metrics: MetricsSettings = MetricsSettings()
    source: str = field(default="<defaults>", compare=False)

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


def config_path(cli_path: str | None, environ: typing.Mapping[str, str] = os.environ) -> tuple[Path, bool]:
    """The file to read and whether it was asked for explicitly (an explicit file must exist)."""
    if cli_path:
        return Path(cli_path), True
    if environ.get("EDGEVOICE_CONFIG"):
        return Path(environ["EDGEVOICE_CONFIG"]), True
    return DEFAULT_PATH, False


def load_config(cli_path: str | None = None, environ: typing.Mapping[str, str] = os.environ) -> Config:
    """Read and validate the configuration; a missing default file means all defaults."""
    path, explicit = config_path(cli_path, environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such file (given with --config or EDGEVOICE_CONFIG)") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<string>", profile_dirs: typing.Sequence[Path] | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not usable TOML: arrays or tables nested too deeply") from None
    config = _build(Config, data, source, "")
    if config.hardware.profile:
        config, source = _apply_profile(config.hardware.profile, data, source, profile_dirs)
    _check_combinations(config, source)
    return dataclasses.replace(config, source=source)


def _apply_profile(
    spec: str, data: dict[str, Any], source: str, dirs: typing.Sequence[Path] | None
) -> tuple[Config, str]:
    """The configuration with the hardware profile as its base (the file's own keys win), and its source.

    The profile is validated on its own first, so a bad value in it is reported against the profile's file.
    """
    from edgevoice.hw.profiles import ProfileError, load_profile  # only a configuration that names one loads them

    try:
        profile: Profile = load_profile(spec, dirs)
    except ProfileError as exc:
        raise ConfigError(f"{source}: [hardware] profile = {spec!r}: {exc}") from None
    profile_source = f"{profile.path} (the hardware profile {profile.name!r} named in {source})"
    _check_combinations(_build(Config, profile.settings, profile_source, ""), profile_source)
    merged = _build(Config, _merge(profile.settings, data), source, "")
    return merged, f"{source} on top of hardware profile {profile.path}"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: Any, data: dict[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            what = f"key {_key_words(where)}" if prefix else f"section [{key}]"
            raise ConfigError(f"{source}: unknown {what}{_did_you_mean(key, fields)}; allowed: {', '.join(fields)}")
        values[key] = _convert(hints[key], value, fields[key], source, where)
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: [{prefix}] needs a key '{name}'")
    return cls(**values)


def _convert(hint: Any, value: Any, f: dataclasses.Field[Any], source: str, where: str) -> Any:
    def fail(allowed: str) -> ConfigError:
        return ConfigError(f"{source}: {_key_words(where)} = {value!r}: {allowed}")

    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise fail("expected a table (a [section])")
        return _build(hint, value, source, where)
    origin = typing.get_origin(hint)
    if origin is tuple:  # a TOML array: of tables ([[section]]) or of plain values
        if not isinstance(value, list):
            raise fail("expected a list")
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            if not all(isinstance(v, dict) for v in value):
                raise fail(f"expected a list of tables ([[{where}]])")
            return tuple(_build(item, v, source, f"{where}[{i + 1}]") for i, v in enumerate(value))
        if not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise fail(f"expected a list of {_type_words((item,))}s")
        return tuple(value)
    if origin is dict and dataclasses.is_dataclass(typing.get_args(hint)[1]):  # named sub-sections: [buttons.NAME]
        item = typing.get_args(hint)[1]
        if not isinstance(value, dict):
            raise fail(f"expected tables, one per name: [{where}.NAME]")
        for name, sub in value.items():
            if not isinstance(sub, dict):
                raise ConfigError(f"{source}: [{where}] {name} = {sub!r}: expected a table, [{where}.{name}]")
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ConfigError(f"{source}: [{where}.{name}]: name it with letters, digits, '-' and '_'")
        return {name: _build(item, sub, source, f"{where}.{name}") for name, sub in value.items()}
    if origin is dict:  # a free-form table (e.g. a tool's JSON schema)
        if not isinstance(value, dict):
            raise fail("expected a table")
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or type(value) is not type(choices[0]):
            raise fail(f"must be one of {', '.join(repr(c) for c in choices)}")
        return value
    allowed_types = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if bool in allowed_types:
        if not isinstance(value, bool):
            raise fail("must be true or false")
        return value
    if isinstance(value, bool):
        raise fail(f"must be {_type_words(allowed_types)}, not a boolean")
    if float in allowed_types and isinstance(value, int):
        value = float(value)
    if not isinstance(value, allowed_types):
        raise fail(f"must be {_type_words(allowed_types)}")
    if isinstance(value, float) and math.isnan(value):
        raise fail("must be a number (nan is not one)")
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if isinstance(value, int | float) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        doc = f.metadata.get("doc")
        if doc and "octal" in doc and isinstance(value, int):  # a file mode: say it as it is written
            raise ConfigError(f"{source}: {_key_words(where)} = {value:#o}: must be between {lo:#o} and {hi:#o}")
        raise fail(f"must be between {lo} and {hi}" + (f" ({doc})" if doc else ""))
    return value


def _key_words(where: str) -> str:
    """'audio.input_rate' -> '[audio] input_rate', as the user wrote it in the file."""
    section, _, key = where.rpartition(".")
    return f"[{section}] {key}" if section else where


def _type_words(allowed: tuple[type, ...]) -> str:
    names = {int: "a whole number", float: "a number", str: "a string"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def _did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    import difflib  # only a configuration with a mistake needs it

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_combinations(config: Config, source: str) -> None:
    rt = config.realtime
    if not rt.url.startswith(("ws://", "wss://")):
        raise ConfigError(
            f"{source}: [realtime] url = {rt.url!r}: must start with wss:// (or ws:// for a local emulator)"
        )
    if rt.url.startswith("ws://") and not is_loopback_url(rt.url):
        raise ConfigError(
            f"{source}: [realtime] url = {rt.url!r}: ws:// would send the API key unencrypted; use wss:// "
            "(ws:// is only for this machine: 127.0.0.1, ::1 or localhost)"
        )
    if not rt.model.strip():
        raise ConfigError(f"{source}: [realtime] model is empty; use one of {', '.join(models.current_models())}")
    if not rt.voice.strip():
        raise ConfigError(f"{source}: [realtime] voice is empty; use e.g. 'marin' or 'cedar'")
    audio = config.audio
    for key in ("input_rate", "output_rate"):
        rate = getattr(audio, key)
        if 0 < rate < 8000:
            raise ConfigError(
                f"{source}: [audio] {key} = {rate}: sound devices run at 8000 Hz or more (0 = the device's default)"
            )
    if audio.input_channels and audio.input_channel >= audio.input_channels:
        raise ConfigError(
            f"{source}: [audio] input_channel = {audio.input_channel}: the microphone has "
            f"input_channels = {audio.input_channels} (channels count from 0)"
        )
    if mixer := mixer_problems(config.mixer):
        raise ConfigError(f"{source}: {mixer[0]}")
    names = [tool.name for tool in rt.tools]
    for tool in rt.tools:
        if not TOOL_NAME.fullmatch(tool.name):
            raise ConfigError(f"{source}: [[realtime.tools]] name = {tool.name!r}: use 1-64 letters, digits, _ or -")
        if names.count(tool.name) > 1:
            raise ConfigError(f"{source}: [[realtime.tools]] name = {tool.name!r} is declared twice")
        if not tool.command:
            raise ConfigError(
                f"{source}: [[realtime.tools]] {tool.name!r} needs a command (the program that serves it)"
            )
        problem = schema_problem(tool.parameters)
        if problem is not None:
            raise ConfigError(f"{source}: [[realtime.tools]] {tool.name!r}: {problem}")
    local_http = rt.token_url.startswith("http://") and is_loopback_url(rt.token_url)
    if rt.token_url and not (rt.token_url.startswith("https://") or local_http):
        raise ConfigError(
            f"{source}: [realtime] token_url = {rt.token_url!r}: must be https:// "
            "(http:// only to this machine: 127.0.0.1, ::1 or localhost)"
        )
    _check_hardware(config, source)
    _check_fleet(config, source)


def mqtt_command_problem(name: str) -> str | None:
    """Why the command `name` cannot be allowed over MQTT (None if it can): the device's commands of the control
    table, and `status`; not the ones about a connection (subscriptions, tools) nor `image` (a file or pieces)."""
    from edgevoice.control.commands import COMMANDS

    spec = COMMANDS.get(name)
    allowed = [n for n, s in COMMANDS.items() if (s.handled_by == "device" and n != "image") or n == "status"]
    if spec is None or name not in allowed:
        return f"not a command for MQTT{_did_you_mean(name, allowed)}; these are: {', '.join(allowed)}"
    return None


def _allowed_by_default(name: str) -> str | None:
    return None if name in DEFAULT_COMMANDS else mqtt_command_problem(name)


def _check_fleet(config: Config, source: str) -> None:
    # The default [mqtt] commands are allowed (tests/test_fleet_units.py checks them): only names the file gives
    # are checked against the control table, which every start-up would otherwise load (~20 ms, 0.3 s on a Pi).
    problems = settings_problems(config.mqtt, _allowed_by_default)
    if problems:
        raise ConfigError(f"{source}: [mqtt] {problems[0]}")
    textfile = config.metrics.textfile
    if textfile and (not textfile.startswith("/") or not textfile.endswith(".prom")):
        raise ConfigError(
            f"{source}: [metrics] textfile = {textfile!r}: an absolute path ending in .prom, in node_exporter's "
            "textfile directory (e.g. /var/lib/node_exporter/textfile_collector/edgevoice.prom)"
        )


def button_sections(config: Config) -> dict[str, ButtonSettings]:
    """Every button by its config section: "button", then "buttons.NAME" for each extra one."""
    return {"button": config.button, **{f"buttons.{name}": b for name, b in config.buttons.items()}}


def _gpio_uses(config: Config) -> list[tuple[str, int]]:
    """(what, BCM number) for every GPIO the enabled buttons and LEDs take."""
    uses = [(f"[{section}] pin", b.pin) for section, b in button_sections(config).items() if b.enabled]
    leds = config.leds
    if not leds.enabled:
        return uses
    if leds.driver in ("gpio", "pwm"):
        uses.append(("[leds] pin", leds.pin))
    elif leds.driver == "rgb":
        uses += [(f"[leds] {c}_pin", getattr(leds, f"{c}_pin")) for c in ("red", "green", "blue")]
    else:
        uses += [("[leds] data_pin", leds.data_pin), ("[leds] clock_pin", leds.clock_pin)]
        if (leds.data_pin, leds.clock_pin) == (10, 11):  # SPI0 also takes MISO and the chip select
            uses += [
                ("[leds] (SPI0 MISO)", 9),
                (f"[leds] spi_device = {leds.spi_device} (its chip select)", 8 - leds.spi_device),
            ]
    uses += [(f"[leds] {key}", getattr(leds, key)) for key in ("power_pin", "mute_pin") if getattr(leds, key) >= 0]
    return uses


def _check_hardware(config: Config, source: str) -> None:
    push_to_talk = config.realtime.turn_detection.type == "none"
    for section, button in button_sections(config).items():
        problems = gesture_problems(button, push_to_talk, section) if button.enabled else []
        if problems:
            raise ConfigError(f"{source}: {problems[0]}")
    leds = config.leds
    if leds.enabled and leds.driver == "rgb" and min(leds.red_pin, leds.green_pin, leds.blue_pin) < 0:
        raise ConfigError(f"{source}: [leds] driver = 'rgb' needs red_pin, green_pin and blue_pin (BCM GPIO numbers)")
    seen: dict[int, str] = {}
    for what, pin in _gpio_uses(config):
        if pin in seen:
            raise ConfigError(f"{source}: {seen[pin]} and {what} are both {pin}; a GPIO can be only one of them")
        seen[pin] = what
