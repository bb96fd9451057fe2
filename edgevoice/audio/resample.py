"""Streaming polyphase resampling that matches one-shot `scipy.signal.resample_poly`, sample for sample.

Resampling each 20 ms chunk on its own with `resample_poly` leaves a click at every chunk boundary
(-12 to -15 dBFS artefacts), because every call pretends the signal starts and ends there. This
resampler keeps the input history its filter needs between calls, so a stream cut into chunks of any
size produces the same samples as `resample_poly` on the whole signal (same Kaiser-windowed FIR,
same alignment, equal to rounding), delayed by about half the filter length (< 1 ms for the rates a Pi
sees).

It needs numpy alone: importing scipy.signal costs about 50 MB and a second on a Pi, for two functions.
The filter is the one `resample_poly` designs; the filtering is done block by block as matrix products
(see `_column_groups`), which BLAS does in a few calls per chunk whatever the ratio of the rates.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["StreamResampler", "lowpass_taps", "to_int16"]

_KAISER_BETA = 5.0  # resample_poly's default window, ("kaiser", 5.0)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Round float samples (int16 scale) to int16, clipping instead of wrapping around."""
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


def lowpass_taps(up: int, down: int) -> np.ndarray:
    """The FIR `resample_poly(x, up, down)` designs, scaled by `up`: 2 * half_len + 1 taps, centred.

    That is `firwin(2 * half_len + 1, 1 / max_rate, window=("kaiser", 5.0)) * up` with half_len = 10 * max_rate:
    a windowed sinc cut off at the lower Nyquist frequency, normalised to unit gain at DC.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    n = 2 * half_len + 1
    taps = np.sinc((np.arange(n) - half_len) / max_rate) * np.kaiser(n, _KAISER_BETA)
    return taps * (up / taps.sum())


def _column_groups(
    taps: np.ndarray, up: int, down: int, block_in: int, block_out: int
) -> list[tuple[int, np.ndarray, slice]] | None:
    """The filter as two matrices that map a window of input to half a block of output each.

    resample_poly's output k is sum_i x[i] * taps[k * down + half_len - i * up]. Cut the output into blocks of
    `block_out` samples and the input into blocks of `block_in` = block_out * down / up samples: output
    P * block_out + s depends on the inputs P * block_in + j the same way for every P. When each half of a
    block's outputs reads a window of at most `block_in` consecutive inputs, the input history viewed as rows of
    `block_in` samples, starting at the window, makes a whole chunk of blocks one matrix product per half.
    Returns [(start of the window counted from input P * block_in - lead, weights of shape (window, outputs),
    output columns)], or None if a window is longer than `block_in` (blocks too short for the filter).
    """
    half_len = (taps.size - 1) // 2
    lead = half_len // up  # how far before P * block_in the first output of block P reaches
    groups = []
    for first, stop in ((0, block_out // 2), (block_out // 2, block_out)):
        j = np.arange(-((half_len - first * down) // up), ((stop - 1) * down + half_len) // up + 1)[:, None]
        if j.size > block_in:
            return None
        index = np.arange(first, stop)[None, :] * down + half_len - j * up
        inside = (index >= 0) & (index < taps.size)
        weights = np.where(inside, taps[np.clip(index, 0, taps.size - 1)], 0.0)
        groups.append((int(j[0, 0]) + lead, weights, slice(first, stop)))
    return groups


class StreamResampler:
    """Resample a mono stream from `in_rate` to `out_rate`, one chunk at a time.

    `process(chunk)` returns the output samples that are complete so far (float64, same scale as
    the input); `flush()` returns the tail as if the stream ended with silence and resets the state.
    Concatenating every `process()` result and the final `flush()` gives
    `resample_poly(whole_signal, up, down)` (to rounding).
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = math.gcd(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._up = out_rate // g
        self._down = in_rate // g
        self.passthrough = self._up == self._down == 1
        self._skip = 0
        if self.passthrough:
            return
        taps = lowpass_taps(self._up, self._down)
        half_len = (taps.size - 1) // 2
        # Output k is returned once input floor((k + skip) * down / up) has arrived, as when this class ran
        # scipy's upfirdn with resample_poly's padding: every chunk still yields as many samples as before.
        self._skip = (half_len + self._down - half_len % self._down) // self._down
        self._lead = half_len // self._up
        # Blocks of a power-of-two number of periods, the shortest for which each half block's input window
        # fits in a block: two matrix products per chunk whatever its length. The price is multiplications by
        # the zeros of those matrices, 1.5 to 3 times the taps per output; BLAS still does it in half the time
        # scipy's upfirdn took (bench/pipeline.py).
        phase_len = -(-taps.size // self._up)  # taps per output
        periods = 1
        while periods * self._down < 2 * phase_len:
            periods *= 2
        while (groups := _column_groups(taps, self._up, self._down, periods * self._down, periods * self._up)) is None:
            periods *= 2
        self._groups = groups
        self._block_in = periods * self._down
        self._block_out = periods * self._up
        # The input history, zero after the last input: position 0 is input row0 * block_in - lead.
        self._buf = np.zeros(self._block_in * (3 + in_rate // 10 // self._block_in))  # grows if a chunk needs more
        self._filled = 0
        self.reset()

    @property
    def delay_seconds(self) -> float:
        """How far the output lags the input (half the filter), in seconds."""
        return 0.0 if self.passthrough else self._skip / self.out_rate

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new signal."""
        if self.passthrough:
            return
        self._buf[: self._filled] = 0.0
        self._row0 = 0  # the block the history starts with
        self._filled = self._lead  # buffer position of the next input
        self._n_in = 0
        self._next = 0  # index of the next output to return

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed one chunk; return the output samples it completes."""
        if self.passthrough:
            return np.array(chunk, dtype=np.float64)
        n = np.size(chunk)
        if n == 0:
            return np.zeros(0)
        end = -(-(self._n_in + n) * self._up // self._down) - self._skip
        self._reserve(max(-(-(self._n_in + n + self._lead) // self._block_in), self._blocks_read(end)))
        self._buf[self._filled : self._filled + n] = chunk  # converted to float64 on the way
        self._filled += n
        self._n_in += n
        return self._emit(end)

    def flush(self) -> np.ndarray:
        """End the stream: return the remaining samples (as resample_poly pads with zeros) and reset."""
        if self.passthrough or self._n_in == 0:
            self.reset()
            return np.zeros(0)
        end = -(-self._n_in * self._up // self._down)  # resample_poly's output length
        self._reserve(self._blocks_read(end))
        tail = self._emit(end)
        self.reset()
        return tail

    def _blocks_read(self, end: int) -> int:
        """Blocks of history (counted from the stream's start) that computing the outputs before `end` reads:
        those of its output blocks, and the next one, into which the second half's window reaches."""
        return -(-end // self._block_out) + 1

    def _emit(self, end: int) -> np.ndarray:
        if end <= self._next:
            return np.zeros(0)
        first = self._next // self._block_out
        blocks = -(-end // self._block_out) - first
        base = (first - self._row0) * self._block_in
        out = np.empty((blocks, self._block_out))
        for offset, weights, columns in self._groups:
            start = base + offset
            rows = self._buf[start : start + blocks * self._block_in].reshape(blocks, self._block_in)
            np.matmul(rows[:, : len(weights)], weights, out=out[:, columns])
        skip = self._next - first * self._block_out
        count = end - self._next
        self._next = end
        return out.reshape(-1)[skip : skip + count]

    def _reserve(self, blocks: int) -> None:
        """Make room for the history up to block `blocks`, dropping the blocks no output needs any more."""
        if (blocks - self._row0) * self._block_in <= self._buf.size:
            return
        # Blocks before the next output's are read no more (and a block still being filled is never dropped).
        drop = min(self._next // self._block_out - self._row0, self._filled // self._block_in)
        kept = self._buf[drop * self._block_in : self._filled]
        self._row0 += drop
        size = (blocks - self._row0) * self._block_in
        if size > self._buf.size:
            grown = np.zeros(max(size, 2 * self._buf.size))
            grown[: kept.size] = kept
            self._buf = grown
        else:
            self._buf[: kept.size] = kept  # overlapping: numpy copies through a temporary
            self._buf[kept.size : self._filled] = 0.0
        self._filled = kept.size
