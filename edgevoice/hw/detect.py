"""Which hardware profile fits this machine: `edgevoice profiles detect`, and the board check of `doctor`.

What a machine shows of its sound hardware (`read_machine`, from roots that tests replace with trees of
their own):

- the sound cards: /proc/asound/cards (one line per card, with its id in brackets) and /proc/asound/cardN/id;
- the USB devices: /sys/bus/usb/devices/*/idVendor, idProduct (and product, for the message);
- the I2C devices: /sys/bus/i2c/devices/*/name and of_node/compatible (a HAT's codec, declared by its
  device-tree overlay: what tells apart boards whose sound card has the same name, such as the ReSpeaker
  2-Mics HAT v1 (WM8960) and v2 (TLV320AIC3104), and a HAT without an EEPROM);
- the board model: /proc/device-tree/model.

A profile fits when something it names is there (a card pattern, a USB id, an I2C codec) and nothing
contradicts it: a profile that names a codec is ruled out when I2C devices are visible and its codec is not
among them. Among the fits, the best evidenced win (a USB id or a codec counts more than a card's name), and
`generic` profiles (any USB sound card) only when nothing specific fits: one clear answer or the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgevoice.hw.profiles import Profile, ProfileError, load_profile

PI5_NOTE = (
    "Raspberry Pi 5: GPIO goes through lgpio (installed with edgevoice; [hardware] pin_factory = 'auto' or "
    "'lgpio'); RPi.GPIO does not work there. Sound-card HATs need a driver built for its kernel: check "
    "`cat /proc/asound/cards` after installing the vendor's driver."
)
# How much each kind of evidence counts: a USB id or a codec names the hardware; a card name may be shared.
_WEIGHT = {"usb": 2, "i2c": 2, "card": 1}


@dataclass(frozen=True)
class UsbDevice:
    """One device in /sys/bus/usb/devices: its id ("vvvv:pppp", lower case) and product name."""

    usb_id: str
    product: str = ""


@dataclass(frozen=True)
class I2cDevice:
    """One device in /sys/bus/i2c/devices: its sysfs name ("1-001a"), device name and compatibles."""

    address: str
    name: str
    compatible: tuple[str, ...] = ()


@dataclass(frozen=True)
class Machine:
    """What this machine shows of its sound hardware (see the module docstring); `read_machine` reads it."""

    model: str = ""
    cards: tuple[str, ...] = ()  # /proc/asound/cards, one line per card
    card_ids: tuple[str, ...] = ()  # /proc/asound/cardN/id
    usb: tuple[UsbDevice, ...] = ()
    i2c: tuple[I2cDevice, ...] = ()

    @property
    def is_pi5(self) -> bool:
        return "raspberry pi 5" in self.model.lower()


@dataclass(frozen=True)
class Match:
    """A profile that fits, with what shows it (e.g. "USB id 2886:0018 (ReSpeaker 4 Mic Array)")."""

    profile: Profile
    evidence: tuple[tuple[str, str], ...]  # (kind: "card", "usb" or "i2c"; what was seen)

    @property
    def score(self) -> int:
        return sum(_WEIGHT[kind] for kind in {kind for kind, _ in self.evidence})


@dataclass(frozen=True)
class Detection:
    """The answer of `detect`: the best fitting profiles (one, several candidates, or none), every profile
    that fits at all, and what the machine showed. `describe_detection` turns it into advice."""

    best: list[Match]
    fits: list[Match]
    machine: Machine = field(default_factory=Machine)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


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


def read_machine(
    sysfs_root: Path = Path("/sys"),
    procfs_root: Path = Path("/proc"),
    *,
    cards_path: Path | None = None,
    model_path: Path | None = None,
) -> Machine:
    """What the machine shows, read from `sysfs_root` and `procfs_root` (missing files read as nothing)."""
    cards = card_lines(_read(cards_path or procfs_root / "asound" / "cards"))
    card_ids = [_read(p).strip() for p in sorted((procfs_root / "asound").glob("card[0-9]*/id"))]
    usb = []
    for device in sorted((sysfs_root / "bus" / "usb" / "devices").glob("*")):
        vendor, product = _read(device / "idVendor").strip().lower(), _read(device / "idProduct").strip().lower()
        if vendor and product:
            usb.append(UsbDevice(f"{vendor}:{product}", _read(device / "product").strip()))
    i2c = []
    for device in sorted((sysfs_root / "bus" / "i2c" / "devices").glob("*")):
        name = _read(device / "name").strip()
        compatible = tuple(c for c in _read(device / "of_node" / "compatible").split("\x00") if c.strip())
        if name or compatible:
            i2c.append(I2cDevice(device.name, name, compatible))
    model = _read(model_path or procfs_root / "device-tree" / "model").replace("\x00", "").strip()
    return Machine(model, tuple(cards), tuple(i for i in card_ids if i), tuple(usb), tuple(i2c))


def _evidence(profile: Profile, machine: Machine) -> tuple[tuple[str, str], ...] | None:
    """What shows `profile` on `machine` (empty: nothing), or None when the machine contradicts it."""
    if profile.models and not any(m.lower() in machine.model.lower() for m in profile.models):
        return None
    found: list[tuple[str, str]] = []
    patterns = [p.lower() for p in profile.cards]
    for line in machine.cards:
        if any(p in line.lower() for p in patterns):
            found.append(("card", line))
            break
    else:
        for card_id in machine.card_ids:
            if card_id.lower() in patterns:
                found.append(("card", f"card id {card_id}"))
                break
    for device in machine.usb:
        if device.usb_id in profile.usb_ids:
            found.append(("usb", f"USB id {device.usb_id}" + (f" ({device.product})" if device.product else "")))
    if profile.i2c:
        wanted = [c.lower() for c in profile.i2c]
        codecs = [d for d in machine.i2c if any(w in (d.name.lower(), *map(str.lower, d.compatible)) for w in wanted)]
        if machine.i2c and not codecs:
            return None  # the I2C bus is visible and this board's codec is not on it
        found += [("i2c", f"I2C codec {d.compatible[0] if d.compatible else d.name} at {d.address}") for d in codecs]
    return tuple(found)


def detect(profiles: Iterable[Profile], machine: Machine) -> Detection:
    """Which profiles fit `machine`, and the best evidenced of them (see the module docstring)."""
    fits = []
    for profile in profiles:
        evidence = _evidence(profile, machine)
        if evidence:
            fits.append(Match(profile, evidence))
    specific = [m for m in fits if not m.profile.generic] or fits
    top = max((m.score for m in specific), default=0)
    best = [m for m in specific if m.score == top]
    return Detection(best, fits, machine)


def describe_detection(detection: Detection) -> str:
    machine = detection.machine
    lines = [f"board: {machine.model or 'unknown (no /proc/device-tree/model)'}"]
    lines += [f"sound card: {card}" for card in machine.cards] or ["sound cards: none found"]
    if not detection.best:
        lines.append(
            "no profile matches this machine. If the board is a sound-card HAT, install its driver first "
            "(its card must show in /proc/asound/cards); for a USB microphone use the generic-usb profile; "
            "otherwise set [audio], [button] and [leds] yourself (`edgevoice profiles list` shows what exists)."
        )
    elif len(detection.best) == 1:
        match = detection.best[0]
        profile = match.profile
        lines.append(f"matches: {profile.name} ({profile.title}), from: " + "; ".join(e for _, e in match.evidence))
        lines.append(f'use it with:  [hardware] profile = "{profile.name}"')
    else:
        lines.append("several profiles fit (boards built on the same codec or chip); pick yours:")
        lines += [
            f"  {m.profile.name}: {m.profile.title} (from: {'; '.join(e for _, e in m.evidence)})"
            for m in detection.best
        ]
        lines.append('and set  [hardware] profile = "NAME"  (`edgevoice profiles show NAME` tells them apart)')
    if machine.is_pi5:
        lines.append(PI5_NOTE)
    return "\n".join(lines)


def check_board(
    name: str,
    cards_path: str = "/proc/asound/cards",
    model_path: str = "/proc/device-tree/model",
    *,
    sysfs_root: Path = Path("/sys"),
    procfs_root: Path = Path("/proc"),
) -> str | None:
    """Does the board fit profile `name`? None if it does, else what is wrong (for `edgevoice doctor`)."""
    try:
        profile = load_profile(name)
    except ProfileError as exc:
        return str(exc)
    machine = read_machine(sysfs_root, procfs_root, cards_path=Path(cards_path), model_path=Path(model_path))
    if detect([profile], machine).fits:
        return None
    if not (profile.cards or profile.usb_ids or profile.i2c):
        return None  # a profile that names no hardware fits any board
    seen = "; ".join(machine.cards) or "no sound cards"
    wanted = ", ".join([*profile.cards, *profile.usb_ids, *profile.i2c])
    return f"its sound hardware ({wanted}) is not present (found: {seen})"
