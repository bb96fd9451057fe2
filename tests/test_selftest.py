"""`edgevoice selftest` on the virtual card.

The virtual card's microphone is scripted (ALSA file plugin): it cannot hear the speaker. So the test
plays the part of the room: it scripts the microphone with the selftest's own sweep passed through a known
echo path (a delay of D samples and three taps, plus noise) and checks the selftest finds that path. The
duplex stream aligns input sample k with output sample k, so the measured delay must be D exactly.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from busy import hold_the_interpreter
from conftest import CARD
from gpiozero.pins.mock import MockFactory
from scipy.signal import lfilter

import edgevoice.selftest
from edgevoice.config import parse_config
from edgevoice.devkit.sound_card import MIC, MIC_FAST, SPEAKER, SPEAKER_FAST
from edgevoice.selftest import selftest
from edgevoice.selftest.echo import EchoPath, measurement_signal
from edgevoice.selftest.playrec import PlayRecord

RATE = 48000
DELAY = 517  # samples: 10.8 ms of output + acoustic + input latency
ROOM = {0: 0.3, 240: -0.1, 1500: 0.05}  # direct sound, an enclosure reflection at 5 ms, a wall at 31 ms
CONFIG = parse_config(
    f'[audio]\ninput_device = "{MIC_FAST}"\noutput_device = "{SPEAKER_FAST}"\ninput_rate = {RATE}\n'
    '[hardware]\npin_factory = "mock"\n'
)


def script_room(gain: float = 1.0, noise: float = 30.0) -> None:
    played = measurement_signal(RATE)
    taps = np.zeros(max(ROOM) + 1)
    for k, v in ROOM.items():
        taps[k] = v * gain
    echo = lfilter(taps, [1.0], played) * 32767
    mic = np.concatenate((np.zeros(DELAY), echo, np.zeros(2 * RATE)))
    mic += np.random.default_rng(7).normal(0, noise, len(mic))
    CARD.write_mic(np.clip(np.rint(mic), -32768, 32767).astype(np.int16), fast=True)


def read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = {}, 8
    while i < len(data):
        (size,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + size]
        assert struct.unpack(">I", data[i + 8 + size : i + 12 + size])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        i += 12 + size
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter byte 0 on every row
    return rows[:, 1:]


def test_selftest_measures_the_echo_path_walks_the_led_and_feels_the_button(tmp_path: Path) -> None:
    script_room()
    factory = MockFactory()
    threading.Timer(4.5, lambda: factory.pin(17).drive_low()).start()  # the installer presses the button
    report = selftest(CONFIG, state_dir=tmp_path, plot=str(tmp_path / "echo.png"), button_timeout_s=15,
                      pin_factory=factory)  # fmt: skip
    assert report.failures == []
    echo = report.echo
    assert echo is not None and echo.delay_samples == DELAY and echo.snr_db > 40
    ir = np.asarray(echo.impulse_response)
    direct = DELAY - echo.ir_start_samples
    for k, v in ROOM.items():  # each reflection found where it is, with its sign and relative size
        window = ir[direct + k - 3 : direct + k + 4]
        tap = window[np.argmax(np.abs(window))]
        assert abs(tap / ir[direct] - v / ROOM[0]) < 0.05, (k, tap)
    assert 0.2 < ir[direct] < 0.31  # the in-band (150 Hz - 21.6 kHz) gain of a 0.3 tap
    assert np.max(np.abs(np.delete(ir, [direct + k + d for k in ROOM for d in range(-24, 25)]))) < 0.03 * ir[direct]
    saved = EchoPath.load(tmp_path / "echo_path.json")
    assert saved.delay_samples == DELAY and saved.rate == RATE and len(saved.impulse_response) == len(ir)
    assert any(line.startswith("audio: no overflow or underflow in ") for line in report.lines)
    assert any(line.startswith("LED walked through: idle (off), connecting (blink") for line in report.lines)
    assert any(line.startswith("button: pressed after") for line in report.lines)
    image = read_png(tmp_path / "echo.png")
    assert image.shape == (402, 800) and (image == 0).sum() > 2000  # two panels with ink in them
    # What the speaker played is the sweep (the file plugin records it, after PortAudio's silence prime).
    spoken, sweep = CARD.read_speaker(fast=True).astype(np.float64), measurement_signal(RATE)
    offset = int(np.flatnonzero(spoken)[0]) - int(np.flatnonzero(np.rint(sweep * 32767))[0])
    assert np.corrcoef(spoken[offset : offset + len(sweep)], sweep)[0, 1] > 0.999


@pytest.mark.parametrize(("gain", "noise", "expected"), [(0.0, 0.0, "digital silence"), (0.0, 300.0, "not heard")])
def test_a_deaf_microphone_fails_and_saves_nothing(tmp_path: Path, gain: float, noise: float, expected: str) -> None:
    script_room(gain, noise)
    no_led = CONFIG.replace(leds=dataclasses.replace(CONFIG.leds, enabled=False))
    report = selftest(no_led, state_dir=tmp_path, button_timeout_s=0, pin_factory=MockFactory())
    assert len(report.failures) == 1 and expected in report.failures[0]
    assert not (tmp_path / "echo_path.json").exists()


def test_a_sound_card_served_too_late_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    CARD.write_mic(np.zeros(RATE * 5, np.int16))
    paced = CONFIG.replace(
        audio=dataclasses.replace(CONFIG.audio, input_device=MIC, output_device=SPEAKER),
        leds=dataclasses.replace(CONFIG.leds, enabled=False),
    )

    def busy_play_and_record(*args: Any) -> PlayRecord:
        busy = hold_the_interpreter(after_s=0.5, seconds=0.6)  # a CPU too busy, in the middle of the sweep
        try:
            return real(*args)
        finally:
            busy.join()

    real = edgevoice.selftest.play_and_record
    monkeypatch.setattr(edgevoice.selftest, "play_and_record", busy_play_and_record)
    report = selftest(paced, state_dir=tmp_path, button_timeout_s=0, pin_factory=MockFactory())
    (warning,) = [line for line in report.lines if line.startswith("WARN audio:")]
    assert "output underflow(s)" in warning and " 0 output underflow(s)" not in warning
    assert "served too late" in warning and "USB port" in warning


@pytest.mark.parametrize(("gain_db", "works"), [(-35.0, True), (0.0, False)])
def test_a_device_that_cancels_its_echo_gets_the_echo_left_measured_and_a_verdict(
    tmp_path: Path, gain_db: float, works: bool
) -> None:
    # The processed channel of a device that cancels: the room's echo comes back gain_db further down. The room's
    # taps (0.3, -0.1, 0.05) alone return the sweep 9.9 dB down.
    script_room(gain=10 ** (gain_db / 20))
    config = CONFIG.replace(
        audio=dataclasses.replace(CONFIG.audio, hardware_aec=True), leds=dataclasses.replace(CONFIG.leds, enabled=False)
    )
    report = selftest(config, state_dir=tmp_path, button_timeout_s=0, pin_factory=MockFactory())
    expected_db = 10 * np.log10(sum(v * v for v in ROOM.values())) + gain_db
    assert report.residual_echo_db is not None and abs(report.residual_echo_db - expected_db) < 1.0
    if works:
        assert report.failures == []
        assert any(
            line.startswith("hardware echo cancellation works: the sweep comes back -45 dB down")
            for line in report.lines
        )
    else:
        (failure,) = report.failures
        assert "hardware echo cancellation does not work: the sweep comes back -10 dB down" in failure
        assert "input_channel is the device's processed channel" in failure
    assert not (tmp_path / "echo_path.json").exists()  # a processed channel's impulse response means nothing
