"""PortAudio streams in callback mode, bridged to asyncio.

PortAudio calls back on its own real-time thread. The callbacks here only hand data over: the capture
callback passes the bytes PortAudio gave it to the event loop (`call_soon_threadsafe`), the playback
callback copies frames out of a `SampleRing` (and, for the echo canceller, a copy of exactly what it
handed to PortAudio into a second ring, the tap). No DSP, no I/O, no waiting on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import pyaudio

from edgevoice.audio.devices import AudioDeviceError, StreamFormat, quiet_stderr
from edgevoice.audio.ring import SampleRing

log = logging.getLogger(__name__)


def open_stream(
    pa: pyaudio.PyAudio, fmt: StreamFormat, frames: int, callback: Any = None, *, input: bool
) -> pyaudio.Stream:
    """A PortAudio stream on `fmt` (callback mode with `callback`, blocking without), errors explained."""
    direction = "input" if input else "output"
    try:
        with quiet_stderr():
            return pa.open(
                format=fmt.pa_format,
                channels=fmt.channels,
                rate=fmt.rate,
                input=input,
                output=not input,
                frames_per_buffer=frames,
                stream_callback=callback,
                start=callback is None,
                **{f"{direction}_device_index": fmt.device.index},
            )
    except (OSError, ValueError) as exc:
        raise AudioDeviceError(
            f"cannot open {direction} device {fmt.device.index} {fmt.device.name!r} at {fmt.rate} Hz, "
            f"{fmt.channels} channel(s): {exc}. Is another program using it? See `edgevoice devices`."
        ) from None


def _close(stream: pyaudio.Stream, what: str) -> None:
    try:
        if stream.is_active():
            stream.stop_stream()
        stream.close()
    except OSError as exc:
        log.warning("closing the %s stream failed: %s", what, exc)


class CaptureStream:
    """Microphone buffers from PortAudio's thread to the event loop, as raw interleaved int16 bytes."""

    def __init__(
        self,
        pa: pyaudio.PyAudio,
        fmt: StreamFormat,
        frames_per_buffer: int,
        loop: asyncio.AbstractEventLoop,
        max_queued: int = 50,
    ) -> None:
        self.format = fmt
        self.frames_per_buffer = frames_per_buffer
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max_queued)
        self.last_callback = 0.0  # monotonic time of the last callback: the watchdog's proof of life
        self.buffers = 0  # buffers handed to the loop
        self.dropped = 0  # buffers the loop was too slow to take (oldest dropped)
        self.overflows = 0  # buffers PortAudio reported as having lost input
        self._stream = open_stream(pa, fmt, frames_per_buffer, self._callback, input=True)

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        self.last_callback = time.monotonic()
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        if in_data is None:
            return None, pyaudio.paContinue
        try:
            self._loop.call_soon_threadsafe(self._deliver, in_data)
        except RuntimeError:  # the loop is closed: we are shutting down
            return None, pyaudio.paComplete
        return None, pyaudio.paContinue

    def _deliver(self, data: bytes) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(data)
        self.buffers += 1

    def start(self) -> None:
        self._stream.start_stream()

    async def read(self) -> bytes:
        """The next buffer, `frames_per_buffer` frames of interleaved int16 at the device rate."""
        return await self._queue.get()

    def close(self) -> None:
        _close(self._stream, "capture")


class PlaybackStream:
    """Speaker frames from a `SampleRing` to PortAudio; plays silence whenever the ring is empty.

    With `tap_seconds`, every buffer handed to PortAudio is also copied into `tap` (a ring that long),
    from which `edgevoice.audio.echo_reference.EchoReference` makes the echo canceller's far end.
    """

    def __init__(
        self,
        pa: pyaudio.PyAudio,
        fmt: StreamFormat,
        frames_per_buffer: int,
        ring_seconds: float = 2.0,
        tap_seconds: float = 0.0,
    ) -> None:
        self.format = fmt
        self.frames_per_buffer = frames_per_buffer
        dtype = np.int32 if fmt.width == 4 else np.int16
        self.ring = SampleRing(int(fmt.rate * ring_seconds), fmt.channels, dtype)
        self.tap = SampleRing(int(fmt.rate * tap_seconds), fmt.channels, dtype) if tap_seconds > 0 else None
        self.tap_lost = 0  # frames the tap had no room for (its reader fell behind)
        self._out = np.zeros((frames_per_buffer, fmt.channels), dtype=dtype)
        self.last_callback = 0.0
        self._stream = open_stream(pa, fmt, frames_per_buffer, self._callback, input=False)

    @property
    def latency_seconds(self) -> float:
        """PortAudio's estimate of the time from the callback to the speaker."""
        try:
            return float(self._stream.get_output_latency())
        except OSError:
            return 0.0

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[bytes, int]:
        self.last_callback = time.monotonic()
        out = (
            self._out
            if frame_count == len(self._out)
            else np.zeros((frame_count, self.format.channels), self.ring.dtype)
        )
        self.ring.read_into(out)
        if self.tap is not None:
            self.tap_lost += frame_count - self.tap.write(out)
        return out.tobytes(), pyaudio.paContinue

    def start(self) -> None:
        self._stream.start_stream()

    def close(self) -> None:
        _close(self._stream, "playback")
