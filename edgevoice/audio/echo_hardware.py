"""When the microphone device cancels its own echo (`[audio] hardware_aec = true`): no canceller here.

A ReSpeaker Lite or USB Mic Array, or a USB speakerphone, delivers a processed channel from which its own
canceller has removed what it played. Another canceller over that would only hurt: the residual it leaves
is no longer a linear echo of the reference, and an adaptive filter chasing it adds its own errors.
`DeviceEchoCancellation` passes the microphone through and keeps the two things the device still needs the
played reference for:

- the local barge-in detector: `echo_level` is the power of what was played over the last `_WINDOW_MS` (which
  covers the delay from the reference to its echo and the room's ringing); the detector learns how much of
  it comes back (the residual) and fires only on a voice clearly above that: the device's own answer does not
  interrupt it, a visitor still does;
- the gate as a fallback: the echo that is left, `residual_db` (the microphone's energy over the energy played,
  in blocks of `_BLOCK_S` of playback, the median of the last `_BLOCKS` blocks, which a visitor talking now and
  then hardly moves), says whether the device's canceller works. Until `_VERIFY_BLOCKS` blocks have been
  measured, and whenever the residual is above `WORKING_RESIDUAL_DB` (the device does not cancel: the raw
  channel is captured, its canceller is off, or the answers are not played through it), the microphone is
  attenuated while the device speaks, as `[audio] echo = "gate"` does, and a warning says why.

Same interface as `EchoCanceller` (see `edgevoice.audio.duplex`). Per frame: two dot products and a max.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from edgevoice.audio.gate import EchoGate

log = logging.getLogger(__name__)

_WINDOW_MS = 300.0  # the played power is held this long: the echo comes back up to this late
_ACTIVE_RMS = 16.0  # a far-end frame louder than this (int16 RMS, about -66 dBFS) means the device speaks
_BLOCK_S = 0.5  # playback in one measurement of the echo left (long against the echo's delay)
_BLOCKS = 9  # the residual is the median of this many blocks: a visitor in a few of them does not count
_VERIFY_BLOCKS = 2  # blocks measured before the device's canceller is trusted (1 s of playback)
# A working canceller returns the played sound at least this far down (the residual over what was played).
# The direct echo of a speaker a few cm from the microphone comes back at -10 to +6 dB; a device's canceller
# takes 25 dB or more off it. Between the two: a canceller that works poorly, better gated than trusted.
WORKING_RESIDUAL_DB = -20.0
_HYSTERESIS_DB = 3.0  # a working canceller is distrusted again only above the limit plus this


class DeviceEchoCancellation:
    """The device cancels its own echo: the microphone passes through; see the module docstring."""

    mode = "hardware"

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        *,
        hang_ms: float = 200.0,
        attenuation_db: float = 40.0,
        working_residual_db: float = WORKING_RESIDUAL_DB,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        frame_s = frame_samples / sample_rate
        self._played = np.zeros(max(1, math.ceil(_WINDOW_MS / 1000 / frame_s)), np.float64)
        self._slot = 0
        self._active_power = _ACTIVE_RMS**2
        self._block_frames = max(1, round(_BLOCK_S / frame_s))
        self._limit = 10 ** (working_residual_db / 10)
        self.working_residual_db = working_residual_db
        self._block_near = self._block_far = 0.0
        self._block_count = 0
        self._blocks = np.zeros(_BLOCKS, np.float64)  # the last blocks' residuals (energy ratios)
        self.fallback = EchoGate(sample_rate, frame_samples, hang_ms=hang_ms, attenuation_db=attenuation_db)
        self.far_active = False
        self.echo_level = 0.0
        self.measured_blocks = 0  # blocks of playback in which the echo left was measured
        self.working = False  # the device's canceller has been measured and found to work
        self._warned = False

    @property
    def verified(self) -> bool:
        """Enough playback has been measured to judge the device's canceller."""
        return self.measured_blocks >= _VERIFY_BLOCKS

    @property
    def residual_db(self) -> float | None:
        """The echo left in the microphone, relative to what was played (None until measured)."""
        if not self.measured_blocks:
            return None
        return 10 * math.log10(max(self._residual(), 1e-12))

    def _residual(self) -> float:
        return float(np.median(self._blocks[: min(self.measured_blocks, _BLOCKS)]))

    @property
    def gated(self) -> bool:
        """The microphone is attenuated while the device speaks (the fallback: not verified, or not working)."""
        return not self.working

    def reset(self) -> None:
        self._played[:] = 0.0
        self._block_near = self._block_far = 0.0
        self._block_count = 0
        self.fallback.reset()
        self.measured_blocks = 0
        self.working = self._warned = False
        self.echo_level = 0.0

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        if len(near) != self.frame_samples or len(far) != self.frame_samples:
            raise ValueError(f"frames must be {self.frame_samples} samples, got {len(near)} and {len(far)}")
        x = far.astype(np.float64)
        far_power = float(np.dot(x, x)) / self.frame_samples
        self._played[self._slot] = far_power
        self._slot = (self._slot + 1) % self._played.size
        played = float(self._played.max())  # what may come back now: the loudest of the last _WINDOW_MS
        if played > self._active_power:  # the device's voice may be in the microphone: measure what is left
            d = near.astype(np.float64)
            self._block_near += float(np.dot(d, d)) / self.frame_samples
            self._block_far += far_power
            self._block_count += 1
            if self._block_count == self._block_frames:
                self._blocks[self.measured_blocks % _BLOCKS] = self._block_near / max(self._block_far, 1e-3)
                self.measured_blocks += 1
                self._block_near = self._block_far = 0.0
                self._block_count = 0
                self._judge()
        if self.gated:
            cleaned = self.fallback.process(near, far)
            self.far_active = self.fallback.far_active
            self.echo_level = self.fallback.echo_level
            return cleaned
        self.far_active = played > self._active_power
        self.echo_level = played if self.far_active else 0.0
        return near

    def _judge(self) -> None:
        if not self.verified:
            return
        residual = self._residual()
        if self.working:
            if residual > self._limit * 10 ** (_HYSTERESIS_DB / 10):
                self.working = False
                self._warn()
        elif residual <= self._limit:
            self.working = True
            self._warned = False
            log.info("hardware echo cancellation works: the device's voice comes back %.0f dB down", self.residual_db)
        elif not self._warned:
            self._warn()

    def _warn(self) -> None:
        self._warned = True
        log.warning(
            "[audio] hardware_aec: the microphone device does not cancel its echo (the device's voice comes back "
            "%.0f dB down, more than %.0f dB); the microphone is attenuated while the device speaks, as with "
            "echo = 'gate'. Check that [audio] input_channel is the device's processed channel and that the "
            "answers play through the device itself (output_device)",
            self.residual_db,
            self.working_residual_db,
        )
