"""The far end for the echo canceller: what the speaker really played, as frames in step with the capture.

The playback callback copies every buffer it hands to PortAudio (the answer, and the silence it plays
when the ring is empty) to a `Handover`, the tap (`PlaybackStream(..., tap_seconds=...)`). Once per
capture frame, `EchoReference.next_frame()` drains the tap, takes its first channel, resamples it to the
capture frame rate (the same `StreamResampler` the microphone goes through) and hands out the next
`frame_samples` of that stream.

Both streams advance one frame per callback, so the reference stays in step with the capture without any
clock: the offset between them is whatever the two devices' buffering makes it, and the canceller's delay
estimator measures it. Whoever reads the capture sets `through` to the stamp of its newest buffer (the
number of tap buffers handed over when it was recorded, see bridge.py): the reference then takes from the
tap only what had played by then, so that the pairing does not depend on when the event loop wakes (it may
read several capture buffers at once). To keep the offset stable:

- a small backlog (the lead) absorbs the jitter between the two callbacks;
- when the playback callback is late, the missing samples are handed out as silence; while the lead is
  below `max_lead_ms` it grows by the shortfall (the late samples are kept: the reference shifts a little
  once, and such gaps stop), beyond it they are skipped when they arrive (a short gap, but no shift);
- when the backlog grows (the speaker's clock is faster than the microphone's, or the loop stalled), the
  oldest samples are dropped: the reference must never fall behind its echo, or nothing can be cancelled.
- when the playback stream stops delivering (closed, or not started), the reference is silence and starts
  afresh once it delivers again.

Runs on the event loop; the callback's only extra work is handing its buffer to the tap.
"""

from __future__ import annotations

import numpy as np

from edgevoice.audio.bridge import PlaybackStream
from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.audio.ring import SampleRing

_RECENTRE_S = 1.0  # how often the backlog is checked against its target
_STOPPED_FRAMES = 5  # frames without anything from the tap: the playback stream has stopped


class EchoReference:
    """Frames of `frame_samples` at `rate` of what `stream` played (it must have been opened with a tap)."""

    def __init__(
        self,
        stream: PlaybackStream,
        *,
        rate: int = 24000,
        frame_samples: int = 480,
        lead_ms: float = 5.0,
        max_lead_ms: float = 40.0,
    ) -> None:
        if stream.tap is None:
            raise ValueError("the playback stream has no tap: open it with PlaybackStream(..., tap_seconds=1.0)")
        self.stream = stream
        self.tap = tap = stream.tap
        device_rate = stream.format.rate
        self._lost = tap.lost
        self.rate = rate
        self.frame_samples = frame_samples
        self._resampler = StreamResampler(device_rate, rate)
        self._scale = 1 / 65536 if tap.dtype.itemsize == 4 else 1.0  # a 32-bit device: back to the int16 scale
        self._fifo = SampleRing(rate, 1)  # one second of backlog at most
        self._frame = np.zeros((frame_samples, 1), np.int16)
        self.lead = int(rate * lead_ms / 1000)  # samples kept in hand beyond the frame being handed out
        self._max_lead = max(self.lead, int(rate * max_lead_ms / 1000))
        self._recentre_frames = max(1, round(_RECENTRE_S * rate / frame_samples))
        self._frames = 0
        self._min_backlog: int | None = None  # smallest backlog (before taking a frame) since the last check
        self._owed = 0  # samples handed out as silence that the tap still has to deliver (to be skipped)
        self._running = False
        self._idle_frames = 0
        self.through: int | None = None  # the newest tap buffer the next frames may use (None: whatever came)
        self.gaps = 0  # frames that were short (the playback callback was late)
        self.dropped = 0  # samples dropped to keep the backlog small

    @property
    def backlog(self) -> int:
        """Samples at `rate` received from the tap and not yet handed out."""
        return self._fifo.available

    def next_frame(self) -> np.ndarray:
        """The far end that goes with the next capture frame (int16, `frame_samples`)."""
        if self._drain():
            self._idle_frames = 0
        else:
            self._idle_frames += 1
            if self._idle_frames >= _STOPPED_FRAMES and self._running:
                self._restart()  # the playback stream stopped: silence, and a fresh start when it resumes
        if not self._running:
            if self._fifo.available < self.frame_samples + self.lead:
                return np.zeros(self.frame_samples, np.int16)
            self._running = True
            self._trim(self._fifo.available - self.frame_samples - self.lead)
        self._note_backlog()
        got = self._fifo.read_into(self._frame)
        if got < self.frame_samples:
            short = self.frame_samples - got
            self.gaps += 1
            if self.lead + short <= self._max_lead:
                self.lead += short  # the late samples will be kept: from now on the reference is older
            else:
                self._owed += short
        return self._frame[:, 0].copy()

    def _drain(self) -> int:
        if self.tap.lost != self._lost:  # we fell behind and the tap overflowed: start afresh
            self._lost = self.tap.lost
            self.tap.drop()
            self._restart()
            return 0
        raw = self.tap.take(through=self.through)
        n = len(raw)
        if n == 0:
            return 0
        samples = self._resampler.process(raw[:, 0] * self._scale if self._scale != 1.0 else raw[:, 0])
        if self._owed:
            skip = min(self._owed, len(samples))
            samples = samples[skip:]
            self._owed -= skip
        if len(samples):
            self._fifo.write(to_int16(samples))
        return n

    def _note_backlog(self) -> None:
        backlog = self._fifo.available
        self._min_backlog = backlog if self._min_backlog is None else min(self._min_backlog, backlog)
        self._frames += 1
        if self._frames % self._recentre_frames == 0:
            # Keep the smallest backlog of the last second at one frame plus the lead.
            self._trim(self._min_backlog - self.frame_samples - self.lead)
            self._min_backlog = None

    def _trim(self, excess: int) -> None:
        while excess > 0:
            n = self._fifo.read_into(self._frame[: min(excess, self.frame_samples)])
            if n == 0:
                break
            excess -= n
            self.dropped += n

    def _restart(self) -> None:
        self._running = False
        self._owed = 0
        self._min_backlog = None
        self._resampler.reset()
        self._trim(self._fifo.available)
