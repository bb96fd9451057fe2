"""Synthetic echo paths and the signals the echo tests feed through them (made on the fly, never stored).

An echo path here is what a small kiosk does to the device's voice: a bulk delay (the sound card's
buffering plus the speaker-to-microphone distance), a direct path, and a reverberant tail decaying as a
room with a given RT60 does. The benchmark (bench/echo.py) uses simulated rooms instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from conftest import speak
from scipy.signal import fftconvolve

from edgevoice.audio.resample import to_int16

FAR_TEXT = (
    "Welcome to the museum. The exhibition on the ground floor shows the history of the harbour, from the "
    "first wooden piers to the container terminal of today. Guided tours start every hour at the main desk."
)
NEAR_TEXT = "Excuse me, where are the toilets please?"


def echo_path(rate: int, *, delay_ms: float = 2.0, rt60: float = 0.3, length_ms: float = 100.0,
              gain: float = 0.5, reverb_db: float = -6.0, seed: int = 0) -> np.ndarray:  # fmt: skip
    """An impulse response: `delay_ms` of nothing, a direct path, then a random tail decaying with `rt60`
    and holding `reverb_db` of the direct path's energy; `gain` is the amplitude of the whole."""
    rng = np.random.default_rng(seed)
    d = int(rate * delay_ms / 1000)
    n = int(rate * length_ms / 1000)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(rate * 0.002)] = 0  # the first reflection comes a little after the direct sound
    tail *= np.sqrt(10 ** (reverb_db / 10) / np.sum(tail**2))
    h = np.zeros(d + n)
    h[d] = 1.0
    h[d:] += tail
    return gain * h / np.sqrt(np.sum(h**2))


def far_speech(rate: int, seconds: float) -> np.ndarray:
    """The device's voice, repeated to `seconds`, at about -16 dBFS while talking."""
    voice = speak(FAR_TEXT, rate).astype(np.float64)
    reps = int(np.ceil(seconds * rate / voice.size))
    x = np.tile(voice, reps)[: int(seconds * rate)]
    active = np.abs(x) > 100
    return to_int16(x * (0.16 * 32768 / np.sqrt(np.mean(x[active] ** 2))))


def visitor(rate: int, level_dbfs: float = -26.0) -> np.ndarray:
    """A visitor's question at `level_dbfs` (RMS while talking)."""
    x = speak(NEAR_TEXT, rate).astype(np.float64)
    active = np.abs(x) > 100
    return x * (10 ** (level_dbfs / 20) * 32768 / np.sqrt(np.mean(x[active] ** 2)))


def through(path: np.ndarray, far: np.ndarray) -> np.ndarray:
    return fftconvolve(far.astype(np.float64), path)[: far.size]


def noise(rate: int, seconds: float, dbfs: float = -70.0, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(rate * seconds)) * 10 ** (dbfs / 20) * 32768


def run(process: Callable[[np.ndarray, np.ndarray], np.ndarray], mic: np.ndarray, far: np.ndarray,
        frame: int, each: Callable[[int], None] | None = None) -> np.ndarray:  # fmt: skip
    """Feed `mic` and `far` frame by frame through `process`; `each(i)` is called after frame i."""
    mic16 = to_int16(mic)
    out = np.zeros(mic16.size - mic16.size % frame, np.int16)
    for i in range(0, out.size, frame):
        out[i : i + frame] = process(mic16[i : i + frame], far[i : i + frame])
        if each is not None:
            each(i // frame)
    return out


def erle_db(mic: np.ndarray, out: np.ndarray, far: np.ndarray, rate: int, start_s: float, end_s: float,
            lag: int = 0) -> float:  # fmt: skip
    """Echo return loss enhancement between two times, over the 50 ms windows where the far end plays."""
    w = rate // 20
    a, b = int(start_s * rate) // w, int(end_s * rate) // w
    shifted = out[lag:].astype(np.float64)
    num = den = 0.0
    for k in range(a, b):
        s = slice(k * w, (k + 1) * w)
        if np.sqrt(np.mean(far[s].astype(np.float64) ** 2)) < 300:
            continue
        num += float(np.sum(mic[s].astype(np.float64) ** 2))
        den += float(np.sum(shifted[s] ** 2))
    return 10 * np.log10(num / max(den, 1.0))
