"""Hardware profiles: one TOML file per board, the base that config.toml's own keys override.

A profile holds what a board fixes: the sound card's name, rates and channels, the button pin, the LED
driver and pins, any power-enable pin, the ALSA mixer settings the board needs (sections `[audio]`,
`[button]`, `[buttons.NAME]`, `[leds]`, `[mixer]`, with the same keys as config.toml), and a `[profile]`
table describing it:

- `title`, `notes`, and `sources` (where each pin assignment comes from);
- how `edgevoice profiles detect` recognises the board (see `edgevoice.hw.detect`): `cards` (text found in
  its /proc/asound/cards line or its ALSA card id), `usb_ids` ("vvvv:pppp", from sysfs), `i2c` (its codec's
  I2C device name or device-tree compatible, for HATs without an EEPROM), `models` (device-tree models it is
  for, if it is model-specific), and `generic = true` for a profile that fits any device of its kind
  (offered only when no specific profile does);
- `processed_channel`: for devices that cancel echo themselves (`[audio] hardware_aec = true`), the capture
  channel that carries their processed signal.

Profiles are looked up by name in /etc/edgevoice/hw_profiles/ (an installer's own boards, which win),
then in the hw_profiles/ directory shipped with edgevoice; a value containing "/" or ending in .toml is
a path. The settings sections are validated by `edgevoice.config` (the same validator as config.toml);
this module checks the file's shape and the `[profile]` table.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "hw_profiles"
SYSTEM_DIR = Path("/etc/edgevoice/hw_profiles")
SETTINGS_SECTIONS = ("audio", "button", "buttons", "leds", "mixer")
_META_LISTS = ("cards", "models", "sources", "usb_ids", "i2c")
_META_KEYS = ("title", "notes", "generic", "processed_channel", *_META_LISTS)
USB_ID = re.compile(r"[0-9a-f]{4}:[0-9a-f]{4}")


class ProfileError(Exception):
    """A profile is missing or malformed; the message names the file and what to do."""


@dataclass(frozen=True)
class Profile:
    """One board's hardware profile as read from its file by `load_profile`: the `[profile]` table's fields,
    and in `settings` the config sections it sets. Only the file's shape is checked here; `edgevoice.config`
    validates `settings` when the profile is applied under config.toml's own keys."""

    name: str
    path: Path
    title: str
    cards: tuple[str, ...]
    models: tuple[str, ...]
    sources: tuple[str, ...]
    notes: str
    settings: dict[str, Any]  # the config sections it sets, as parsed TOML (validated by edgevoice.config)
    usb_ids: tuple[str, ...] = ()  # "vvvv:pppp", lower case
    i2c: tuple[str, ...] = ()  # codec I2C device names or device-tree compatibles ("ti,tlv320aic3104")
    generic: bool = False  # fits any device of its kind: offered only when no specific profile fits
    processed_channel: int | None = None  # the capture channel a device that cancels echo itself processes


def default_dirs() -> list[Path]:
    return [SYSTEM_DIR, BUILTIN_DIR]


def find_profile(spec: str, dirs: Sequence[Path] | None = None) -> Path:
    """The file of a profile named `spec` (or `spec` itself when it is a path)."""
    if "/" in spec or spec.endswith(".toml"):
        path = Path(spec)
        if not path.is_file():
            raise ProfileError(f"no profile file {spec}")
        return path
    for directory in dirs if dirs is not None else default_dirs():
        path = directory / f"{spec}.toml"
        if path.is_file():
            return path
    names = ", ".join(p.name for p in list_profiles(dirs)) or "none"
    raise ProfileError(f"no hardware profile named {spec!r}; known: {names} (`edgevoice profiles list`)")


def load_profile(spec: str, dirs: Sequence[Path] | None = None) -> Profile:
    path = find_profile(spec, dirs)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return _profile(path, data)


def _profile(path: Path, data: dict[str, Any]) -> Profile:
    meta = data.get("profile")
    if not isinstance(meta, dict):
        raise ProfileError(f"{path}: a profile starts with a [profile] table (title, cards, sources, notes)")
    extra = sorted(set(data) - {"profile", *SETTINGS_SECTIONS})
    if extra:
        raise ProfileError(
            f"{path}: [{extra[0]}] cannot be in a profile; a profile sets only "
            + ", ".join(f"[{s}]" for s in SETTINGS_SECTIONS)
        )
    unknown = sorted(set(meta) - set(_META_KEYS))
    if unknown:
        raise ProfileError(f"{path}: unknown key [profile] {unknown[0]}; allowed: {', '.join(_META_KEYS)}")
    title, notes = meta.get("title"), meta.get("notes", "")
    if not isinstance(title, str) or not title.strip():
        raise ProfileError(f"{path}: [profile] title must be the board's name")
    if not isinstance(notes, str):
        raise ProfileError(f"{path}: [profile] notes must be text")
    generic = meta.get("generic", False)
    if not isinstance(generic, bool):
        raise ProfileError(f"{path}: [profile] generic must be true or false")
    lists: dict[str, tuple[str, ...]] = {}
    for key in _META_LISTS:
        value = meta.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ProfileError(f"{path}: [profile] {key} must be a list of non-empty strings")
        lists[key] = tuple(value)
    if not lists["sources"]:
        raise ProfileError(f"{path}: [profile] sources is empty: say where the pin assignments come from")
    usb_ids = tuple(v.lower() for v in lists["usb_ids"])
    for usb_id in usb_ids:
        if not USB_ID.fullmatch(usb_id):
            raise ProfileError(
                f"{path}: [profile] usb_ids: {usb_id!r} is not a USB id; write vendor:product in hex, e.g. '2886:0018'"
            )
    settings = {key: value for key, value in data.items() if key != "profile"}
    processed = _processed_channel(path, meta.get("processed_channel"), settings.get("audio"))
    return Profile(
        path.stem, path, title, lists["cards"], lists["models"], lists["sources"], notes, settings,
        usb_ids=usb_ids, i2c=lists["i2c"], generic=generic, processed_channel=processed,
    )  # fmt: skip


def _processed_channel(path: Path, value: Any, audio: Any) -> int | None:
    """`processed_channel`, checked against `[audio]`: a device that cancels echo itself must say which
    channel carries its processed signal, and the profile must capture that one."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ProfileError(f"{path}: [profile] processed_channel must be a channel number (0 or more)")
    audio = audio if isinstance(audio, dict) else {}
    if audio.get("hardware_aec") is True:
        if value is None:
            raise ProfileError(
                f"{path}: [audio] hardware_aec = true needs [profile] processed_channel: the capture channel "
                "that carries the device's echo-cancelled signal"
            )
        if audio.get("input_channel", 0) != value:
            raise ProfileError(
                f"{path}: [audio] input_channel = {audio.get('input_channel', 0)} is not the processed channel "
                f"({value}); the device cancels echo only on that one"
            )
    return value


def list_profiles(dirs: Sequence[Path] | None = None) -> list[Profile]:
    """Every profile found, by name (an earlier directory's file wins); broken files are skipped."""
    found: dict[str, Profile] = {}
    for directory in dirs if dirs is not None else default_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            if path.stem in found:
                continue
            try:
                found[path.stem] = load_profile(str(path))
            except ProfileError:
                continue
    return sorted(found.values(), key=lambda p: p.name)


def describe_profile(profile: Profile) -> str:
    lines = [f"{profile.name}: {profile.title}", f"file: {profile.path}"]
    if profile.cards:
        lines.append("detected by sound card: " + ", ".join(profile.cards))
    if profile.usb_ids:
        lines.append("detected by USB id: " + ", ".join(profile.usb_ids))
    if profile.i2c:
        lines.append("detected by I2C codec: " + ", ".join(profile.i2c))
    if profile.generic:
        lines.append("generic: fits any such device; offered when no specific profile does")
    if profile.processed_channel is not None:
        lines.append(f"processed (echo-cancelled) capture channel: {profile.processed_channel}")
    if profile.models:
        lines.append("for boards: " + ", ".join(profile.models))
    for section in SETTINGS_SECTIONS:
        value = profile.settings.get(section)
        if not isinstance(value, dict):
            continue
        tables = value.items() if section == "buttons" else [("", value)]
        for sub, table in tables:
            lines.append(f"[{section}.{sub}]" if sub else f"[{section}]")
            lines += [f"  {key} = {_toml_value(v)}" for key, v in table.items() if not isinstance(v, dict)]
            for key, inner in table.items():
                if isinstance(inner, dict):  # e.g. [mixer.controls], whose keys are ALSA control names
                    lines.append(f"[{section}.{key}]")
                    lines += [f'  "{name}" = {_toml_value(v)}' for name, v in inner.items()]
    if profile.notes:
        lines.append("notes: " + " ".join(profile.notes.split()))
    lines.append("sources:")
    lines += [f"  - {source}" for source in profile.sources]
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
