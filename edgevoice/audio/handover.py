"""Buffers handed from a PortAudio callback to the event loop: the cheapest hand-over Python has.

A PortAudio callback runs on a real-time thread, cache-cold every 20 ms: each numpy call or lock in it
costs tens of microseconds there (measured: 74 us per capture callback with a numpy ring, against a few us
in a warm loop). So the callback only appends the `bytes` object PortAudio already made to a bounded
`deque` (atomic in CPython: no lock), and the reader joins and converts whatever it takes, when it wants.

Each buffer carries a stamp, an int the writer chooses, in the same append: the playback tap stamps each
buffer with its number, the capture stamps each with the number of the last buffer the tap had then. So the
reader can pair a capture buffer with exactly what the speaker had played when it was recorded
(`take(through=stamp)`), however late the event loop reads either.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class Handover:
    """Raw buffers of interleaved frames, oldest first, each with a stamp; when full, the oldest fall out (and
    are counted)."""

    def __init__(self, max_frames: int, channels: int, dtype: np.dtype[np.integer], frames_per_buffer: int) -> None:
        self.channels = channels
        self.dtype = dtype
        self.frame_bytes = channels * dtype.itemsize
        self.max_buffers = max(2, -(-max_frames // frames_per_buffer))
        self._buffers: deque[tuple[bytes, int]] = deque(maxlen=self.max_buffers)
        self.lost = 0  # buffers that fell out unread
        self.stamps: list[int] = []  # the stamps of the buffers the last `take` took, oldest first (the reader's)

    def put(self, data: bytes, stamp: int = 0) -> bool:
        """The writer's side (the callback): never blocks, never fails. True when the oldest buffer fell out."""
        full = len(self._buffers) == self.max_buffers
        if full:
            self.lost += 1
        self._buffers.append((data, stamp))
        return full

    @property
    def available(self) -> int:
        """Frames waiting to be taken."""
        return sum(len(b) for b, _ in self._buffers) // self.frame_bytes

    def take(self, newest: int | None = None, *, through: int | None = None) -> np.ndarray:
        """Every frame waiting, shape (n, channels); with `newest`, only that many of the most recent; with
        `through`, only the buffers stamped `through` or less (the rest stay)."""
        buffers, parts, self.stamps = self._buffers, [], []
        while buffers and (through is None or buffers[0][1] <= through):
            data, stamp = buffers.popleft()
            parts.append(data)
            self.stamps.append(stamp)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        frames = np.frombuffer(data, self.dtype).reshape(-1, self.channels)
        return frames if newest is None else frames[max(0, len(frames) - newest) :]

    def drop(self) -> int:
        """Discard every frame waiting; returns how many."""
        n = self.available
        self._buffers.clear()
        return n
