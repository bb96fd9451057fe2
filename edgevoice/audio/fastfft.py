"""`rfft` and `irfft` along the last axis, without scipy.fft's per-call dispatch.

scipy.fft routes every call through its backend dispatch, about 3 us here: as much as the transform itself
at the echo canceller's sizes (a few hundred to two thousand points, ten calls per 20 ms frame). These call
the pocketfft binding scipy.fft itself uses underneath. It is not a public interface, so it is checked once
at import against scipy.fft, and if it is missing or answers differently (another scipy), scipy.fft is used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as _scipy_fft


def _scipy_rfft(x: np.ndarray) -> np.ndarray:
    return _scipy_fft.rfft(x, axis=-1)


def _scipy_irfft(spectrum: np.ndarray, n: int) -> np.ndarray:
    return _scipy_fft.irfft(spectrum, n, axis=-1)


def _pocketfft() -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray, int], np.ndarray]] | None:
    try:
        from scipy.fft._pocketfft import pypocketfft as pp  # type: ignore[attr-defined]

        def rfft(x: np.ndarray) -> np.ndarray:
            return pp.r2c(x, (x.ndim - 1,), True, 0, None, 1)

        def irfft(spectrum: np.ndarray, n: int) -> np.ndarray:
            return pp.c2r(spectrum, (spectrum.ndim - 1,), n, False, 2, None, 1)

        probe = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
        spectrum = rfft(probe)
        if not (
            np.allclose(spectrum, _scipy_fft.rfft(probe, axis=-1), atol=1e-4)
            and np.allclose(irfft(spectrum, 64), probe, atol=1e-5)
            and irfft(spectrum, 64).dtype == np.float32
        ):
            return None
        return rfft, irfft
    except Exception:  # any surprise from a private module: use the public one
        return None


_fast = _pocketfft()
rfft: Callable[[np.ndarray], np.ndarray] = _fast[0] if _fast else _scipy_rfft
irfft: Callable[[np.ndarray, int], np.ndarray] = _fast[1] if _fast else _scipy_irfft
FAST = _fast is not None

__all__ = ["FAST", "irfft", "rfft"]
