"""The streaming resampler must equal one-shot resample_poly on the whole signal, whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from edgevoice.audio.resample import StreamResampler, to_int16

RATE_PAIRS = [
    (48000, 24000),
    (44100, 24000),
    (16000, 24000),
    (8000, 24000),
    (24000, 48000),
    (24000, 44100),
    (24000, 16000),
    (24000, 8000),
]


def _stream(resampler: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, j = [], 0, 0
    while i < x.size:
        n = sizes[j % len(sizes)]
        out.append(resampler.process(x[i : i + n]))
        i, j = i + n, j + 1
    out.append(resampler.flush())
    return np.concatenate(out)


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
@pytest.mark.parametrize("sizes", [[960], [441], [1, 7, 333, 5], [4097]])
def test_stream_equals_one_shot(rate_in: int, rate_out: int, sizes: list[int]) -> None:
    x = np.random.default_rng(rate_in + rate_out).standard_normal(rate_in // 2 + 37) * 4000
    g = np.gcd(rate_in, rate_out)
    expected = resample_poly(x, rate_out // g, rate_in // g)
    got = _stream(StreamResampler(rate_in, rate_out), x, sizes)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


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


def test_bad_rates_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 24000)


def test_to_int16_clips_instead_of_wrapping() -> None:
    assert to_int16(np.array([40000.0, -40000.0, 1.6])).tolist() == [32767, -32768, 2]
