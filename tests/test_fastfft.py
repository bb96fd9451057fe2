"""The FFTs the echo canceller calls: scipy's pocketfft binding, loaded without scipy.fft, must answer as scipy.fft.

The binding is a private interface of scipy; these tests are where a scipy upgrade that changes it shows up.
scipy.fft is the oracle here only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import fft as scipy_fft

from edgevoice.audio import fastfft

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    """Run code in a fresh interpreter (nothing of scipy imported yet) with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_binding_is_in_use_here() -> None:
    """With the scipy this project pins, the fast path must work: a fallback here means the binding changed."""
    assert fastfft.backend() == "pocketfft binding"


@pytest.mark.parametrize("shape", [(960,), (3, 480), (16, 960), (2, 1024), (1, 1999), (4, 8192)])
def test_answers_as_scipy_fft(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32) * 1000
    spectrum = fastfft.rfft(x)
    expected = scipy_fft.rfft(x, axis=-1)
    assert spectrum.dtype == expected.dtype == np.complex64
    np.testing.assert_allclose(spectrum, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    n = shape[-1]
    back = fastfft.irfft(spectrum, n)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, scipy_fft.irfft(spectrum, n, axis=-1), rtol=0, atol=1e-6 * np.abs(x).max())
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-5 * np.abs(x).max())


@pytest.mark.parametrize("n", [300, 301])
def test_float64_stays_float64_and_odd_lengths_come_back(n: int) -> None:
    x = np.random.default_rng(1).standard_normal((2, n))
    spectrum = fastfft.rfft(x)
    assert spectrum.dtype == np.complex128 and spectrum.shape == (2, n // 2 + 1)
    np.testing.assert_allclose(spectrum, scipy_fft.rfft(x, axis=-1), atol=1e-12)
    np.testing.assert_allclose(fastfft.irfft(spectrum, n), x, atol=1e-12)


def test_loaded_without_scipy_fft_and_scipy_fft_still_loads_after() -> None:
    out = _python(
        "import sys, numpy as np\n"
        "from edgevoice.audio import fastfft\n"
        "x = np.random.default_rng(0).standard_normal((2, 960)).astype(np.float32)\n"
        "s = fastfft.rfft(x)\n"
        "print(fastfft.backend(), [m for m in sys.modules if m.startswith('scipy')])\n"
        "from scipy import fft\n"
        "print(np.allclose(s, fft.rfft(x, axis=-1), atol=1e-3), np.allclose(fastfft.irfft(s, 960), x, atol=1e-5))\n"
    )
    assert out.splitlines() == ["pocketfft binding []", "True True"]


def test_without_scipy_numpy_fft_does_it() -> None:
    out = _python(
        "import sys, numpy as np\n"
        "sys.modules['scipy'] = None  # as if scipy were not installed\n"
        "from edgevoice.audio import fastfft\n"
        "x = np.random.default_rng(0).standard_normal((2, 960)).astype(np.float32)\n"
        "s = fastfft.rfft(x)\n"
        "same = np.allclose(s, np.fft.rfft(x), atol=1e-3)\n"
        "print(fastfft.backend(), same, np.allclose(fastfft.irfft(s, 960), x, atol=1e-5))\n"
    )
    assert out == "numpy.fft True True"


def test_a_binding_with_another_signature_falls_back_to_scipy_fft(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an older or newer scipy could present: r2c/c2r taking other arguments, or answering otherwise."""
    monkeypatch.setattr(fastfft, "rfft", fastfft.rfft)  # restored after the test, as loaded
    monkeypatch.setattr(fastfft, "irfft", fastfft.irfft)
    monkeypatch.setattr(fastfft, "_backend", "")
    changed = SimpleNamespace(r2c=lambda a, axes, forward: None, c2r=lambda a, axes, lastsize, forward: None)
    monkeypatch.setattr(fastfft, "_binding", lambda: changed)
    assert fastfft._pocketfft() is None
    unnormalised = SimpleNamespace(
        r2c=lambda a, axes, forward, inorm, out, nthreads: np.fft.rfft(a).astype(np.complex64),
        c2r=lambda a, axes, n, forward, inorm, out, nthreads: np.fft.irfft(a, n).astype(np.float32) * n,
    )
    monkeypatch.setattr(fastfft, "_binding", lambda: unnormalised)
    assert fastfft._pocketfft() is None
    assert fastfft.backend() == "scipy.fft"
    x = np.random.default_rng(2).standard_normal((2, 480)).astype(np.float32)
    np.testing.assert_allclose(fastfft.irfft(fastfft.rfft(x), 480), x, atol=1e-5)


def test_next_fast_len_is_scipys() -> None:
    for target in [*range(1, 3000), 4001, 6001, 12345, 65537, 10**6 + 1]:
        assert fastfft.next_fast_len(target) == scipy_fft.next_fast_len(target, real=True), target
    with pytest.raises(ValueError, match="positive"):
        fastfft.next_fast_len(0)


def test_the_audio_path_imports_no_scipy() -> None:
    """scipy.signal and scipy.fft together cost ~80 MB and ~2 s at start on a Pi; the runtime needs neither."""
    code = (
        "import sys, edgevoice.audio.duplex, edgevoice.audio.speaker, edgevoice.audio.microphone\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    )
    assert _python(code) == "[]"
