"""Push-to-talk without paying for the pauses: which frames of a turn go to the server.

The server bills every second of input audio it is given. A visitor presses, waits, speaks and lets go a
moment later: the waits are not speech. `SilenceTrimmer` takes the turn's frames in order, each with the
device's voice detector's verdict (`voiced`: `LocalVad` on the echo-cancelled frame, which errs towards
voiced), and says which frames go up now:

- before speech, frames are held; when speech starts, only the last `lead_ms` of them go up (the margin
  holds a soft onset the detector missed). Speech starts with `onset_ms` of voiced frames in a row, so that
  a click (the button's own) is not speech;
- speech, and the `trail_ms` after its last voiced frame (the detector's hangover: the ends of words, a
  breath), go up as they come; after that, frames are held;
- when speech resumes, the held pause goes up whole, then the speech: a pause mid-sentence is kept as it was;
- at the release (`finish`), held frames after speech are dropped (nothing waits: the margin is already up, so
  the commit goes at once). A turn in which no speech was found at all goes up whole: the server may hear
  what the device did not (a far or quiet visitor), and a deaf device is worse than a few cents.

Held frames are bounded by `hold_ms`: the oldest frames of a longer wait before speech go up as they fall
out (so that a turn without speech still goes up whole); those of a longer pause after speech are dropped (a
pause longer than `trail_ms + hold_ms` is shortened to that). With `enabled` false every frame goes up at
once, and the speech is still measured.

Pure logic: frames are opaque, nothing here looks at samples or keeps time.
"""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from typing import Generic, TypeVar

ONSET_MS = 60  # voiced frames in a row that make speech (a syllable lasts longer, a click less)
HOLD_MS = 5000  # frames held at most (memory, and what a turn without speech sends at the release)

FrameT = TypeVar("FrameT")


def _frames(ms: int, frame_ms: int) -> int:
    """Frames that cover `ms` (a margin is never shorter than asked)."""
    return math.ceil(ms / frame_ms - 1e-9)


class SilenceTrimmer(Generic[FrameT]):
    """One push-to-talk turn's frames in, the ones to send out (see the module docstring).

    `push(frame, voiced)` per frame returns the frames to send now, oldest first; `finish()` at the release
    returns the last ones to send before the commit. `heard` says whether speech was found, `speech_ms` how
    long it lasted (first to last voiced frame, pauses between words included), `captured_ms` how much the
    turn held.
    """

    def __init__(
        self,
        frame_ms: int,
        *,
        lead_ms: int = 300,
        trail_ms: int = 400,
        onset_ms: int = ONSET_MS,
        hold_ms: int = HOLD_MS,
        enabled: bool = True,
    ) -> None:
        self.frame_ms = frame_ms
        self.enabled = enabled
        self._lead = _frames(lead_ms, frame_ms)
        self._trail = _frames(trail_ms, frame_ms)
        self._onset = max(1, _frames(onset_ms, frame_ms))
        self._hold = max(_frames(hold_ms, frame_ms), self._lead + self._onset)
        self._held: deque[FrameT] = deque()
        self._count = 0  # frames pushed
        self._run = 0  # voiced frames in a row, up to the last one pushed
        self._quiet = 0  # frames since the last voiced one, while speech goes up
        self._first: int | None = None  # index of the first frame of speech
        self._last = 0  # index of the last voiced frame of speech
        self.talking = False  # frames go up as they come

    @property
    def heard(self) -> bool:
        """Speech was found in the turn."""
        return self._first is not None

    @property
    def speech_ms(self) -> int:
        """From the first to the last voiced frame of speech (0 if none was found)."""
        return 0 if self._first is None else (self._last - self._first + 1) * self.frame_ms

    @property
    def captured_ms(self) -> int:
        return self._count * self.frame_ms

    def push(self, frame: FrameT, voiced: bool) -> list[FrameT]:
        """The next frame of the turn and the detector's verdict on it; returns the frames to send now."""
        index = self._count
        self._count += 1
        self._run = self._run + 1 if voiced else 0
        if self.talking:
            if voiced:
                self._quiet, self._last = 0, index
            else:
                self._quiet += 1
                self.talking = self._quiet <= self._trail
            if self.talking or not self.enabled:
                return [frame]
        elif self._run >= self._onset:
            return self._speech(index, frame)
        if not self.enabled:
            return [frame]
        self._held.append(frame)
        if len(self._held) > self._hold:
            oldest = self._held.popleft()
            if self._first is None:
                return [oldest]  # a long wait before speech: it goes up rather than being lost
        return []

    def finish(self) -> list[FrameT]:
        """The release: the frames still to send before the commit (nothing after speech but a word that was
        starting as the button went up; the whole rest of a turn without speech)."""
        if self._first is None:
            out = list(self._held)
            self._held.clear()
            return out
        if self._run and not self.talking:
            return self._speech(self._count - 1, None)
        self._held.clear()
        return []

    def _speech(self, last: int, frame: FrameT | None) -> list[FrameT]:
        """Speech starts or resumes with the voiced run that ends at frame `last` (`frame`, unless at the
        release): the held frames to send before it, and it."""
        self.talking, self._quiet, self._last = True, 0, last
        held = self._held
        if self._first is None:
            self._first = last - self._run + 1
            keep = self._lead + self._run - (frame is not None)  # the margin, and the run's frames held so far
            out = list(islice(held, max(0, len(held) - keep), None))
        else:
            out = list(held)  # the pause between words
        held.clear()
        if frame is not None:
            out.append(frame)
        return out
