"""The microphone's recent past: the last cleaned frames, kept while nothing is sent, so that a push-to-talk
turn starts at the moment the finger went down (a hold is only recognised as one a few hundred ms later)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

PREROLL_MS = 600


class PreRollBuffer:
    """The last `keep_ms` of frames, each with the monotonic time it began."""

    def __init__(self, frame_ms: int = 20, keep_ms: int = PREROLL_MS) -> None:
        self.frame_ms = frame_ms
        self._frames: deque[tuple[float, np.ndarray]] = deque(maxlen=max(1, keep_ms // frame_ms))

    def add(self, frame: np.ndarray, began: float) -> None:
        """A frame that began at monotonic time `began`."""
        self._frames.append((began, frame))

    def since(self, t: float) -> Iterator[np.ndarray]:
        """The frames that began at or after `t`, oldest first."""
        return (frame for began, frame in self._frames if began >= t)

    def clear(self) -> None:
        self._frames.clear()
