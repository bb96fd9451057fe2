"""Hardware profiles: one TOML file per board, the base that config.toml's own keys override.

A profile holds what a board fixes: the sound card's name, rates and channels, the button pin, the LED
driver and pins, any power-enable pin (sections `[audio]`, `[button]`, `[buttons.NAME]`, `[leds]`, with
the same keys as config.toml), and a `[profile]` table describing it: `title`, `cards` (patterns that
identify the board's sound card in /proc/asound/cards), `models` (device-tree models it is for, if it is
model-specific), `sources` (where each pin assignment comes from) and `notes`.

Profiles are looked up by name in /etc/edgevoice/hw_profiles/ (an installer's own boards, which win),
then in the hw_profiles/ directory shipped with edgevoice; a value containing "/" or ending in .toml is
a path. The settings sections are validated by `edgevoice.config` (the same validator as config.toml);
this module checks the file's shape and the `[profile]` table.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "hw_profiles"
SYSTEM_DIR = Path("/etc/edgevoice/hw_profiles")
SETTINGS_SECTIONS = ("audio", "button", "buttons", "leds")
_META_LISTS = ("cards", "models", "sources")
PI5_NOTE = (
    "Raspberry Pi 5: GPIO goes through lgpio (installed with edgevoice; [hardware] pin_factory = 'auto' or "
    "'lgpio'); RPi.GPIO does not work there. Sound-card HATs need a driver built for its kernel: check "
    "`cat /proc/asound/cards` after installing the vendor's driver."
)


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
    unknown = sorted(set(meta) - {"title", "notes", *_META_LISTS})
    if unknown:
        raise ProfileError(f"{path}: unknown key [profile] {unknown[0]}; allowed: title, cards, models, sources, notes")
    title, notes = meta.get("title"), meta.get("notes", "")
    if not isinstance(title, str) or not title.strip():
        raise ProfileError(f"{path}: [profile] title must be the board's name")
    if not isinstance(notes, str):
        raise ProfileError(f"{path}: [profile] notes must be text")
    lists: dict[str, tuple[str, ...]] = {}
    for key in _META_LISTS:
        value = meta.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ProfileError(f"{path}: [profile] {key} must be a list of non-empty strings")
        lists[key] = tuple(value)
    if not lists["sources"]:
        raise ProfileError(f"{path}: [profile] sources is empty: say where the pin assignments come from")
    settings = {key: value for key, value in data.items() if key != "profile"}
    return Profile(path.stem, path, title, lists["cards"], lists["models"], lists["sources"], notes, settings)


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


# ---- detection ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """What `detect` found on this machine: the profiles whose sound card is present (none, one, or several
    for boards built on the same codec), the board model and the sound cards seen. `describe_detection` turns
    it into advice for `edgevoice profiles detect`."""

    matches: list[tuple[Profile, str]]  # each profile whose sound card is present, with the card line
    model: str  # the device-tree model ("" if unknown)
    cards: list[str]  # the sound cards seen, one line each

    @property
    def is_pi5(self) -> bool:
        return "raspberry pi 5" in self.model.lower()


def card_lines(cards_text: str) -> list[str]:
    """The cards of /proc/asound/cards, one line each ("0 [seeed2micvoicec]: seeed-2mic-voi - seeed-...")."""
    lines = cards_text.splitlines()
    cards = []
    for i, line in enumerate(lines):
        head = line.strip()
        if head[:1].isdigit() and "[" in head:
            detail = lines[i + 1].strip() if i + 1 < len(lines) and not lines[i + 1].strip()[:1].isdigit() else ""
            cards.append(f"{head} {detail}".strip())
    return cards


def detect(profiles: Iterable[Profile], cards_text: str, model_text: str = "") -> Detection:
    """Which profiles fit this machine: a profile's `cards` pattern appears in a sound card's line (case is
    ignored), and its `models`, if any, match the device-tree model."""
    model = model_text.replace("\x00", "").strip()
    cards = card_lines(cards_text)
    matches = []
    for profile in profiles:
        if profile.models and not any(m.lower() in model.lower() for m in profile.models):
            continue
        for line in cards:
            if any(pattern.lower() in line.lower() for pattern in profile.cards):
                matches.append((profile, line))
                break
    return Detection(matches, model, cards)


def describe_detection(detection: Detection) -> str:
    lines = [f"board: {detection.model or 'unknown (no /proc/device-tree/model)'}"]
    lines += [f"sound card: {card}" for card in detection.cards] or ["sound cards: none found"]
    if not detection.matches:
        lines.append(
            "no profile matches this machine. If the board is a sound-card HAT, install its driver first "
            "(its card must show in /proc/asound/cards); for a USB microphone use the generic-usb profile; "
            "otherwise set [audio], [button] and [leds] yourself (`edgevoice profiles list` shows what exists)."
        )
    elif len(detection.matches) == 1:
        profile, card = detection.matches[0]
        lines.append(f"matches: {profile.name} ({profile.title}), from the card {card!r}")
        lines.append(f'use it with:  [hardware] profile = "{profile.name}"')
    else:
        lines.append("several profiles fit this sound card (boards built on the same codec); pick yours:")
        lines += [f"  {p.name}: {p.title}" for p, _ in detection.matches]
        lines.append('and set  [hardware] profile = "NAME"  (`edgevoice profiles show NAME` tells them apart)')
    if detection.is_pi5:
        lines.append(PI5_NOTE)
    return "\n".join(lines)


def describe_profile(profile: Profile) -> str:
    lines = [f"{profile.name}: {profile.title}", f"file: {profile.path}"]
    if profile.cards:
        lines.append("detected by sound card: " + ", ".join(profile.cards))
    if profile.models:
        lines.append("for boards: " + ", ".join(profile.models))
    for section in SETTINGS_SECTIONS:
        value = profile.settings.get(section)
        if not isinstance(value, dict):
            continue
        tables = value.items() if section == "buttons" else [("", value)]
        for sub, table in tables:
            lines.append(f"[{section}.{sub}]" if sub else f"[{section}]")
            lines += [f"  {key} = {_toml_value(v)}" for key, v in table.items()]
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
    return str(value)


def check_board(
    name: str, cards_path: str = "/proc/asound/cards", model_path: str = "/proc/device-tree/model"
) -> str | None:
    """Does the board fit profile `name`? None if it does, else what is wrong (for `edgevoice doctor`)."""
    try:
        profile = load_profile(name)
    except ProfileError as exc:
        return str(exc)

    def read(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    detection = detect([profile], read(cards_path), read(model_path))
    if detection.matches:
        return None
    seen = "; ".join(detection.cards) or "no sound cards"
    if not profile.cards:
        return None  # a profile that names no card (generic USB) fits any board
    return f"its sound card ({', '.join(profile.cards)}) is not present (found: {seen})"
