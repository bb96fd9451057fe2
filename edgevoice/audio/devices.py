"""Finding sound devices through PortAudio, and checking they accept the rate and channels we ask for.

Every failure here ends in an `AudioDeviceError` whose message lists what is there, so that an installer
can fix `[audio]` in config.toml without reading a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pyaudio

log = logging.getLogger(__name__)

Direction = Literal["input", "output"]
COMMON_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 8000)


class AudioDeviceError(Exception):
    """A sound device is missing or refuses the format; the message says what exists and what to set."""


@dataclass(frozen=True)
class DeviceInfo:
    """One sound device as PortAudio reports it (`list_devices`). `index` is PortAudio's number for it, valid
    only while the same `PyAudio` instance runs; a device with no input (or output) channels cannot be used in
    that direction, which `channels()` tells."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int
    host_api: str

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels


SampleWidth = Literal[2, 4]  # bytes per sample: int16, or int32 (I2S HATs such as the AC108 capture only that)
_PA_FORMATS = {2: pyaudio.paInt16, 4: pyaudio.paInt32}


@dataclass(frozen=True)
class StreamFormat:
    """What a stream is really opened with, after defaults were resolved against the device."""

    device: DeviceInfo
    rate: int
    channels: int
    width: SampleWidth = 2

    @property
    def pa_format(self) -> int:
        return _PA_FORMATS[self.width]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """PortAudio prints JACK and ALSA probing noise on fd 2 while it starts; keep it for debug logs only."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise = sink.read().decode(errors="replace").strip()
            if noise:
                log.debug("PortAudio start-up said: %s", noise)


def open_portaudio() -> pyaudio.PyAudio:
    """Start PortAudio (quietly). The caller must call `.terminate()` on the result."""
    with quiet_stderr():
        return pyaudio.PyAudio()


def list_devices(pa: pyaudio.PyAudio) -> list[DeviceInfo]:
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        host = pa.get_host_api_info_by_index(int(info["hostApi"]))["name"]
        devices.append(
            DeviceInfo(
                index=index,
                name=str(info["name"]),
                max_input_channels=int(info["maxInputChannels"]),
                max_output_channels=int(info["maxOutputChannels"]),
                default_rate=int(info["defaultSampleRate"]),
                host_api=str(host),
            )
        )
    return devices


def describe_devices(devices: list[DeviceInfo], direction: Direction | None = None) -> str:
    """A table of devices, as `edgevoice devices` prints it and errors quote it."""
    rows = [f"{'index':>5}  {'in':>3}  {'out':>3}  {'rate':>6}  name"]
    for d in devices:
        if direction is None or d.channels(direction) > 0:
            rows.append(
                f"{d.index:>5}  {d.max_input_channels:>3}  {d.max_output_channels:>3}  {d.default_rate:>6}  {d.name}"
            )
    if len(rows) == 1:
        rows.append("  (none: is a sound card connected, and is this user in the 'audio' group?)")
    return "\n".join(rows)


def find_device(devices: list[DeviceInfo], spec: int | str, direction: Direction) -> DeviceInfo:
    """The device named by `spec`: an index, or a case-insensitive part of the name (exact names win)."""
    usable = [d for d in devices if d.channels(direction) > 0]
    if isinstance(spec, int):
        for d in usable:
            if d.index == spec:
                return d
        raise AudioDeviceError(
            f"no {direction} device with index {spec}. {direction.capitalize()} devices:\n"
            + describe_devices(devices, direction)
        )
    wanted = spec.lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    matches = exact or [d for d in usable if wanted in d.name.lower()]
    if not matches:
        raise AudioDeviceError(
            f"no {direction} device whose name contains {spec!r}. {direction.capitalize()} devices:\n"
            + describe_devices(devices, direction)
            + f"\nSet [audio] {direction}_device to an index or a part of a name above."
        )
    if len(matches) > 1:
        others = ", ".join(repr(d.name) for d in matches[1:])
        log.warning(
            "%s device %r matches several devices; using %r (also: %s)",
            direction,
            spec,
            matches[0].name,
            others,
        )
    return matches[0]


def _supported(
    pa: pyaudio.PyAudio, device: DeviceInfo, direction: Direction, rate: int, channels: int, width: int = 2
) -> bool:
    kwargs = {
        f"{direction}_device": device.index,
        f"{direction}_channels": channels,
        f"{direction}_format": _PA_FORMATS[width],
    }
    try:
        with quiet_stderr():
            return bool(pa.is_format_supported(rate, **kwargs))
    except ValueError:
        return False


def negotiate_format(
    pa: pyaudio.PyAudio,
    device: DeviceInfo,
    direction: Direction,
    rate: int = 0,
    channels: int = 0,
    sample_format: Literal["auto", "int16", "int32"] = "auto",
) -> StreamFormat:
    """Resolve `0 = default` for rate and channels, and the sample width (16-bit first, then 32-bit, for
    "auto"), and check the device accepts the result."""
    if channels == 0:
        candidates = [c for c in (1, 2) if c <= device.channels(direction)] or [device.channels(direction)]
    else:
        candidates = [channels]
    widths: list[SampleWidth] = {"auto": [2, 4], "int16": [2], "int32": [4]}[sample_format]  # type: ignore[assignment]
    rate = rate or device.default_rate
    for width in widths:
        for ch in candidates:
            if _supported(pa, device, direction, rate, ch, width):
                return StreamFormat(device, rate, ch, width)
    width = widths[0]
    ok_rates = [r for r in COMMON_RATES if any(_supported(pa, device, direction, r, ch, width) for ch in candidates)]
    ok_channels = [
        c for c in range(1, device.channels(direction) + 1) if _supported(pa, device, direction, rate, c, width)
    ]
    hint = []
    if ok_rates:
        hint.append(f"it accepts {', '.join(map(str, ok_rates))} Hz: set [audio] {direction}_rate")
    if ok_channels:
        hint.append(f"at {rate} Hz it accepts {ok_channels} channels: set [audio] {direction}_channels")
    raise AudioDeviceError(
        f"{direction} device {device.index} {device.name!r} refuses {rate} Hz with "
        f"{' or '.join(map(str, candidates))} channel(s) of {' or '.join(f'{8 * w}-bit' for w in widths)} audio; "
        + ("; ".join(hint) if hint else "it accepted none of the common rates (is another program using it?)")
    )
