"""A fixed-size FIFO of int16 audio frames shared by the event loop (writer) and PortAudio's thread (reader).

The reader runs inside the PortAudio callback, so it must never wait for long: the lock is held only for
a copy of at most one callback's worth of samples, and the storage is allocated once.
"""

from __future__ import annotations

import threading

import numpy as np


class SampleRing:
    """Interleaved frames (int16, or int32 for 32-bit devices), `capacity` frames long.

    `total_written` and `total_read` count frames since creation and never go back, except that
    `clear()` drops what was written but not yet read (the writer's count falls back to the reader's).
    Those counters are the device positions the playout accounting maps items onto.
    """

    def __init__(self, capacity: int, channels: int = 1, dtype: type[np.integer] = np.int16) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError("capacity and channels must be positive")
        self.capacity = capacity
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self._data = np.zeros((capacity, channels), dtype=self.dtype)
        self._lock = threading.Lock()
        self.total_written = 0
        self.total_read = 0
        self.underruns = 0  # reads that ran dry part-way (a gap of silence inside the audio)

    @property
    def available(self) -> int:
        """Frames written and not yet read."""
        return self.total_written - self.total_read

    @property
    def free(self) -> int:
        return self.capacity - self.available

    def write(self, frames: np.ndarray) -> int:
        """Append frames (shape (n,) for mono or (n, channels)); returns how many fitted."""
        frames = frames.reshape(-1, self.channels)
        with self._lock:
            n = min(len(frames), self.capacity - (self.total_written - self.total_read))
            start = self.total_written % self.capacity
            first = min(n, self.capacity - start)
            self._data[start : start + first] = frames[:first]
            self._data[: n - first] = frames[first:n]
            self.total_written += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Fill `out` (shape (n, channels)) with the oldest frames, zero-padding a shortfall; returns frames read."""
        wanted = len(out)
        with self._lock:
            n = min(wanted, self.total_written - self.total_read)
            start = self.total_read % self.capacity
            first = min(n, self.capacity - start)
            out[:first] = self._data[start : start + first]
            out[first:n] = self._data[: n - first]
            self.total_read += n
        if n < wanted:
            out[n:] = 0
            if n > 0:
                self.underruns += 1
        return n

    def clear(self) -> int:
        """Drop every frame not yet read (barge-in); returns how many were dropped."""
        with self._lock:
            dropped = self.total_written - self.total_read
            self.total_written = self.total_read
        return dropped
