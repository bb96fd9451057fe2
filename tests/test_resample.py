"""The streaming resampler must equal one-shot resample_poly on the whole signal, whatever the chunking.

scipy.signal is the oracle here only: the resampler itself is numpy alone.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import firwin, resample_poly

from edgevoice.audio.resample import StreamResampler, lowpass_taps, to_int16

RATE_PAIRS = [
    (48000, 24000),
    (44100, 24000),
    (32000, 24000),
    (22050, 24000),
    (16000, 24000),
    (8000, 24000),
    (24000, 48000),
    (24000, 44100),
    (24000, 16000),
    (24000, 8000),
]
ROUNDING = 1e-12 * 32768  # float64 rounding on int16-scale samples, with room for a few hundred additions


def _stream(resampler: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, j = [], 0, 0
    while i < x.size:
        n = sizes[j % len(sizes)]
        out.append(resampler.process(x[i : i + n]))
        i, j = i + n, j + 1
    out.append(resampler.flush())
    return np.concatenate(out)


def _one_shot(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    g = math.gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g)


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
@pytest.mark.parametrize("sizes", [[960], [480], [441], [882], [1, 7, 333, 5], [4097], [10**6]])
def test_stream_equals_one_shot(rate_in: int, rate_out: int, sizes: list[int]) -> None:
    """Odd and even chunks, a 20 ms frame at each rate, chunks longer than the history kept, the whole signal."""
    x = np.random.default_rng(rate_in + rate_out).standard_normal(rate_in // 2 + 37) * 4000
    expected = _one_shot(x, rate_in, rate_out)
    got = _stream(StreamResampler(rate_in, rate_out), x, sizes)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ROUNDING)


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
def test_the_filter_is_resample_polys(rate_in: int, rate_out: int) -> None:
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    max_rate = max(up, down)
    expected = firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    np.testing.assert_allclose(lowpass_taps(up, down), expected, rtol=0, atol=1e-15 * up)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 24000), (44100, 24000), (24000, 48000)])
def test_each_chunk_returns_what_its_inputs_complete(rate_in: int, rate_out: int) -> None:
    """The stream lags the one-shot output by `delay_seconds`, never more: after n inputs, the outputs
    resample_poly has for them minus the filter delay have all been returned."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    r = StreamResampler(rate_in, rate_out)
    lag = round(r.delay_seconds * rate_out)
    assert 0 < r.delay_seconds < 0.001
    x = np.random.default_rng(5).standard_normal(rate_in // 5) * 1000
    returned, fed = 0, 0
    for n in [1, 2, 3, 50, 441, 960, 7, 2000]:
        returned += r.process(x[fed : fed + n]).size
        fed += n
        assert returned == max(0, -(-fed * up // down) - lag)


def test_float32_and_strided_input_are_resampled_like_float64() -> None:
    """The echo reference hands over one channel of an interleaved block: a strided view."""
    stereo = (np.random.default_rng(6).standard_normal((4800, 2)) * 3000).astype(np.float32)
    got = _stream(StreamResampler(48000, 24000), stereo[:, 0], [960])
    np.testing.assert_allclose(got, _one_shot(stereo[:, 0].astype(np.float64), 48000, 24000), atol=ROUNDING)


def test_int16_stream_equals_int16_one_shot() -> None:
    t = np.arange(48000) / 48000
    x = (20000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    got = to_int16(_stream(StreamResampler(48000, 24000), x, [960, 17]))
    assert np.array_equal(got, to_int16(resample_poly(x.astype(np.float64), 1, 2)))


def test_no_boundary_artefacts_on_a_tone() -> None:
    """Per-chunk resample_poly leaves clicks at chunk edges; the stream must not."""
    rate_in, f = 44100, 440.0
    x = 10000 * np.sin(2 * np.pi * f * np.arange(rate_in) / rate_in)
    y = _stream(StreamResampler(rate_in, 24000), x, [882])
    t = np.arange(y.size) / 24000
    ideal = 10000 * np.sin(2 * np.pi * f * t)
    inner = slice(200, y.size - 200)  # away from the signal's own start and end
    assert np.max(np.abs(y[inner] - ideal[inner])) < 10  # < -70 dB of the tone
    naive = np.concatenate([resample_poly(x[i : i + 882], 80, 147) for i in range(0, x.size, 882)])
    assert np.max(np.abs(naive[inner] - ideal[inner])) > 1000  # the defect this class exists to avoid


def test_passthrough_and_empty_chunks() -> None:
    r = StreamResampler(24000, 24000)
    x = np.arange(10, dtype=np.float64)
    assert np.array_equal(r.process(x), x)
    assert r.flush().size == 0
    r = StreamResampler(48000, 24000)
    assert r.process(np.zeros(0)).size == 0
    assert r.flush().size == 0


def test_reset_starts_a_new_signal() -> None:
    x = np.random.default_rng(3).standard_normal(4800) * 1000
    r = StreamResampler(48000, 24000)
    first = _stream(r, x, [960])
    second = _stream(r, x, [960])
    assert np.array_equal(first, second)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(44100, 24000), (24000, 48000)])
def test_reset_in_the_middle_forgets_the_history(rate_in: int, rate_out: int) -> None:
    """A barge-in resets the speaker's resampler halfway through an answer: nothing of it may leak."""
    rng = np.random.default_rng(4)
    old, new = rng.standard_normal(3000) * 8000, rng.standard_normal(5000) * 1000
    r = StreamResampler(rate_in, rate_out)
    r.process(old[:1234])
    r.process(old[1234:])
    r.reset()
    np.testing.assert_allclose(_stream(r, new, [333, 960]), _one_shot(new, rate_in, rate_out), atol=ROUNDING)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 24000), (22050, 24000), (24000, 16000)])
def test_flush_ends_one_stream_and_the_next_starts_clean(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(7)
    r = StreamResampler(rate_in, rate_out)
    for n in (1, 5, 960, 4411):  # streams shorter and longer than the filter
        x = rng.standard_normal(n) * 3000
        np.testing.assert_allclose(_stream(r, x, [441]), _one_shot(x, rate_in, rate_out), atol=ROUNDING)
    assert r.flush().size == 0  # nothing fed since the last flush


def test_importing_the_resampler_imports_no_scipy() -> None:
    """scipy.signal alone costs ~50 MB and over a second to import on a Pi."""
    code = "import sys, edgevoice.audio.resample; print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_bad_rates_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 24000)


def test_to_int16_clips_instead_of_wrapping() -> None:
    assert to_int16(np.array([40000.0, -40000.0, 1.6])).tolist() == [32767, -32768, 2]
