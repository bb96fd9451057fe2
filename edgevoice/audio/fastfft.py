"""`rfft` and `irfft` along the last axis, without scipy.fft's import cost or its per-call dispatch.

scipy.fft routes every call through its backend dispatch, about 3 us here: as much as the transform itself
at the echo canceller's sizes (a few hundred to two thousand points, ten calls per 20 ms frame), and
numpy.fft is about twice as slow. These call the pocketfft binding scipy.fft itself uses underneath, loaded
from its file without running scipy.fft's package (which imports much of scipy: ~27 MB against ~8 MB).

The binding is loaded at the first transform, not at import: the canceller only runs in conversations.
It is not a public interface, so it is tried once on a probe with a known answer; if it is missing or
answers otherwise (another scipy), scipy.fft is used, and numpy.fft if scipy is not there at all.
tests/test_fastfft.py checks that the binding answers as scipy.fft does.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["backend", "irfft", "next_fast_len", "rfft"]

log = logging.getLogger(__name__)

_BINDING = "scipy.fft._pocketfft.pypocketfft"

Rfft = Callable[[np.ndarray], np.ndarray]
Irfft = Callable[[np.ndarray, int], np.ndarray]


def _first_rfft(x: np.ndarray) -> np.ndarray:
    if not _backend:
        _load()
    return rfft(x)


def _first_irfft(spectrum: np.ndarray, n: int) -> np.ndarray:
    if not _backend:
        _load()
    return irfft(spectrum, n)


# rfft(x): real FFT along the last axis (complex64 for float32 input with the binding).
# irfft(spectrum, n): its inverse along the last axis, n real outputs, normalised by 1/n.
# Both load a backend at the first call and are then rebound to it: no dispatch left per call. (A name
# imported with `from fastfft import rfft` before that keeps the loader, which then just passes calls on.)
rfft: Rfft = _first_rfft
irfft: Irfft = _first_irfft
_backend = ""


def backend() -> str:
    """Which implementation the transforms use: "pocketfft binding", "scipy.fft" or "numpy.fft" (loads it)."""
    if not _backend:
        _load()
    return _backend


def next_fast_len(target: int) -> int:
    """The smallest 2^a 3^b 5^c >= target: what scipy.fft.next_fast_len(target, real=True) answers."""
    if target < 1:
        raise ValueError(f"target must be positive, got {target}")
    best = 1 << (target - 1).bit_length()  # a power of two always qualifies
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            n = p35
            while n < target:
                n *= 2
            best = min(best, n)
            p35 *= 3
        p5 *= 5
    return best


def _load() -> None:
    """Bind this module's `rfft` and `irfft` to the best backend there is (once; later calls go straight there)."""
    global rfft, irfft, _backend
    chosen = _pocketfft()
    name = "pocketfft binding"
    if chosen is None:
        chosen, name = _public()
        log.info("FFT: scipy's pocketfft binding is not usable here, using %s (slower per call)", name)
    (rfft, irfft), _backend = chosen, name


def _pocketfft() -> tuple[Rfft, Irfft] | None:
    try:
        pp = _binding()
        if pp is None:
            return None

        def rfft(x: np.ndarray) -> np.ndarray:
            return pp.r2c(x, (x.ndim - 1,), True, 0, None, 1)

        def irfft(spectrum: np.ndarray, n: int) -> np.ndarray:
            return pp.c2r(spectrum, (spectrum.ndim - 1,), n, False, 2, None, 1)

        return (rfft, irfft) if _answers_right(rfft, irfft) else None
    except Exception:  # any surprise from a private module (a changed signature): use a public one
        return None


def _binding() -> ModuleType | None:
    """scipy's pocketfft extension module, loaded from its file without importing the scipy.fft package."""
    if _BINDING in sys.modules:  # scipy.fft is imported already
        return sys.modules[_BINDING]
    spec = importlib.util.find_spec("scipy")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)), "fft", "_pocketfft")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"pypocketfft{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader(_BINDING, str(path))
            module_spec = importlib.util.spec_from_file_location(_BINDING, path, loader=loader)
            if module_spec is None:
                return None
            module = importlib.util.module_from_spec(module_spec)
            loader.exec_module(module)
            return module
    return None


def _answers_right(rfft: Rfft, irfft: Irfft) -> bool:
    """A transform with a known answer: the forward sign, the scaling, float32 kept, the round trip."""
    t = np.arange(16)
    probe = (np.cos(2 * np.pi * t / 16) + np.sin(2 * np.pi * 3 * t / 16)).astype(np.float32)
    expected = np.zeros(9, np.complex64)
    expected[1], expected[3] = 8, -8j
    spectrum = rfft(np.stack((probe, probe)))
    back = irfft(spectrum, 16)
    return bool(
        spectrum.shape == (2, 9)
        and spectrum.dtype == np.complex64
        and np.allclose(spectrum, expected, atol=1e-5)
        and back.dtype == np.float32
        and np.allclose(back, probe, atol=1e-6)
    )


def _public() -> tuple[tuple[Rfft, Irfft], str]:
    try:
        from scipy import fft as scipy_fft

        return (lambda x: scipy_fft.rfft(x, axis=-1), lambda s, n: scipy_fft.irfft(s, n, axis=-1)), "scipy.fft"
    except ImportError:
        return (lambda x: np.fft.rfft(x, axis=-1), lambda s, n: np.fft.irfft(s, n, axis=-1)), "numpy.fft"
