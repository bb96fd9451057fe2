"""Doctor checks of the machine: clock synchronisation, CPU temperature and throttling, free disk."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

from edgevoice.doctor import Context, Finding

TIME_ERROR = 5  # adjtimex(2): the kernel clock is not synchronised
WARM_C, HOT_C = 70.0, 80.0  # a Pi starts throttling at 80 degC (85 on newer firmware)
LOW_DISK_MB, FULL_DISK_MB = 500, 100
# vcgencmd get_throttled bits: now (0-3) and since boot (16-19).
THROTTLE_BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}


def _ntp_synchronized() -> bool | None:
    """timedatectl's answer, else the kernel's (adjtimex), else None."""
    if shutil.which("timedatectl"):
        out = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"], capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return out.stdout.strip() == "yes"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 only reads
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def check_clock(ctx: Context) -> Finding:
    synced = _ntp_synchronized()
    if synced is None:
        return Finding("clock", "skip", "cannot tell whether the clock is synchronised here")
    if synced:
        return Finding("clock", "pass", "synchronised")
    return Finding(
        "clock",
        "warn",
        "not synchronised: TLS certificates and log times may be wrong",
        "enable NTP: sudo timedatectl set-ntp true (a Pi has no battery-backed clock)",
    )


def _throttled() -> int | None:
    if shutil.which("vcgencmd") is None:
        return None
    out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
    try:
        return int(out.stdout.strip().split("=")[1], 16)
    except (IndexError, ValueError):
        return None


def check_temperature(ctx: Context) -> Finding:
    zone = Path("/sys/class/thermal/thermal_zone0/temp")
    flags = _throttled()
    try:
        celsius: float | None = int(zone.read_text().strip()) / 1000
    except (OSError, ValueError):
        celsius = None
    if celsius is None and flags is None:
        return Finding("temperature", "skip", "no CPU temperature or throttling information on this machine")
    now = [name for bit, name in THROTTLE_BITS.items() if flags is not None and flags & (1 << bit)]
    past = [name for bit, name in THROTTLE_BITS.items() if flags is not None and flags & (1 << (bit + 16))]
    text = f"CPU {celsius:.0f} degC" if celsius is not None else "CPU temperature unknown"
    if flags is not None:
        text += f", get_throttled=0x{flags:x}"
    if "under-voltage" in now or (celsius is not None and celsius >= HOT_C) or "throttled" in now:
        return Finding(
            "temperature",
            "fail",
            f"{text}: {', '.join(now) or 'too hot'}",
            "use the official power supply; give the CPU a heatsink or air",
        )
    if past or (celsius is not None and celsius >= WARM_C):
        return Finding("temperature", "warn", f"{text}: since boot: {', '.join(past) or 'warm'}", "check power/cooling")
    return Finding("temperature", "pass", text)


def check_disk(ctx: Context) -> Finding:
    worst = None
    for path in ("/", "/var/lib"):
        if Path(path).exists():
            free_mb = shutil.disk_usage(path).free / 1e6
            if worst is None or free_mb < worst[1]:
                worst = (path, free_mb)
    assert worst is not None
    path, free_mb = worst
    text = f"{free_mb:,.0f} MB free on {path}"
    if free_mb < FULL_DISK_MB:
        return Finding("disk", "fail", text, "free some space: the journal and updates need it (journalctl --vacuum)")
    if free_mb < LOW_DISK_MB:
        return Finding("disk", "warn", text, "free some space soon")
    return Finding("disk", "pass", text)
