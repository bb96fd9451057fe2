"""The residual echo suppressor: the non-linear stage after the adaptive filter.

The adaptive filter removes the echo it can model, but not the reverberation beyond its tail, the
speaker's distortion, or what it has not learnt yet. This stage estimates, per frequency bin, how much echo
is left and attenuates the bins where that residual dominates, keeping the bins where the visitor's voice
does, so that double talk goes through.

- Residual echo = the larger of leak x the filter's echo estimate, whose power is held over a decaying
  envelope (the late reverberation the filter cannot reach follows the echo's energy with a delay), and
  the filter's own estimate of what it missed (high in bins it has not learnt yet); x a safety factor.
- The leak, per band, is a running upper quantile of error power / echo-estimate power while the far end
  plays: it steps up by a fixed amount when the ratio is above it and down when below. Fixed steps make the
  rise rate bounded, so a visitor talking (which raises the ratio) takes seconds to inflate it; a long run
  below (the start, or after the filter improved) makes the downward steps grow, so it converges quickly.
  When the filter reports an echo path change, the leak jumps to what it measures next.
- Gain per bin: a Wiener gain on the decision-directed near-end-to-residual ratio, with a floor.

Analysis and synthesis are a weighted overlap-add with square-root Hann windows of two blocks, so the
output lags the input by one block. When nothing has played for a while and every gain was 1, the block
passes through without any transform (what the overlap-add would give anyway).
"""

from __future__ import annotations

import numpy as np

from edgevoice.audio import fastfft as fft
from edgevoice.audio.quantile import QuantileTracker

_BAND_EDGES_HZ = (0, 200, 400, 600, 800, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 3500, 4000, 5000, 6000,
                  7000, 8000, 10000, 12000, 16000, 20000)  # fmt: skip
_DECISION_DIRECTED = 0.9  # weight of the last block's output in the near-end-to-residual ratio
_TRACK_EVERY = 2  # blocks between updates of the leak (it moves a few dB per second)


class ResidualEchoSuppressor:
    """Per block: `process(error, echo_spectrum, mismatch, far_active)` returns the cleaned block, one late."""

    def __init__(
        self,
        block: int,
        sample_rate: int,
        *,
        min_gain_db: float = -45.0,
        overestimate_db: float = 9.0,
        quantile: float = 0.9,
        leak_rise_db_per_s: float = 5.0,
        reverb_decay_db_per_s: float = 60.0,
    ) -> None:
        n = self.block = block
        bins = n + 1
        self.window = np.sqrt(np.hanning(2 * n + 1)[: 2 * n]).astype(np.float32)  # periodic: sums to 1 at 50 %
        freqs = np.arange(bins) * sample_rate / (2 * n)
        edges = [e for e in _BAND_EDGES_HZ if e < sample_rate / 2]
        self._bands = len(edges)
        self._band_of_bin = np.searchsorted(edges, freqs, side="right") - 1
        self._bins_per_band = np.bincount(self._band_of_bin, minlength=self._bands).astype(np.float32)
        block_s = n / sample_rate
        self._leak = QuantileTracker(self._bands, quantile, leak_rise_db_per_s, _TRACK_EVERY * block_s)
        self._reverb = np.float32(10 ** (-reverb_decay_db_per_s * block_s / 10))
        self._min_gain = np.float32(10 ** (min_gain_db / 20))
        self._overestimate = np.float32(10 ** (overestimate_db / 10))
        self._last_error = np.zeros(n, np.float32)
        self._windowed = np.zeros(2 * n, np.float32)
        self._window_tail2 = np.square(self.window[n:])
        self._transparent = False  # every gain was 1 in the last block
        self._path_changed = False
        self._blocks = 0
        self._tail = np.zeros(n, np.float32)  # second half of the last synthesis frame
        self._echo_env = np.zeros(bins, np.float32)
        self._last_output = np.zeros(bins, np.float32)  # |G E|^2 of the last block
        self.gain = np.ones(bins, np.float32)
        self.residual = np.zeros(bins, np.float32)  # estimated residual echo power per bin, this block
        self.reset()

    def reset(self) -> None:
        for a in (self._last_error, self._tail, self._echo_env, self._last_output):
            a[:] = 0
        self._leak.reset()
        self.gain[:] = 1
        self._transparent = False

    def process(
        self, error: np.ndarray, echo_spectrum: np.ndarray, mismatch: np.ndarray, far_active: bool
    ) -> np.ndarray:
        """`error` = microphone minus the filter's echo estimate (one block), `echo_spectrum` the filter's
        output spectrum it came from, `mismatch` the power per bin of the echo the filter expects to have
        missed; returns the output block (float32)."""
        n = self.block
        if self._transparent and not far_active and not mismatch.any() and self._echo_env.max() < 1.0:
            # No echo anywhere and all gains 1 last time: the overlap-add gives back the last block as it was.
            out = self._last_error.copy()
            self._last_error[:] = error
            np.multiply(error, self._window_tail2, out=self._tail)
            self._echo_env *= self._reverb
            return out
        windowed = self._windowed
        np.multiply(self._last_error, self.window[:n], out=windowed[:n])
        np.multiply(error, self.window[n:], out=windowed[n:])
        self._last_error[:] = error
        e_spec = fft.rfft(windowed)
        e2 = np.square(e_spec.real)
        e2 += np.square(e_spec.imag)
        env = self._echo_env
        env *= self._reverb
        y2 = np.square(echo_spectrum.real)
        y2 += np.square(echo_spectrum.imag)
        y2 *= 0.5  # the circular output spans two blocks; a windowed block holds about half its power
        np.maximum(env, y2, out=env)
        self._blocks += 1
        if far_active and (self._blocks % _TRACK_EVERY == 0 or self._path_changed):
            self._track_leak(e2, env)

        residual = self.residual
        np.multiply(self._leak.value[self._band_of_bin], env, out=residual)
        np.maximum(residual, mismatch, out=residual)
        residual *= self._overestimate
        residual += 1e-3
        posterior = e2 / residual
        prior = _DECISION_DIRECTED * self._last_output / residual
        prior += (1 - _DECISION_DIRECTED) * np.maximum(posterior - 1.0, 0.0)
        gain = self.gain
        np.divide(prior, prior + 1.0, out=gain)
        np.maximum(gain, self._min_gain, out=gain)
        g2 = np.square(gain)
        np.multiply(g2, e2, out=self._last_output)
        self._transparent = bool(gain.min() > 0.999)

        frame = fft.irfft(e_spec * gain, 2 * n) * self.window
        out = frame[:n] + self._tail
        self._tail[:] = frame[n:]
        return out

    def path_changed(self) -> None:
        """The filter found the echo path changed (it took its shadow's coefficients): the leak jumps to
        what is measured next instead of rising a few dB per second."""
        self._path_changed = True

    def _track_leak(self, e2: np.ndarray, env: np.ndarray) -> None:
        band = self._band_of_bin
        e_band = np.bincount(band, e2, self._bands)
        y_band = np.bincount(band, env, self._bands)
        # Only bands where the echo estimate stands out of the noise say anything about the leak.
        audible = y_band > 1e-3 * y_band.max() + 100.0 * self._bins_per_band
        ratio = (e_band + 1.0) / (y_band + 1.0)
        if self._path_changed:  # what is left now is echo the filter has not learnt: take it as it is
            self._leak.raise_to(ratio, audible)
            self._path_changed = False
        else:
            self._leak.update(ratio, audible)
