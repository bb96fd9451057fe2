"""A running upper quantile of a ratio, cheap and robust: how the echo stages learn how much echo leaks."""

from __future__ import annotations

import math

import numpy as np

_ACCELERATION_RUN = 4.0  # along a run below, the downward step doubles every this many steps


class QuantileTracker:
    """A running upper quantile of a positive ratio (per band, or a scalar), tracked in the log domain.

    It steps up by a fixed amount when the ratio is above it and down when below, `quantile / (1 - quantile)`
    times smaller, so it settles where the ratio is above it a fraction `1 - quantile` of the time. Fixed
    steps bound the rise rate: a visitor talking (which raises an echo ratio) takes seconds to inflate it.
    A long run below means the estimate is far too high (it starts at `initial`), so the downward steps
    grow along the run, up to `max_down_steps` times, and it converges in a fraction of a second.
    """

    def __init__(self, shape: int | tuple[int, ...], quantile: float, rise_db_per_s: float, step_s: float,
                 initial: float = 1.0, floor: float = 1e-7, max_down_steps: float = 64.0) -> None:  # fmt: skip
        self._up = rise_db_per_s * step_s * math.log(10) / 10  # natural log units per step
        down = self._up * (1 - quantile) / quantile
        longest = max(1, math.ceil(_ACCELERATION_RUN * math.log2(max(max_down_steps, 1.0))) + 1)
        # The downward step after a run of k steps below (index k - 1), as a negative log-domain step.
        self._down = -down * np.minimum(2.0 ** (np.arange(1, longest + 1) / _ACCELERATION_RUN), max_down_steps)
        self._initial = math.log(initial)
        self._floor = math.log(floor)
        self._scalar = shape == ()
        self._log = np.full(shape, self._initial)
        self._run = np.zeros(shape, np.int64)
        self.value = np.exp(self._log)
        self.reset()

    def reset(self) -> None:
        self._log[...] = self._initial
        self._run[...] = 0
        self.value = np.exp(self._log)
        self._scalar_log = self._initial
        self._scalar_run = 0

    def raise_to(self, ratio: np.ndarray | float, valid: np.ndarray | None = None) -> None:
        """At least `ratio` at once (when what is observed is known to be the thing measured)."""
        if self._scalar:
            self._scalar_log = min(max(self._scalar_log, math.log(ratio)), 0.0)
            self.value = math.exp(self._scalar_log)
            return
        target = np.minimum(np.log(ratio), 0.0)
        if valid is not None:
            target = np.where(valid, target, self._log)
        np.maximum(self._log, target, out=self._log)
        self.value = np.exp(self._log)

    def update(self, ratio: np.ndarray | float, valid: np.ndarray | None = None) -> None:
        """One observation of the ratio (only where `valid`, if given)."""
        if self._scalar:  # plain floats: a tenth of the cost of numpy on one number
            if ratio < self.value:
                self._scalar_run = min(self._scalar_run + 1, self._down.size)
                step = float(self._down[self._scalar_run - 1])
            else:
                self._scalar_run = 0
                step = self._up
            self._scalar_log = min(max(self._scalar_log + step, self._floor), 0.0)
            self.value = math.exp(self._scalar_log)
            return
        below = ratio < self.value
        if valid is not None:
            below &= valid
        run = self._run
        run += 1
        run[~below] = 0
        np.minimum(run, self._down.size, out=run)
        steps = np.where(below, self._down[run - 1], self._up)
        if valid is not None:
            steps[~valid] = 0.0
        self._log += steps
        np.clip(self._log, self._floor, 0.0, out=self._log)
        self.value = np.exp(self._log)
