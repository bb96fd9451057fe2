"""Shared test set-up: one virtual sound card for the whole run, speech made on the fly, a device harness.

alsa-lib reads its configuration once per process, so the virtual card (scripted microphone, recorded
speaker, paced by a private PulseAudio) is set up before any test starts PortAudio, and every test in
the process shares it: a test writes the microphone script, runs, and reads the speaker recording.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.devkit.sound_card import VirtualSoundCard, read_wav

_workdir = Path(tempfile.mkdtemp(prefix="edgevoice-tests-"))
CARD = VirtualSoundCard(_workdir / "card")


def pytest_configure(config: pytest.Config) -> None:
    CARD.start()
    CARD.apply_to_process()


def pytest_unconfigure(config: pytest.Config) -> None:
    CARD.stop()
    shutil.rmtree(_workdir, ignore_errors=True)


@pytest.fixture
def sound_card() -> VirtualSoundCard:
    return CARD


@pytest.fixture
def sockdir() -> Iterator[str]:
    """A short directory for a control socket (paths are limited to 107 bytes), reachable by other users."""
    directory = tempfile.mkdtemp(prefix="ev-ctl-")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


_speech_cache: dict[tuple[str, int], np.ndarray] = {}


def speak(text: str, rate: int = 48000) -> np.ndarray:
    """`text` spoken by espeak-ng, int16 at `rate` (made once per run, never committed)."""
    key = (text, rate)
    if key not in _speech_cache:
        wav = _workdir / f"speech{len(_speech_cache)}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), text], check=True)
        samples, source_rate = read_wav(wav)
        resampler = StreamResampler(source_rate, rate)
        _speech_cache[key] = to_int16(np.concatenate((resampler.process(samples), resampler.flush())))
    return _speech_cache[key]


class LogCapture(logging.Handler):
    """Every log line of a test (with tracebacks), e.g. to check that no secret is ever written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


def silence(seconds: float, rate: int = 48000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)
