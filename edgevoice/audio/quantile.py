"""A running upper quantile of a ratio, cheap and robust: how the echo stages learn how much echo leaks."""

from __future__ import annotations

import math

import numpy as np


class QuantileTracker:
    """A running upper quantile of a positive ratio (per band, or a scalar), tracked in the log domain.

    It steps up by a fixed amount when the ratio is above it and down when below, `quantile / (1 - quantile)`
    times smaller, so it settles where the ratio is above it a fraction `1 - quantile` of the time. Fixed
    steps bound the rise rate: a visitor talking (which raises an echo ratio) takes seconds to inflate it.
    A long run below means the estimate is far too high (it starts at `initial`), so the downward steps
    grow along the run and it converges in a fraction of a second.
    """

    def __init__(self, shape: int | tuple[int, ...], quantile: float, rise_db_per_s: float, step_s: float,
                 initial: float = 1.0, floor: float = 1e-7, max_down_steps: float = 64.0) -> None:  # fmt: skip
        self._up = rise_db_per_s * step_s * math.log(10) / 10  # natural log units per step
        self._down = self._up * (1 - quantile) / quantile
        self._initial = math.log(initial)
        self._floor = math.log(floor)
        self._log = np.full(shape, self._initial)
        self._run = np.zeros(shape)
        self._max_down = max_down_steps

    @property
    def value(self) -> np.ndarray:
        return np.exp(self._log)

    def reset(self) -> None:
        self._log[...] = self._initial
        self._run[...] = 0

    def raise_to(self, ratio: float) -> None:
        """At least `ratio` at once (the canceller knows the echo path just changed)."""
        np.maximum(self._log, math.log(ratio), out=self._log)

    def update(self, ratio: np.ndarray | float, valid: np.ndarray | bool = True) -> None:
        """One observation of the ratio (where `valid`)."""
        below = np.log(ratio) < self._log
        self._run = np.where(below & valid, self._run + 1, 0)
        step = np.where(below, -self._down * np.minimum(2.0 ** (self._run / 4), self._max_down), self._up)
        self._log += np.where(valid, step, 0.0)
        np.clip(self._log, self._floor, 0.0, out=self._log)
