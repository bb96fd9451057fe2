"""The two ways of living with the speaker's echo without cancelling it: half duplex (`gate`) and `off`.

`EchoGate` attenuates the microphone while the device speaks and for a hang time after, long enough for
the echo to arrive (the playback reference leads its echo by PortAudio's buffering, measured by the same
`DelayEstimator` the canceller uses) and to die away in the room. Nobody can interrupt the device by voice
then, but it can never hear itself either: the mode for hardware where cancellation cannot work (a speaker
that distorts heavily, a microphone pressed against the speaker).

`NoEchoControl` passes the microphone through untouched.

Both have the interface of `EchoCanceller` (see `edgevoice.audio.duplex`).
"""

from __future__ import annotations

import math

import numpy as np

from edgevoice.audio.echo_delay import DelayEstimator

_ACTIVE_RMS = 16.0  # a far-end frame louder than this (int16 RMS, about -66 dBFS) means the device speaks
_RAMP_MS = 5.0  # gain changes are ramped over this long, so that the gate does not click
_UNKNOWN_DELAY_MS = 150.0  # hang added for the playback latency until the delay has been measured


class FarActivity:
    """Whether the device is speaking, one far-end frame at a time, with a hang time after it stops."""

    def __init__(self, sample_rate: int, frame_samples: int, hang_ms: float) -> None:
        self.frame_ms = frame_samples * 1000 / sample_rate
        self.hang_ms = hang_ms
        self._threshold = _ACTIVE_RMS**2 * frame_samples
        self._quiet_ms = math.inf  # since the far end last played
        self.playing = False  # this frame
        self.active = False  # this frame or within the hang time

    def update(self, far: np.ndarray, hang_ms: float | None = None) -> bool:
        x = far.astype(np.float32)
        self.playing = float(np.dot(x, x)) > self._threshold
        self._quiet_ms = 0.0 if self.playing else self._quiet_ms + self.frame_ms
        self.active = self._quiet_ms <= (self.hang_ms if hang_ms is None else hang_ms)
        return self.active


class EchoGate:
    """Half duplex: the microphone is attenuated by `attenuation_db` while the device speaks, plus `hang_ms`."""

    mode = "gate"

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        *,
        hang_ms: float = 200.0,
        attenuation_db: float = 40.0,
        max_delay_ms: float = 500.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.hang_ms = hang_ms
        self._activity = FarActivity(sample_rate, frame_samples, hang_ms)
        self._delay = DelayEstimator(sample_rate, frame_samples, max_delay_ms=max_delay_ms)
        self._closed_gain = 10 ** (-attenuation_db / 20)
        ramp = max(1, min(frame_samples, int(sample_rate * _RAMP_MS / 1000)))
        self._ramp = np.linspace(0.0, 1.0, ramp, endpoint=False, dtype=np.float32)[1:]
        self._gain = 1.0
        self._curve = np.ones(frame_samples, np.float32)
        self.far_active = False
        self.closed = False  # the microphone is attenuated (in this frame's output)
        self.echo_level = 0.0

    @property
    def delay_ms(self) -> float | None:
        delay = self._delay.delay
        return None if delay is None else delay * 1000 / self.sample_rate

    def reset(self) -> None:
        self._delay.reset()
        self._gain = 1.0
        self.closed = False

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        self._delay.update(near, far)
        latency = self.delay_ms
        hang = self.hang_ms + (_UNKNOWN_DELAY_MS if latency is None else latency)
        self.far_active = self._activity.update(far, hang)
        self.closed = self.far_active
        target = self._closed_gain if self.closed else 1.0
        curve = self._curve
        if target == self._gain:
            curve[:] = target
        else:
            n = self._ramp.size
            curve[:n] = self._gain + (target - self._gain) * self._ramp
            curve[n:] = target
            self._gain = target
        # A closed gate lets no voice through that a detector could trust.
        self.echo_level = math.inf if self.closed else 0.0
        return np.clip(np.rint(near * curve), -32768, 32767).astype(np.int16)


class NoEchoControl:
    """The microphone as it is. While the device speaks its echo is in there: `echo_level` says so."""

    mode = "off"

    def __init__(self, sample_rate: int, frame_samples: int, *, hang_ms: float = 200.0) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._activity = FarActivity(sample_rate, frame_samples, hang_ms + _UNKNOWN_DELAY_MS)
        self.far_active = False
        self.echo_level = 0.0

    def reset(self) -> None:
        pass

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        self.far_active = self._activity.update(far)
        self.echo_level = math.inf if self.far_active else 0.0
        return near
