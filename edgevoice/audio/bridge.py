"""PortAudio streams in callback mode, bridged to asyncio.

PortAudio calls back on its own real-time thread. The callbacks here only hand data over (handover.py says
why so little): the capture callback appends the buffer to a `Handover` and, while the loop wants them,
wakes it every few buffers (`call_soon_threadsafe`); the playback callback copies frames out of a
`SampleRing` (and hands exactly what it gave PortAudio to a second `Handover`, the tap, for the echo
canceller). Each capture buffer is stamped with the number of playback buffers handed over by then, so that
the canceller pairs it with what was playing at that moment, not with what had played by the time the loop
woke. No DSP, no I/O, no waiting on the loop. Each names its thread once (`ev-capture`,
`ev-playback`), so that a profile is readable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
import pyaudio

from edgevoice.audio.devices import AudioDeviceError, StreamFormat, quiet_stderr
from edgevoice.audio.handover import Handover
from edgevoice.audio.ring import SampleRing
from edgevoice.threads import name_this_thread

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
    """The microphone, from PortAudio's thread into a ring the event loop reads when it wants to.

    The callback hands each buffer over to `buffers` (raw interleaved samples at the device rate, the last
    `ring_seconds` of them) and, only while `wanted`, wakes the loop every `batch` buffers. At rest nobody
    wakes: the hand-over keeps the last seconds (the pre-roll of the next turn) and the loop sleeps. With a
    `paired` playback stream, each buffer is stamped with that stream's `delivered` count at the time.
    """

    def __init__(
        self,
        pa: pyaudio.PyAudio,
        fmt: StreamFormat,
        frames_per_buffer: int,
        loop: asyncio.AbstractEventLoop,
        *,
        ring_seconds: float = 2.0,
        batch: int = 1,
    ) -> None:
        self.format = fmt
        self.frames_per_buffer = frames_per_buffer
        self.paired: PlaybackStream | None = None  # whose buffers the capture buffers are stamped against
        self._loop = loop
        dtype = np.dtype("<i4" if fmt.width == 4 else "<i2")
        self.buffers = Handover(int(fmt.rate * ring_seconds), fmt.channels, dtype, frames_per_buffer)
        self.wanted = True  # the loop is woken with new buffers (else they only go into the ring)
        self.batch = max(1, batch)
        self._woken = asyncio.Event()
        self.last_callback = 0.0  # monotonic time of the last callback: the watchdog's proof of life
        self.delivered = 0  # buffers PortAudio delivered
        self.overflows = 0  # buffers PortAudio reported as having lost input (the callback came too late)
        self.missed = 0  # buffers lost while `wanted`: the loop fell `ring_seconds` behind (see `dropped`)
        self._named = False
        self._stream = open_stream(pa, fmt, frames_per_buffer, self._callback, input=True)

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        self.last_callback = time.monotonic()
        if not self._named:
            self._named = name_this_thread("ev-capture")
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        if in_data is None:
            return None, pyaudio.paContinue
        paired = self.paired
        if self.buffers.put(in_data, paired.delivered if paired is not None else 0) and self.wanted:
            self.missed += 1
        self.delivered += 1
        if self.wanted and self.delivered % self.batch == 0:
            try:
                self._loop.call_soon_threadsafe(self._woken.set)
            except RuntimeError:  # the loop is closed: we are shutting down
                return None, pyaudio.paComplete
        return None, pyaudio.paContinue

    @property
    def dropped(self) -> int:
        """Buffers the loop was too slow (or did not want) to read before newer ones pushed them out (at rest the
        hand-over only keeps the last seconds, so this grows by design; `missed` counts only the losses)."""
        return self.buffers.lost

    def start(self) -> None:
        self._stream.start_stream()

    async def wait(self) -> None:
        """Until the callback has woken the loop (with `wanted` set) since the last wait."""
        await self._woken.wait()
        self._woken.clear()

    def poke(self) -> None:
        """Wake a `wait()` now (on the event loop), e.g. to read what the ring holds after it was not wanted."""
        self._woken.set()

    def close(self) -> None:
        _close(self._stream, "capture")


class PlaybackStream:
    """Speaker frames from a `SampleRing` to PortAudio; plays silence whenever the ring is empty.

    With `tap_seconds`, every buffer handed to PortAudio is also handed over to `tap` (that long), from
    which `edgevoice.audio.echo_reference.EchoReference` makes the echo canceller's far end. While nothing
    plays, the callback hands PortAudio (and the tap) one buffer of silence made once.
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
        tap_frames = int(fmt.rate * tap_seconds)
        self.tap = Handover(tap_frames, fmt.channels, np.dtype(dtype), frames_per_buffer) if tap_frames else None
        self._out = np.zeros((frames_per_buffer, fmt.channels), dtype=dtype)
        self._silence = self._out.tobytes()
        self.last_callback = 0.0
        self.delivered = 0  # buffers handed to PortAudio (each tap buffer is stamped with its number)
        # Buffers PortAudio reported as played too late while sound played (the speaker heard a gap); a late
        # buffer of silence, between answers, is not heard and is only counted in `silent_underflows`.
        self.underflows = 0
        self.silent_underflows = 0
        self._sounding = False  # the last buffer handed over carried sound
        # Set by the Speaker's pump: more of the answer waits to be handed over. A buffer the ring cannot fill
        # meanwhile is a gap the loop caused (the pump came late), counted in `gaps`; when nothing waits the
        # answer has ended, or its audio is late over the network: not the device's doing.
        self.audio_waiting = False
        self.gaps = 0
        self._named = False
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
        if not self._named:
            self._named = name_this_thread("ev-playback")
        if status & pyaudio.paOutputUnderflow:
            if self._sounding or self.audio_waiting:
                self.underflows += 1
            else:
                self.silent_underflows += 1
        ring = self.ring
        if frame_count == len(self._out) and ring.total_written == ring.total_read:
            data = self._silence  # nothing to play: no numpy, no lock
            if self.audio_waiting:
                self.gaps += 1
        else:
            out = self._out if frame_count == len(self._out) else np.zeros((frame_count, ring.channels), ring.dtype)
            if ring.read_into(out) < frame_count and self.audio_waiting:
                self.gaps += 1
            data = out.tobytes()
        self._sounding = data is not self._silence
        self.delivered += 1
        if self.tap is not None:
            self.tap.put(data, self.delivered)
        return data, pyaudio.paContinue

    def start(self) -> None:
        self._stream.start_stream()

    def close(self) -> None:
        _close(self._stream, "playback")
