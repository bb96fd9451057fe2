"""Acoustic echo cancellation: the microphone minus what the device's own speaker put into it.

    canceller = EchoCanceller(24000, 480)            # 20 ms frames at 24 kHz, 128 ms tail
    cleaned = canceller.process(near, far)           # int16 in, int16 out, one call per frame

`near` is the microphone frame and `far` the frame of what the speaker played at the same time (see
`edgevoice.audio.echo_reference`); both int16 arrays of `frame_samples` at `sample_rate`. Stages:

1. `DelayEstimator` (echo_delay.py) finds the bulk delay between the reference and its echo; the far end is
   read that far back from a history buffer, so that the filter's taps are spent on the room, not on
   PortAudio's buffers. When the delay moves, the filter's taps move with it.
2. `AdaptiveEchoFilter` (echo_filter.py) models the echo path over `tail_ms` and subtracts its estimate.
3. `ResidualEchoSuppressor` (echo_suppressor.py) attenuates what is left where echo still dominates.

The output lags the input by one internal block (20 ms by default: the suppressor's overlap-add). While
nothing has played for longer than the tail, the adaptive filter and the suppressor are skipped. Pure DSP:
no I/O, no locks, buffers allocated once.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from edgevoice.audio.echo_delay import DelayEstimator
from edgevoice.audio.echo_filter import AdaptiveEchoFilter
from edgevoice.audio.echo_suppressor import ResidualEchoSuppressor

log = logging.getLogger(__name__)

# The filter starts this long before the estimated direct path: room for the pre-ringing of resampling
# filters and for the delay to shrink a little without a realignment.
_DELAY_MARGIN_MS = 4.0
# A far-end block quieter than this (RMS, int16 units, about -66 dBFS) does not count as playing.
_FAR_ACTIVE_RMS = 16.0
# The echo level a voice detector is told about (the microphone's level while the far end plays) is held
# over this decay: the output lags a block, and the room rings on after the far end stops.
_ECHO_HOLD_DB_PER_S = 40.0
# The filter is learning the room until its echo return loss (microphone over what the filter leaves, while
# the far end plays) has stayed at _LEARNED_ERLE_DB or more for _LEARNED_HOLD_S of playback (a filter that
# touches it once may not hold it yet), and for at least _LEARNING_MIN_S of playback. Meanwhile the
# microphone cannot be trusted while the device's voice may be in it: the output is attenuated by
# _LEARNING_ATTENUATION_DB (as the gate would), so that the server's VAD does not hear the device's first
# words, and a voice detector is told not to trust it (no barge-in by voice then; the button still works).
# A canceller that has not converged after _LEARNING_MAX_S of playback stays in that mode: where cancelling
# cannot work, the device degrades into a gate rather than interrupting itself.
_LEARNED_ERLE_DB = 15.0
_LEARNED_HOLD_S = 0.4
# ...or until the far end has played while the microphone stayed below this (RMS): there is no echo worth
# cancelling (headphones, a distant speaker), nothing to learn, and the microphone can be trusted.
_NO_ECHO_DBFS = -50.0
_LEARNING_MIN_S = 0.6
_LEARNING_MAX_S = 20.0
_LEARNING_ATTENUATION_DB = 40.0
_ERLE_SMOOTHING = 0.1  # per active frame: about 10 frames (200 ms) of memory


class _History:
    """The last `capacity` samples of a stream, readable as one contiguous slice (no per-frame copies)."""

    def __init__(self, capacity: int, chunk: int) -> None:
        self.capacity = capacity
        self._buf = np.zeros(2 * capacity + chunk, np.float32)
        self._end = capacity  # the buffer starts full of silence

    def append(self, x: np.ndarray) -> None:
        n = len(x)
        if self._end + n > self._buf.size:
            self._buf[: self.capacity] = self._buf[self._end - self.capacity : self._end]
            self._end = self.capacity
        self._buf[self._end : self._end + n] = x
        self._end += n

    def last(self, n: int, skip: int = 0) -> np.ndarray:
        """`n` samples ending `skip` samples before the newest (a view: copy it to keep it)."""
        end = self._end - skip
        return self._buf[end - n : end]


class EchoCanceller:
    """Removes the echo of `far` from `near`, one frame at a time."""

    mode = "aec"

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        tail_ms: float = 128.0,
        *,
        max_delay_ms: float = 500.0,
        block_ms: float = 20.0,
        suppress: bool = True,
    ) -> None:
        if sample_rate < 8000 or frame_samples <= 0:
            raise ValueError(f"need a rate of 8 kHz or more and a positive frame, got {sample_rate}, {frame_samples}")
        if not 16 <= tail_ms <= 1000:
            raise ValueError(f"tail_ms must be between 16 and 1000, got {tail_ms}")
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        block = max(1, min(frame_samples, int(sample_rate * block_ms / 1000)))
        while frame_samples % block:
            block -= 1
        self.block = block
        self.partitions = math.ceil(tail_ms * sample_rate / 1000 / block)
        self.tail_ms = self.partitions * block * 1000 / sample_rate
        self._margin = int(sample_rate * _DELAY_MARGIN_MS / 1000)
        self._max_delay = int(sample_rate * max_delay_ms / 1000)
        self.filter = AdaptiveEchoFilter(block, self.partitions)
        self.suppressor = ResidualEchoSuppressor(block, sample_rate) if suppress else None
        self.delay_estimator = DelayEstimator(sample_rate, frame_samples, max_delay_ms=max_delay_ms)
        self._far = _History(self._max_delay + (self.partitions + 2) * block + frame_samples, frame_samples)
        self._delay = 0  # samples the far end is read back
        self._silent_blocks = self.partitions + 2  # blocks since the aligned far end last played anything
        self._far_active_power = _FAR_ACTIVE_RMS**2 * block
        self._near = np.zeros(frame_samples, np.float32)
        self._out = np.zeros(frame_samples, np.float32)
        frame_s = frame_samples / sample_rate
        self._echo_hold = 10 ** (-_ECHO_HOLD_DB_PER_S * frame_s / 10)
        self.far_active = False  # the far end played in this frame (after alignment)
        self.echo_level = 0.0  # how loud the device's voice may be in the microphone (see duplex.py)
        self._mic_level = 0.0  # the microphone's power while the far end plays, held over a decay
        self._echo_power = 0.0  # the filters' estimate of the echo's power, held over the same decay
        self.realignments = 0
        self._copies = 0  # the filter's count of echo path changes, as last seen
        self._played_frames = 0  # frames in which the far end played, since the start
        self._min_learning_frames = round(_LEARNING_MIN_S * sample_rate / frame_samples)
        self._max_learning_frames = round(_LEARNING_MAX_S * sample_rate / frame_samples)
        self._near_power = 0.0  # smoothed over the frames in which the far end plays
        self._error_power = 0.0
        self._learned = False
        self._gave_up = False
        self._converged_frames = 0  # playback frames in a row with the ERLE at _LEARNED_ERLE_DB or more
        self._hold_frames = round(_LEARNED_HOLD_S * sample_rate / frame_samples)
        self._learning_gain = 10 ** (-_LEARNING_ATTENUATION_DB / 20)

    @property
    def erle_db(self) -> float:
        """The linear filter's echo return loss enhancement, as measured while the far end plays."""
        if self._error_power <= 0.0:
            return 0.0
        return 10 * math.log10(max(self._near_power, 1e-9) / self._error_power)

    @property
    def learning(self) -> bool:
        """The filter does not know the room yet: its output is not to be trusted while the device speaks."""
        return not self._learned

    @property
    def delay_ms(self) -> float:
        """How far back in the reference the filter's first tap looks."""
        return self._delay * 1000 / self.sample_rate

    def reset(self) -> None:
        """Forget everything learnt (the device was moved to another room, say)."""
        self.filter.reset()
        if self.suppressor is not None:
            self.suppressor.reset()
        self.delay_estimator.reset()
        self.echo_level = self._mic_level = self._echo_power = 0.0
        self._played_frames = 0
        self._near_power = self._error_power = 0.0
        self._learned = self._gave_up = False
        self._converged_frames = 0
        self._delay = 0
        self._silent_blocks = self.partitions + 2

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """One frame of microphone and reference in, the microphone without the echo out (int16)."""
        if len(near) != self.frame_samples or len(far) != self.frame_samples:
            raise ValueError(f"frames must be {self.frame_samples} samples, got {len(near)} and {len(far)}")
        self._near[:] = near
        self._far.append(far)
        if self.delay_estimator.update(near, far):
            self._realign(self.delay_estimator.delay or 0)

        n = self.block
        aligned = self._far.last(self.frame_samples, self._delay)
        active = False
        error_energy = estimate_energy = 0.0
        for i in range(0, self.frame_samples, n):
            x = aligned[i : i + n]
            d = self._near[i : i + n]
            power = float(np.dot(x, x))
            if power > 0.0:
                self._silent_blocks = 0
            else:
                self._silent_blocks += 1
            block_active = power > self._far_active_power
            active = active or block_active
            if self._silent_blocks > self.partitions + 1:
                self.filter.idle()
                error = d
            else:
                error = self.filter.filter(x, d)
                estimate_energy += self.filter.echo_energy
            error_energy += float(np.dot(error, error))
            if self.suppressor is None:
                self._out[i : i + n] = error
            else:
                f = self.filter
                if f.copies != self._copies:
                    self._copies = f.copies
                    self.suppressor.path_changed()
                self._out[i : i + n] = self.suppressor.process(error, f.echo_spectrum, f.mismatch_power, block_active)
        self.far_active = active
        # The microphone's level while the far end plays says whether the device's voice is audible at all (while
        # the filter learns the room).
        held = self._mic_level * self._echo_hold
        self._mic_level = max(float(np.dot(self._near, self._near)) / self.frame_samples, held) if active else held
        if active:
            self._played_frames += 1
            self._update_learning(float(np.dot(self._near, self._near)), error_energy)
        audible = self._mic_level > _FAR_ACTIVE_RMS**2
        # How loud the device's voice is in the microphone, for a voice detector: the filter's estimate of the
        # echo (of whichever of its two filters does better: the shadow's once it has found a new echo path),
        # held over a decay for the block the output lags and the room's ringing. Not the microphone's level,
        # which holds a visitor's voice as well: a visitor talking over the answer would raise the bar for
        # their own first words.
        self._echo_power = max(estimate_energy / self.frame_samples, self._echo_power * self._echo_hold)
        self.echo_level = math.inf if self.learning and audible else self._echo_power
        if self.learning and audible:
            self._out *= self._learning_gain
        return np.clip(np.rint(self._out), -32768, 32767).astype(np.int16)

    def _update_learning(self, near_energy: float, error_energy: float) -> None:
        a = _ERLE_SMOOTHING
        self._near_power += a * (near_energy - self._near_power)
        self._error_power += a * (error_energy - self._error_power)
        if self._learned:
            return
        self._converged_frames = self._converged_frames + 1 if self.erle_db >= _LEARNED_ERLE_DB else 0
        if self._played_frames < self._min_learning_frames:
            return
        near_dbfs = 10 * math.log10(max(self._near_power / self.frame_samples, 1e-9) / 32768**2)
        played_s = self._played_frames * self.frame_samples / self.sample_rate
        if self._converged_frames >= self._hold_frames:
            self._learned = True
            log.info("echo canceller: learnt the room (%.0f dB after %.1f s of playback)", self.erle_db, played_s)
        elif near_dbfs < _NO_ECHO_DBFS:
            self._learned = True
            log.info("echo canceller: the microphone hears no echo (%.0f dBFS while the device plays)", near_dbfs)
        elif self._played_frames >= self._max_learning_frames and not self._gave_up:
            self._gave_up = True
            log.warning(
                "echo canceller: only %.0f dB of echo removed after %.0f s of playback; the microphone stays "
                "attenuated while the device speaks (as with [audio] echo = 'gate'). Check that the speaker does "
                "not distort and the microphone is not against it",
                self.erle_db,
                _LEARNING_MAX_S,
            )

    def _realign(self, direct_path: int) -> None:
        target = min(max(0, direct_path - self._margin), self._max_delay)
        shift = target - self._delay
        if abs(shift) <= self._margin // 2:
            return
        self._delay = target
        history = self._far.last((self.partitions + 1) * self.block, self._delay + self.frame_samples)
        self.filter.realign(shift, history)
        self.realignments += 1
