"""The capture path: device buffers (any rate, any channel count) -> 24 kHz mono int16 frames.

`CaptureStream` keeps the raw microphone's last seconds; `Microphone` turns what it holds into 20 ms frames at
24 kHz (one channel, resampled) when it is asked to, and only then: at rest nothing here runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from edgevoice.audio.bridge import CaptureStream
from edgevoice.audio.resample import StreamResampler, to_int16


class FrameConverter:
    """Pick one channel, resample to `out_rate`, and cut into frames of exactly `frame_ms`. Pure DSP."""

    def __init__(
        self, in_rate: int, channels: int, channel: int = 0, out_rate: int = 24000, frame_ms: int = 20, width: int = 2
    ):
        if not 0 <= channel < channels:
            raise ValueError(f"channel {channel} does not exist in a {channels}-channel stream")
        self.channels = channels
        self.channel = channel
        self.width = width
        self.frame_samples = out_rate * frame_ms // 1000
        self.ratio = out_rate / in_rate
        self._resampler = StreamResampler(in_rate, out_rate)
        self._pending = np.zeros(0, dtype=np.int16)

    def convert(self, block: np.ndarray) -> list[np.ndarray]:
        """Frames completed by `block`, device frames of shape (n, channels) (possibly none, possibly several)."""
        samples = block[:, self.channel]
        if self.width == 4:
            samples = samples / 65536.0  # 32-bit: the int16 scale the rest of the pipeline works in
        out = to_int16(self._resampler.process(samples))
        pending = np.concatenate((self._pending, out)) if self._pending.size else out
        n = len(pending) // self.frame_samples
        frames = [pending[i * self.frame_samples : (i + 1) * self.frame_samples] for i in range(n)]
        self._pending = pending[n * self.frame_samples :].copy()
        return frames

    @property
    def pending_samples(self) -> int:
        """Output samples waiting for the rest of their frame."""
        return int(self._pending.size)

    def reset(self) -> None:
        """Forget the stream: what comes next is not contiguous with what came before."""
        self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.int16)


class Microphone:
    """Frames of 24 kHz mono int16 audio from a running `CaptureStream`, taken from its ring on demand.

    `take()` converts everything the stream holds now (each frame with the monotonic time it began), `skip()`
    drops it unread, and `frames()` waits for the stream to wake the loop and yields what arrived.
    """

    def __init__(
        self,
        stream: CaptureStream,
        channel: int = 0,
        frame_ms: int = 20,
        out_rate: int = 24000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream
        fmt = stream.format
        channel = min(channel, fmt.channels - 1)
        self.converter = FrameConverter(fmt.rate, fmt.channels, channel, out_rate, frame_ms, fmt.width)
        self.frame_s = frame_ms / 1000
        self._clock = clock
        self._lost = stream.buffers.lost
        self.frames_out = 0

    def take(self, *, newest_s: float | None = None) -> list[tuple[float, np.ndarray]]:
        """Convert what the stream holds (with `newest_s`, only its last `newest_s` seconds): (began, frame) pairs."""
        buffers = self.stream.buffers
        newest = None if newest_s is None else int(newest_s * self.stream.format.rate)
        if buffers.lost != self._lost or (newest is not None and buffers.available > newest):
            self._lost = buffers.lost
            self.converter.reset()  # what comes is not contiguous with what the converter saw last
        block = buffers.take(newest)
        frames = self.converter.convert(block) if len(block) else []
        if not frames:
            return []
        self.frames_out += len(frames)
        # The last frame ends where the newest sample does, less what waits for the next frame.
        end = self._clock() - self.converter.pending_samples / (self.converter.frame_samples / self.frame_s)
        first = end - len(frames) * self.frame_s
        return [(first + i * self.frame_s, frame) for i, frame in enumerate(frames)]

    def skip(self) -> None:
        """Drop what the stream holds: the next frame starts a new stretch of sound."""
        self.stream.buffers.drop()
        self._lost = self.stream.buffers.lost
        self.converter.reset()

    async def frames(self) -> AsyncIterator[np.ndarray]:
        while True:
            await self.stream.wait()
            for _, frame in self.take():
                yield frame
