"""Play a signal and record the microphone in one full-duplex PortAudio stream.

One stream, one callback: the callback that writes output sample k also receives input sample k, so the
delay measured from the pair is the device's real round trip (output latency + acoustic path + input
latency), not the accident of when two separate streams happened to start. A duplex stream needs one
rate and one channel count for both sides; `duplex_format` finds them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyaudio

from edgevoice.audio.devices import AudioDeviceError, DeviceInfo, quiet_stderr


def _accepts(pa: pyaudio.PyAudio, device: DeviceInfo, direction: str, rate: int, channels: int) -> bool:
    try:
        with quiet_stderr():
            return bool(
                pa.is_format_supported(
                    rate,
                    **{
                        f"{direction}_device": device.index,
                        f"{direction}_channels": channels,
                        f"{direction}_format": pyaudio.paInt16,
                    },
                )
            )
    except ValueError:
        return False


def duplex_format(
    pa: pyaudio.PyAudio, mic: DeviceInfo, spk: DeviceInfo, rates: tuple[int, ...], channels: tuple[int, ...]
) -> tuple[int, int]:
    """A (rate, channels) both devices accept, trying `rates` and `channels` in order."""
    for rate in rates:
        for ch in channels:
            if _accepts(pa, mic, "input", rate, ch) and _accepts(pa, spk, "output", rate, ch):
                return rate, ch
    raise AudioDeviceError(
        f"the microphone {mic.name!r} and the speaker {spk.name!r} share no rate among "
        f"{', '.join(map(str, rates))} Hz with {' or '.join(map(str, channels))} channel(s); the selftest needs one"
    )


@dataclass
class PlayRecord:
    """The recording (int16, one sample per sample played) and the status flags PortAudio set meanwhile."""

    recorded: np.ndarray
    buffers: int = 0  # callbacks
    overflows: int = 0  # buffers flagged paInputOverflow: input was lost, the recording has a hole
    underflows: int = 0  # buffers flagged paOutputUnderflow: the speaker ran out, the signal played has a gap


def play_and_record(
    pa: pyaudio.PyAudio,
    mic: DeviceInfo,
    spk: DeviceInfo,
    rate: int,
    channels: int,
    signal: np.ndarray,
    input_channel: int = 0,
    timeout_s: float = 30.0,
) -> PlayRecord:
    """Play `signal` (float, mono, in [-1, 1]) on every output channel; the same number of input samples."""
    out = np.repeat(np.clip(np.rint(signal * 32767), -32768, 32767).astype(np.int16)[:, None], channels, axis=1)
    take = PlayRecord(np.zeros(len(signal), np.int16))
    recorded = take.recorded
    done = threading.Event()
    position = 0

    def callback(in_data: bytes | None, frames: int, time_info: Any, status: int) -> tuple[bytes, int]:
        nonlocal position
        take.buffers += 1
        take.overflows += bool(status & pyaudio.paInputOverflow)
        take.underflows += bool(status & pyaudio.paOutputUnderflow)
        end = min(position + frames, len(signal))
        if in_data is not None:
            block = np.frombuffer(in_data, dtype="<i2").reshape(-1, channels)[: end - position, input_channel]
            recorded[position : position + len(block)] = block
        chunk = np.zeros((frames, channels), np.int16)
        chunk[: end - position] = out[position:end]
        position = end
        if position >= len(signal):
            done.set()
            return chunk.tobytes(), pyaudio.paComplete
        return chunk.tobytes(), pyaudio.paContinue

    with quiet_stderr():
        stream = pa.open(
            format=pyaudio.paInt16,
            channels=channels,
            rate=rate,
            input=True,
            output=True,
            input_device_index=mic.index,
            output_device_index=spk.index,
            frames_per_buffer=rate // 100,
            stream_callback=callback,
        )
    try:
        if not done.wait(timeout_s):
            raise AudioDeviceError(f"the sound devices stopped after {position / rate:.1f} s of the test signal")
    finally:
        stream.stop_stream()
        stream.close()
    return take
