"""The microphone as the device uses it: cleaned 24 kHz frames while somebody needs them, nothing at rest.

While `needed()` says so (the conversation streams the microphone, or the speaker plays or has just played,
so that the canceller follows the room), the capture stream wakes the event loop every `batch` buffers and
every frame goes through the echo front end (canceller and local voice detector): `frames()` yields them.
Each wake costs the loop more than a frame's DSP, so `batch` is as large as latency allows; while the voice
detector has an onset pending (a frame above its threshold, speech not yet started), the next buffer wakes the
loop on its own, so that a barge-in is not held up by the batch. The canceller's
reference is paired by stamp (each capture buffer knows how much the speaker had played when it was
recorded), not by when the loop reads, so batches do not shift it.
At rest the PortAudio callback only fills its ring and the loop sleeps. When a turn starts, `since(t)`
catches up on the ring's last moments (what the visitor said between the press and now: the pre-roll), so
that nothing is lost by resting. Call `wake_up()` whenever what `needed()` depends on may have changed.
The echo front end is built by `make_front` when the first frame is cleaned (or by `prepare()`, after start-up),
then kept: what the canceller learns of the room lasts as long as the path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import numpy as np

from edgevoice.audio.microphone import Microphone
from edgevoice.audio.preroll import PREROLL_MS, MicFrame, PreRollBuffer

if TYPE_CHECKING:
    from edgevoice.audio.duplex import EchoFrontEnd

__all__ = ["MicFrame", "MicrophonePath"]


class MicrophonePath:
    """Capture -> 24 kHz -> echo front end, run only while `needed()`; see the module docstring."""

    def __init__(
        self,
        microphone: Microphone,
        make_front: Callable[[], EchoFrontEnd],
        *,
        needed: Callable[[], bool],
        preroll_ms: int = PREROLL_MS,
        batch: int = 1,
    ) -> None:
        self.microphone = microphone
        self._make_front = make_front
        self._front: EchoFrontEnd | None = None
        self._needed = needed
        self._stream = microphone.stream
        self._stream.batch = self._batch = batch
        self._stream.wanted = False
        self._preroll_s = preroll_ms / 1000
        self.recent = PreRollBuffer(round(microphone.frame_s * 1000), preroll_ms)
        self.active = False
        self.activations = 0  # times it woke from rest (a figure for benchmarks)

    @property
    def front(self) -> EchoFrontEnd:
        """The echo front end (canceller and local voice detector), built at its first use."""
        if self._front is None:
            self._front = self._make_front()
        return self._front

    @property
    def front_built(self) -> bool:
        return self._front is not None

    def prepare(self) -> None:
        """Build the echo front end now, so that the first cleaned frame does not wait for it."""
        _ = self.front

    def wake_up(self) -> None:
        """Start cleaning the microphone if it is needed now (cheap when it already runs)."""
        if not self.active and self._needed():
            self.active = True
            self.activations += 1
            # What the ring still holds is from the rest: the speaker was silent then, and if a turn needed
            # it `since` took it. Dropped, so that the canceller never pairs old sound with new playback.
            if self._stream.buffers.available > self._stream.frames_per_buffer * self._stream.batch:
                self.microphone.skip()
            self._stream.wanted = True

    def _rest(self) -> None:
        self.active = False
        self._stream.wanted = False

    async def frames(self) -> AsyncIterator[MicFrame]:
        """Cleaned frames while the path is active (runs until cancelled)."""
        while True:
            await self._stream.wait()
            if not self.active:
                continue
            if not self._needed():
                self._rest()
                continue
            for began, frame, stamp in self._take():
                yield self._clean(began, frame, stamp)
            self._stream.batch = 1 if self.front.vad.onset_pending else self._batch

    def _take(self, newest_s: float | None = None) -> list[tuple[float, np.ndarray, int | None]]:
        """What the capture holds as (began, frame, stamp): the stamp of the buffer each frame ends in (a
        buffer holds a frame: the newest frame ends in the newest buffer, and so on back), None unpaired."""
        taken = self.microphone.take(newest_s=newest_s)
        stamps = self._stream.buffers.stamps if self._stream.paired is not None else []
        if not stamps:
            return [(began, frame, None) for began, frame in taken]
        last = len(stamps) - 1
        return [(b, f, stamps[max(0, last - (len(taken) - 1 - i))]) for i, (b, f) in enumerate(taken)]

    def _clean(self, began: float, frame: np.ndarray, stamp: int | None) -> MicFrame:
        front = self.front
        front.reference.through = stamp
        cleaned, speech_started = front.process(frame)
        return MicFrame(began, cleaned, speech_started, front.vad.voiced)

    def keep(self, frame: MicFrame) -> None:
        """A frame nobody sent: it may begin the next turn."""
        self.recent.add(frame)

    def since(self, t: float) -> list[MicFrame]:
        """The cleaned frames that began at or after `t` (within the pre-roll), oldest first."""
        for began, frame, stamp in self._take(None if self.active else self._preroll_s):
            self.recent.add(self._clean(began, frame, stamp))
        return list(self.recent.since(t))
