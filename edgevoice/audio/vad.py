"""A light voice activity detector on the echo-cancelled microphone, for local barge-in.

It has one job: say, within 100 ms, that a visitor started talking while the device speaks, so that the
device stops its answer before the server's `speech_started` arrives, and never say so for the device's
own voice. The speech band of the cleaned signal must clearly exceed two levels:

- the background noise, tracked as a running minimum that rises slowly while nothing plays;
- what the echo control lets through of the device's voice: `echo_level` (how loud the device's voice is
  in the microphone, see `edgevoice.audio.duplex`) times the leak, learnt here as a high quantile (98 %)
  of cleaned level / echo level while the device speaks (`far_active`: not from the room's ringing after it
  stopped, while a visitor who interrupted talks on) and no visitor is detected (frames above the threshold
  are learnt from only once they turned out not to start speech). It starts at -30 dB, rises at most 10 dB
  per second and falls very slowly: it remembers the worst the canceller has let through.

Speech counts once it stands above both for `onset_ms`; it ends after `hangover_ms` below. With
`echo_level` infinite (a closed gate, or no echo control while the device speaks) it never fires.

`voiced` is a second, per-frame verdict for a push-to-talk turn's silence trimming (the conversation's
`SilenceTrimmer`, which adds the onset and the hangover): the frame stands `_VOICED_RELIEF_DB` below what an
onset needs, i.e. 6 dB above the noise floor and the echo's leak, and above -66 dBFS. It errs towards voiced:
a frame called silent may not be sent. With `echo_level` infinite it judges the cleaned frame (what would be
sent) against the noise floor alone.

Per frame: one FFT of the frame and a few sums.
"""

from __future__ import annotations

import math

import numpy as np

from edgevoice.audio import fastfft as fft
from edgevoice.audio.quantile import QuantileTracker

_BAND_HZ = (250.0, 3500.0)  # where a voice has its energy and a room's rumble does not
_NOISE_RISE_DB_PER_S = 3.0  # the noise floor follows a louder room this fast (and a quieter one at once)
_MIN_LEVEL_DBFS = -60.0  # quieter than this is never a visitor (speech band, RMS)
_LEAK_QUANTILE = 0.98
_LEAK_RISE_DB_PER_S = 10.0
_LEAK_INITIAL = 1e-3  # -30 dB until it has learnt: a visitor must be louder than the echo at first
_MIN_ECHO_DBFS = -70.0
_WARMUP_FRAMES = 5  # an echo level below this is silence: nothing to learn the leak from
_VOICED_RELIEF_DB = 6.0  # `voiced` needs this much less than an onset: trimming must err towards keeping


class LocalVad:
    """`process(cleaned, echo_level)` per frame; True on the frame where speech starts. After each frame,
    `voiced` says whether that frame sounded like a voice (see the module docstring)."""

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        *,
        onset_ms: float = 40.0,
        hangover_ms: float = 300.0,
        noise_margin_db: float = 12.0,
        echo_margin_db: float = 12.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        frame_ms = frame_samples * 1000 / sample_rate
        self._onset_frames = max(1, math.ceil(onset_ms / frame_ms - 1e-9))
        self._hangover_frames = max(1, round(hangover_ms / frame_ms))
        freqs = np.fft.rfftfreq(frame_samples, 1 / sample_rate)
        self._band = slice(int(np.searchsorted(freqs, _BAND_HZ[0])), int(np.searchsorted(freqs, _BAND_HZ[1])))
        self._window = np.hanning(frame_samples).astype(np.float32)
        # Band power of the windowed FFT -> mean square of the signal in the band (Parseval, one-sided).
        self._scale = 2.0 / (frame_samples * float(np.sum(self._window**2)))
        self._noise_rise = 10 ** (_NOISE_RISE_DB_PER_S * frame_ms / 1000 / 10)
        self._noise_margin = 10 ** (noise_margin_db / 10)
        self._echo_margin = 10 ** (echo_margin_db / 10)
        self._voiced_relief = 10 ** (-_VOICED_RELIEF_DB / 10)
        self._min_level = _power(_MIN_LEVEL_DBFS)
        self._min_echo = _power(_MIN_ECHO_DBFS)
        self._leak = QuantileTracker(
            (), _LEAK_QUANTILE, _LEAK_RISE_DB_PER_S, frame_ms / 1000, initial=_LEAK_INITIAL, max_down_steps=1.0
        )
        self.noise = 0.0  # speech-band noise floor, mean square
        self.level = 0.0  # speech-band power of the last frame, mean square
        self.threshold = 0.0  # what the last frame had to exceed
        self.speaking = False
        self.voiced = False  # the last frame sounded like a voice (for trimming silence)
        self._above = 0
        self._below = 0
        self._held_ratios: list[float] = []  # the current run above the threshold: echo or a visitor's onset?
        self._warmup = _WARMUP_FRAMES

    @property
    def leak(self) -> float:
        """Speech-band power of the cleaned signal over the echo level, as learnt (an upper quantile)."""
        return float(self._leak.value)

    @property
    def onset_pending(self) -> bool:
        """The last frame stood above the threshold but speech has not started yet: the next frame may start it."""
        return self._above > 0 and not self.speaking

    def reset(self) -> None:
        self.noise = 0.0
        self.speaking = self.voiced = False
        self._above = self._below = 0
        self._held_ratios.clear()
        self._warmup = _WARMUP_FRAMES
        self._leak.reset()

    def process(self, cleaned: np.ndarray, echo_level: float = 0.0, far_active: bool = True) -> bool:
        """Feed one frame; returns True when speech has just started (once per utterance). `far_active`: the
        device's voice is reaching the microphone now (not only the room's ringing after it): the leak is
        learnt only then."""
        spectrum = fft.rfft(cleaned.astype(np.float32) * self._window)[self._band]
        level = self._scale * float(np.sum(np.square(spectrum.real) + np.square(spectrum.imag)))
        self.level = level
        if math.isinf(echo_level):  # nothing said now can be trusted
            self._above = 0
            self.speaking = False
            self.voiced = level > self._quiet_room_threshold() * self._voiced_relief
            return False
        if level > 0.0 and (self.noise == 0.0 or level < self.noise):
            self.noise = level  # digital silence (a stream starting) says nothing about the room
        if self._warmup:  # the first frames only set the noise floor
            self._warmup -= 1
            self.voiced = level > self._quiet_room_threshold() * self._voiced_relief
            return False
        if level > self.noise and not self.speaking and echo_level < self.noise:
            self.noise *= self._noise_rise  # learn the room only while neither the device nor a visitor talks
        echo = self.leak * echo_level if echo_level > self._min_echo else 0.0
        self.threshold = max(self.noise * self._noise_margin, echo * self._echo_margin, self._min_level)
        self.voiced = level > self.threshold * self._voiced_relief
        # The leak is learnt from the device's voice alone: while it plays, never from a visitor's speech, and
        # from a run of frames above the threshold only once the run has ended without an onset (echo after all).
        learn = far_active and echo_level > self._min_echo and not self.speaking
        ratio = (level + 1.0) / echo_level if learn else 0.0
        if level > self.threshold:
            self._above += 1
            self._below = 0
            if learn:
                self._held_ratios.append(ratio)
        else:
            self._above = 0
            self._below += 1
            for held in self._held_ratios:
                self._leak.update(held)
            self._held_ratios.clear()
            if learn:
                self._leak.update(ratio)
        if not self.speaking and self._above >= self._onset_frames:
            self.speaking = True
            self._held_ratios.clear()  # a visitor: nothing to learn from
            return True
        if self.speaking and self._below >= self._hangover_frames:
            self.speaking = False
        return False

    def _quiet_room_threshold(self) -> float:
        """The onset threshold without the echo's part (none is known, or nothing is echo-free)."""
        return max(self.noise * self._noise_margin, self._min_level)


def _power(dbfs: float) -> float:
    """Mean square (int16 units) of a level in dBFS."""
    return (32768 * 10 ** (dbfs / 20)) ** 2
