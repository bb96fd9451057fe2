"""The linear stage of the echo canceller: a partitioned-block frequency-domain adaptive filter.

The echo path (speaker -> room -> microphone) is modelled as an FIR filter of `partitions * block` taps,
cut into partitions of one block each and applied in the frequency domain by overlap-save (the multidelay
filter of Soo & Pang): per block of far end one FFT, one multiply-add per partition, one inverse FFT.

Two filters share the far-end spectra, as in WebRTC's AEC3 (its "refined" and "coarse" filters):

- The main filter adapts as a Kalman filter in the diagonal, per-bin form (Enzner & Vary 2006; Kuech et
  al. 2014 for the partitioned version). Its step in each bin is the power of the echo it expects to get
  wrong divided by the power of the error it sees, so when the visitor talks over the far end (a large
  error that is not echo) it hardly moves: double-talk robustness without a double-talk detector.
- The shadow filter is a normalised LMS with a fixed step. It does not know double talk from an echo path
  change, so it follows both at once: it diverges while the visitor talks, but it also re-learns at once
  when someone moves the device or turns the volume up, which the main filter, sure of itself after
  converging, would take for double talk. Its error decides: when it is clearly smaller than the main
  filter's for a few blocks, the main filter takes its coefficients (and becomes uncertain again); when it
  is clearly larger, it is reset to the main filter.

Both filters live in one array, so that each step is one numpy call for the two; per block: one FFT of
the far end, one inverse FFT and one FFT for both filters' outputs and errors, and every other block the
gradient constraint of one partition. Buffers are preallocated. Pure DSP, no I/O.
"""

from __future__ import annotations

import numpy as np

from edgevoice.audio import fastfft as fft

_INITIAL_UNCERTAINTY = 1.0  # |W|^2 of an echo path with a gain of about 1 (W = FFT of one partition's taps)
_SHADOW_STEP = 0.5  # normalised step of the shadow filter (1 would cancel the block's error in one go)
_COMPARE_SMOOTHING = 0.7  # per block, for the error powers the two filters are compared on
_COPY_MARGIN = 0.5  # the shadow's error power must be below this fraction of the main filter's ...
_COPY_BLOCKS = 5  # ... for this many blocks in a row for the main filter to take its coefficients
_RESET_MARGIN = 4.0  # the shadow is reset when its error power is above this multiple of the main's
_CONSTRAIN_EVERY = 2  # blocks between gradient constraints (of one partition each)
_PROCESS_NOISE_EVERY = 4  # blocks between updates of the Kalman filter's process noise (it changes slowly)


class AdaptiveEchoFilter:
    """An adaptive FIR estimate of the echo path, `partitions` blocks of `block` samples long.

    `filter(far, near)` takes one block of the (delay-aligned) far end and of the microphone, adapts, and
    returns the error: microphone minus estimated echo. After it, `echo` holds the estimated echo of the
    block (of whichever filter did better), `echo_spectrum` the output spectrum it came from, and
    `mismatch_power` the main filter's own estimate, per bin, of the power of the echo it missed (from its
    uncertainty and this block's far end).
    """

    def __init__(self, block: int, partitions: int, *, forgetting: float = 0.9999, noise_floor: float = 1.0):
        if block <= 0 or partitions <= 0:
            raise ValueError("block and partitions must be positive")
        self.block = block
        self.partitions = partitions
        bins = block + 1
        shape = (partitions, bins)
        self._a2 = np.float32(forgetting * forgetting)
        self._floor = np.float32(noise_floor * block)  # per-bin power floor (int16 units): never divide by 0
        self.far_spectra = np.zeros(shape, np.complex64)  # X, newest block first
        self._x2 = np.zeros(shape, np.float32)  # |X|^2
        # Both filters in one array, so that each step is one numpy call for both: [0] main, [1] shadow.
        self._filters = np.zeros((2, *shape), np.complex64)
        self._w = self._filters[0]
        self._ws = self._filters[1]
        self._p = np.zeros(shape, np.float32)  # the main filter's uncertainty per bin (Kalman state covariance)
        self._products = np.zeros((2, *shape), np.complex64)
        self._conj_x = np.zeros(shape, np.complex64)
        self._tmp_r = np.zeros(shape, np.float32)
        self._w2 = np.zeros((*shape, 2), np.float32)
        self._x_window = np.zeros(2 * block, np.float32)
        self._padded = np.zeros((2, 2 * block), np.float32)  # [0 ... 0, error] of each filter
        self._errors = self._padded[:, block:]
        self._echoes = np.zeros((2, block), np.float32)
        self._near = np.zeros(block, np.float32)  # the last block's microphone
        self._spectra = np.zeros((2, bins), np.complex64)  # the filters' (circular) output spectra
        self._error_power = np.zeros(bins, np.float32)
        self.mismatch_power = np.zeros(bins, np.float32)  # expected power of the echo the filter misses
        self._main_error, self._shadow_error = self._errors
        self._main_echo, self._shadow_echo = self._echoes
        self.echo = self._main_echo
        self.echo_spectrum = self._spectra[0]
        self._main_smoothed = 0.0
        self._shadow_smoothed = 0.0
        self._shadow_wins = 0
        self._blocks = 0
        self.copies = 0  # times the main filter took the shadow's coefficients
        self.resets = 0  # times the shadow was reset to the main filter
        self.reset()

    def reset(self) -> None:
        """Forget the echo path."""
        for a in (self.far_spectra, self._x2, self._filters, self._x_window, self._error_power):
            a[:] = 0
        self._p[:] = _INITIAL_UNCERTAINTY
        self._main_smoothed = self._shadow_smoothed = 0.0
        self._shadow_wins = 0

    def filter(self, far: np.ndarray, near: np.ndarray) -> np.ndarray:
        """One block: returns the error, microphone minus estimated echo (float32, `block` samples)."""
        n = self.block
        xw = self._x_window
        xw[:n] = xw[n:]
        xw[n:] = far
        x, x2 = self.far_spectra, self._x2
        x[1:] = x[:-1]
        x2[1:] = x2[:-1]
        x[0] = fft.rfft(xw)
        np.square(x[0].real, out=x2[0])
        x2[0] += np.square(x[0].imag)

        # Echo estimates and errors of both filters, zero-padded error spectra (overlap-save).
        np.multiply(self._filters, x, out=self._products)
        np.sum(self._products, axis=1, out=self._spectra)
        self._echoes[:] = fft.irfft(self._spectra, 2 * n)[:, n:]
        self._near = near
        np.subtract(near, self._echoes, out=self._errors)
        errors = fft.rfft(self._padded)

        # W += step conj(X) E, both filters in one go; the main filter's step is the Kalman gain.
        steps = self._products
        np.multiply(self._kalman_gain(errors[0]), errors[0], out=steps[0])
        steps[1] = (_SHADOW_STEP / (x2.sum(axis=0) + 2.0 * self._floor)) * errors[1]
        np.conjugate(x, out=self._conj_x)
        steps *= self._conj_x
        self._filters += steps
        if self._blocks % _CONSTRAIN_EVERY == 0:
            self._constrain()
        self._blocks += 1
        chosen = 1 if self._shadow_is_better() else 0
        self.echo = self._echoes[chosen]
        self.echo_spectrum = self._spectra[chosen]
        return self._errors[chosen]

    @property
    def echo_energy(self) -> float:
        """Energy of the last block's echo as estimated (int16 units squared): the larger of the two filters'
        estimates, counting only a filter that explained part of the microphone (its error smaller than the
        microphone). The shadow finds a new echo path within a few blocks, before the main filter takes it; but
        while a visitor talks it diverges, its estimate is noise, and its error larger than the microphone."""
        near = float(np.dot(self._near, self._near))
        energy = 0.0
        for echo, error in zip(self._echoes, self._errors, strict=True):
            if float(np.dot(error, error)) < near:
                energy = max(energy, float(np.dot(echo, echo)))
        return energy

    def _kalman_gain(self, e_spec: np.ndarray) -> np.ndarray:
        """The main filter's gain over conj(X), per partition and bin; updates its uncertainty P."""
        x2, p = self._x2, self._p
        e2 = np.square(e_spec.real)
        e2 += np.square(e_spec.imag)
        # Expected power of the echo the filter misses, in the (circular) filter output's spectrum; the
        # error keeps half of that output's samples, so it holds half of that power.
        np.multiply(p, x2, out=self._tmp_r)
        mismatch = self._tmp_r.sum(axis=0)
        np.multiply(mismatch, 0.5, out=self.mismatch_power)
        # The Kalman gain is P / (mismatch + 2 x near-end power), the near-end power being what the error
        # holds beyond the expected mismatch. The error power is held at its peak and halved each block, so
        # that the step is small from the first block of double talk on. (max(2 err, mismatch + 2 floor) is
        # the same denominator, in fewer operations.)
        self._error_power *= 0.5
        np.maximum(self._error_power, e2, out=self._error_power)
        mismatch += 2.0 * self._floor
        gain = p / np.maximum(2.0 * self._error_power, mismatch)
        # P = A^2 (1 - gain |X|^2 / 2) P + (1 - A^2) |W|^2, the last term (slow) every few blocks.
        np.multiply(gain, x2, out=self._tmp_r)
        self._tmp_r *= -0.5 * self._a2
        self._tmp_r += self._a2
        p *= self._tmp_r
        if self._blocks % _PROCESS_NOISE_EVERY == 0:
            np.square(self._w.view(np.float32), out=self._w2.reshape(self._w.shape[0], -1))
            p += (_PROCESS_NOISE_EVERY * (1.0 - self._a2)) * self._w2.sum(axis=-1)
        return gain

    def _constrain(self) -> None:
        """Keep each partition a causal `block`-tap filter (the gradient constraint of overlap-save).

        The constraint costs two FFTs per partition; one partition every other block, in turn, is enough
        (speex and AEC3 constrain one per block)."""
        k = self._blocks // _CONSTRAIN_EVERY % self.partitions
        taps = fft.irfft(self._filters[:, k], 2 * self.block)
        taps[:, self.block :] = 0
        self._filters[:, k] = fft.rfft(taps)

    def _shadow_is_better(self) -> bool:
        s = _COMPARE_SMOOTHING
        main = float(np.dot(self._main_error, self._main_error))
        shadow = float(np.dot(self._shadow_error, self._shadow_error))
        self._main_smoothed = s * self._main_smoothed + (1 - s) * main
        self._shadow_smoothed = s * self._shadow_smoothed + (1 - s) * shadow
        floor = float(self._floor) * self.block
        if self._shadow_smoothed + floor < _COPY_MARGIN * (self._main_smoothed + floor):
            self._shadow_wins += 1
            if self._shadow_wins >= _COPY_BLOCKS:
                self._take_shadow()
            return True
        self._shadow_wins = 0
        if self._shadow_smoothed > _RESET_MARGIN * (self._main_smoothed + floor):
            self._ws[:] = self._w
            self._shadow_smoothed = self._main_smoothed
            self.resets += 1
        return False

    def _take_shadow(self) -> None:
        """The echo path changed: the main filter takes the shadow's coefficients, and every tap becomes as
        uncertain as it is large, so that it re-learns at full speed."""
        self._w[:] = self._ws
        np.square(self._w.view(np.float32), out=self._w2.reshape(self._w.shape[0], -1))
        np.maximum(self._p, self._w2.sum(axis=-1).mean(axis=1, keepdims=True), out=self._p)
        self._main_smoothed = self._shadow_smoothed
        self._shadow_wins = 0
        self.copies += 1

    def idle(self) -> np.ndarray:
        """A block of silence after more than a tail of silence: nothing to filter, nothing to learn."""
        self.echo = self._main_echo
        self.echo[:] = 0
        self.echo_spectrum = self._spectra[0]
        self.echo_spectrum[:] = 0
        self.mismatch_power[:] = 0
        return self.echo

    def realign(self, shift: int, history: np.ndarray) -> None:
        """The far end is now read `shift` samples further back: move the taps the other way and rebuild
        the far-end spectra from `history`, the last `(partitions + 1) * block` samples at the new alignment."""
        n, parts = self.block, self.partitions
        taps = fft.irfft(self._w, 2 * n)[:, :n].reshape(-1)
        moved = np.zeros_like(taps)
        if abs(shift) >= taps.size:
            pass  # the path moved further than the filter is long: nothing it learnt still applies
        elif shift >= 0:
            moved[: taps.size - shift] = taps[shift:]
        else:
            moved[-shift:] = taps[: taps.size + shift]
        padded = np.zeros((parts, 2 * n), np.float32)
        padded[:, :n] = moved.reshape(parts, n)
        self._w[:] = fft.rfft(padded)
        self._ws[:] = self._w
        whole = round(shift / n)
        if whole > 0:
            self._p[:-whole] = self._p[whole:]
            self._p[-whole:] = _INITIAL_UNCERTAINTY
        elif whole < 0:
            self._p[-whole:] = self._p[:whole]
            self._p[:-whole] = _INITIAL_UNCERTAINTY
        windows = np.lib.stride_tricks.sliding_window_view(history, 2 * n)[::n][::-1]
        self.far_spectra[:] = fft.rfft(np.ascontiguousarray(windows))
        self._x2[:] = np.square(self.far_spectra.real) + np.square(self.far_spectra.imag)
        self._x_window[:] = history[-2 * n :]
        self._main_smoothed = self._shadow_smoothed = 0.0
        self._shadow_wins = 0
