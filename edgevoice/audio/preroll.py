"""The microphone's frames as the device keeps them, and its recent past: the last cleaned frames, kept while
nothing is sent, so that a push-to-talk turn starts at the moment the finger went down (a hold is only
recognised as one a few hundred ms later)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

PREROLL_MS = 600


class MicFrame(NamedTuple):
    """One cleaned 24 kHz frame, when it began (monotonic s), whether a visitor started talking in it (the
    local barge-in), and whether it sounded like a voice (for trimming a push-to-talk turn's silence)."""

    began: float
    samples: np.ndarray
    speech_started: bool
    voiced: bool


class PreRollBuffer:
    """The last `keep_ms` of frames."""

    def __init__(self, frame_ms: int = 20, keep_ms: int = PREROLL_MS) -> None:
        self.frame_ms = frame_ms
        self._frames: deque[MicFrame] = deque(maxlen=max(1, keep_ms // frame_ms))

    def add(self, frame: MicFrame) -> None:
        self._frames.append(frame)

    def since(self, t: float) -> Iterator[MicFrame]:
        """The frames that began at or after monotonic time `t`, oldest first."""
        return (frame for frame in self._frames if frame.began >= t)

    def clear(self) -> None:
        self._frames.clear()
