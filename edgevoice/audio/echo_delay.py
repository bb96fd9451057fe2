"""How far the echo in the microphone lags the far-end reference: the bulk delay the adaptive filter skips.

The reference is what the playback callback handed to PortAudio; the echo of it reaches the capture
callback later by the output latency, the acoustic path and the input latency, tens to hundreds of
milliseconds that move when PortAudio re-buffers. The adaptive filter only covers `tail_ms`, so the
canceller looks `delay` samples back into its far-end history, and this estimator says how far.

Method: both signals are decimated to about 4 kHz (block sums: cheap, and the aliasing is the same on
both sides, so it does not move the correlation peak), and every `interval_ms` the last
`window_ms` of microphone is cross-correlated with the far end over all lags up to `max_delay_ms`
(GCC with PHAT-beta weighting, one FFT pair). The normalised cross-spectra are averaged over estimates so
that a visitor talking (uncorrelated with the far end) only dilutes the peak. A lag becomes the estimate
when the peak stands well above the rest of the correlation on two estimates in a row.
"""

from __future__ import annotations

import math

import numpy as np

from edgevoice.audio import fastfft as fft

_DECIMATED_RATE = 4000
_PHAT_BETA = 0.8
_SPECTRUM_SMOOTHING = 0.6  # weight of the previous estimates in the averaged cross-spectrum
_MIN_PEAK_RATIO = 5.0  # peak over the RMS of the correlation at other lags
_AGREE_SAMPLES = 2  # decimated samples two estimates may differ by and still agree


def _decimation(sample_rate: int, frame_samples: int) -> int:
    """The largest factor that divides the frame and brings the rate no lower than about 4 kHz."""
    wanted = max(1, sample_rate // _DECIMATED_RATE)
    for q in range(wanted, 0, -1):
        if frame_samples % q == 0:
            return q
    return 1


class DelayEstimator:
    """Feed it every frame with `update(near, far)`; `delay` is the latest confident estimate, in samples."""

    def __init__(
        self,
        sample_rate: int,
        frame_samples: int,
        *,
        max_delay_ms: float = 500.0,
        window_ms: float = 1000.0,
        interval_ms: float = 250.0,
    ) -> None:
        self.factor = _decimation(sample_rate, frame_samples)
        rate = sample_rate / self.factor
        self._frame = frame_samples // self.factor
        self._window = int(rate * window_ms / 1000) // self._frame * self._frame
        self._max_lag = math.ceil(rate * max_delay_ms / 1000)
        # Decimated history of [near, far], appended to with slack so that a frame costs no
        # shifting; the far end needs `max_lag` more of it than the microphone.
        self._span = self._window + self._max_lag
        self._history = np.zeros((2, 2 * self._span + self._frame), np.float32)
        self._end = self._span
        self._nfft = fft.next_fast_len(self._span)
        self._padded = np.zeros((2, self._nfft), np.float32)  # [far, near], zero-padded for the FFT
        self._cross = np.zeros(self._nfft // 2 + 1, np.complex64)
        # irfft(B conj(A))[k] = sum_t near[t] far[t - k]: lag L sits at k = L - max_lag (mod nfft)
        self._lag_index = (np.arange(self._max_lag + 1) - self._max_lag) % self._nfft
        self._interval = max(1, round(interval_ms / 1000 * sample_rate / frame_samples))
        self._frames = 0
        self._filled = 0
        self._candidate: int | None = None
        self.delay: int | None = None  # samples at the full rate; None until the first confident estimate
        self.peak_ratio = 0.0  # confidence of the last estimate
        self.estimates = 0

    def reset(self) -> None:
        self._history[:] = 0
        self._cross[:] = 0
        self._frames = self._filled = 0
        self._candidate = None
        self.delay = None

    def update(self, near: np.ndarray, far: np.ndarray) -> bool:
        """Add one frame of each; returns True when `delay` changed."""
        f = self._frame
        if self._end + f > self._history.shape[1]:
            self._history[:, : self._span] = self._history[:, self._end - self._span : self._end]
            self._end = self._span
        slot = self._history[:, self._end : self._end + f]
        np.add.reduce(near.reshape(f, self.factor), axis=1, out=slot[0])  # block sums: the decimation
        np.add.reduce(far.reshape(f, self.factor), axis=1, out=slot[1])
        self._end += f
        self._filled = min(self._filled + f, self._span)
        self._frames += 1
        # Every `interval` until the first estimate, then half as often: a delay moves seldom.
        interval = self._interval if self.delay is None else 2 * self._interval
        if self._frames % interval or self._filled < self._window:
            return False
        return self._estimate()

    def _estimate(self) -> bool:
        near = self._history[0, self._end - self._window : self._end]
        far = self._history[1, self._end - self._span : self._end]
        recent_far = far[self._max_lag :]
        far_power = float(np.dot(recent_far, recent_far)) / recent_far.size
        near_power = float(np.dot(near, near)) / near.size
        # Nothing playing, or a dead microphone: nothing to learn (the history holds sums of `factor` samples).
        if far_power < self.factor**2 or near_power < 0.01 * self.factor**2:
            return False
        # c[lag] = sum_t near[t] far[t - lag]; far[j] is time j - max_lag relative to near[0].
        self._padded[0, : far.size] = far
        self._padded[1, : near.size] = near
        a, b = fft.rfft(self._padded)
        cross = b * np.conj(a)
        cross /= np.abs(cross) ** _PHAT_BETA + 1e-3 * float(np.abs(cross).max() ** _PHAT_BETA)
        self._cross *= _SPECTRUM_SMOOTHING
        self._cross += (1 - _SPECTRUM_SMOOTHING) * cross
        corr = fft.irfft(self._cross, self._nfft)
        lags = corr[self._lag_index]  # lags[L] = sum_t near[t] far[t + max_lag - L], L = 0..max_lag
        best = int(np.argmax(lags))
        peak = float(lags[best])
        rest = np.delete(lags, np.s_[max(0, best - 4) : best + 5])
        rms = float(np.sqrt(np.mean(rest * rest))) if rest.size else 0.0
        self.peak_ratio = peak / rms if rms > 0 else 0.0
        self.estimates += 1
        if self.peak_ratio < _MIN_PEAK_RATIO:
            self._candidate = None
            return False
        agrees = self._candidate is not None and abs(best - self._candidate) <= _AGREE_SAMPLES
        self._candidate = best
        if not agrees:
            return False
        delay = best * self.factor
        if self.delay is not None and abs(delay - self.delay) <= _AGREE_SAMPLES * self.factor:
            return False
        self.delay = delay
        return True
