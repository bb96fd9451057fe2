"""The capture path: device buffers (any rate, any channel count) -> 24 kHz mono int16 frames."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
        self._resampler = StreamResampler(in_rate, out_rate)
        self._pending = np.zeros(0, dtype=np.int16)

    def convert(self, raw: bytes) -> list[np.ndarray]:
        """Frames completed by this buffer of interleaved int16 (possibly none, possibly several)."""
        samples: np.ndarray = np.frombuffer(raw, dtype=np.int16 if self.width == 2 else np.int32)
        if self.channels > 1:
            samples = samples[self.channel :: self.channels]
        if self.width == 4:
            samples = samples / 65536.0  # 32-bit: the int16 scale the rest of the pipeline works in
        out = to_int16(self._resampler.process(samples))
        pending = np.concatenate((self._pending, out)) if self._pending.size else out
        n = len(pending) // self.frame_samples
        frames = [pending[i * self.frame_samples : (i + 1) * self.frame_samples] for i in range(n)]
        self._pending = pending[n * self.frame_samples :].copy()
        return frames


class Microphone:
    """Frames of 24 kHz mono int16 audio from a running `CaptureStream`."""

    def __init__(self, stream: CaptureStream, channel: int = 0, frame_ms: int = 20, out_rate: int = 24000):
        self.stream = stream
        fmt = stream.format
        channel = min(channel, fmt.channels - 1)
        self.converter = FrameConverter(fmt.rate, fmt.channels, channel, out_rate, frame_ms, fmt.width)
        self.frames_out = 0

    async def frames(self) -> AsyncIterator[np.ndarray]:
        while True:
            raw = await self.stream.read()
            for frame in self.converter.convert(raw):
                self.frames_out += 1
                yield frame
