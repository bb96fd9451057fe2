"""A microphone device that cancels its own echo (`[audio] hardware_aec`), on arrays: the microphone passes
through untouched, the played reference still drives the local voice detector, the echo left is measured,
and a device that does not cancel after all is gated (the fallback). The same through the real audio path
and a simulated room: tests/test_full_duplex.py."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from echo_paths import echo_path, far_speech, noise, through, visitor
from test_duplex import FRAME, RATE, onsets, speech_start

from edgevoice.audio.duplex import make_echo_control
from edgevoice.audio.echo_hardware import DeviceEchoCancellation
from edgevoice.audio.resample import to_int16
from edgevoice.config import parse_config

SECONDS = 12.0
RESIDUAL_DB = -30.0  # what a device's canceller leaves of its echo


def room(residual_db: float, seconds: float = SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """The device's voice (far) and what its processed channel delivers of it: the echo `residual_db` down."""
    far = far_speech(RATE, seconds)
    echo = through(echo_path(RATE, delay_ms=30.0, rt60=0.3), far) * 10 ** (residual_db / 20)
    return far, echo + noise(RATE, seconds)


def feed(control: DeviceEchoCancellation, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
    mic16 = to_int16(mic)
    out = np.zeros(mic16.size - mic16.size % FRAME, np.int16)
    for i in range(0, out.size, FRAME):
        out[i : i + FRAME] = control.process(mic16[i : i + FRAME], far[i : i + FRAME])
    return out


def test_a_device_that_cancels_is_measured_trusted_and_passed_through(caplog: pytest.LogCaptureFixture) -> None:
    far, mic = room(RESIDUAL_DB)
    control = DeviceEchoCancellation(RATE, FRAME)
    with caplog.at_level(logging.INFO, logger="edgevoice.audio.echo_hardware"):
        out = feed(control, mic, far)
    residual = control.residual_db
    assert control.working and not control.gated and residual is not None
    # The echo path itself returns the voice about 6 dB down (gain 0.5), the device takes 30 dB off it; the
    # measure is that ratio of energies over half-second blocks of playback.
    assert -40.0 < residual < -32.0, residual
    tail = slice(4 * RATE, out.size)  # once trusted, the microphone is untouched
    assert np.array_equal(out[tail], to_int16(mic)[tail])
    assert "hardware echo cancellation works" in caplog.text and "WARNING" not in caplog.text


def test_until_measured_the_microphone_is_gated_while_the_device_speaks() -> None:
    far, mic = room(RESIDUAL_DB, 3.0)
    control = DeviceEchoCancellation(RATE, FRAME)
    mic16 = to_int16(mic)
    first = next(i for i in range(0, far.size, FRAME) if np.abs(far[i : i + FRAME]).max() > 1000)
    for i in range(0, first + FRAME, FRAME):  # up to the device's first loud frame
        control.process(mic16[i : i + FRAME], far[i : i + FRAME])
    # Nothing measured yet: the device's voice could be all there, and no voice in the microphone is trusted.
    assert not control.verified and control.gated and math.isinf(control.echo_level)


def test_a_device_that_does_not_cancel_falls_back_to_the_gate(caplog: pytest.LogCaptureFixture) -> None:
    far, mic = room(0.0)  # the raw channel: the whole echo
    control = DeviceEchoCancellation(RATE, FRAME)
    with caplog.at_level(logging.WARNING, logger="edgevoice.audio.echo_hardware"):
        out = feed(control, mic, far)
    assert control.verified and not control.working and control.gated
    residual = control.residual_db
    assert residual is not None and residual > -20.0
    playing = slice(2 * RATE, 10 * RATE)
    mic_db = 10 * np.log10(np.mean(to_int16(mic)[playing].astype(np.float64) ** 2))
    out_db = 10 * np.log10(np.mean(out[playing].astype(np.float64) ** 2) + 1e-9)
    assert mic_db - out_db > 30.0  # attenuated by the gate's 40 dB while the device speaks
    assert caplog.text.count("does not cancel its echo") == 1  # said once, with what to check
    assert "input_channel is the device's processed channel" in caplog.text


def test_the_device_never_hears_itself_and_a_visitor_interrupts_it() -> None:
    far, mic = room(RESIDUAL_DB, 16.0)
    voice = visitor(RATE, -26.0)
    start = 10 * RATE
    mic[start : start + voice.size] += voice
    fired = onsets(DeviceEchoCancellation(RATE, FRAME), mic, far)
    assert fired, "the visitor was never detected"
    assert fired[0] >= start / RATE, f"fired on the device's own voice at {fired[0]:.2f} s"
    talk = start / RATE + speech_start(voice)
    assert fired[0] - talk <= 0.100, f"{(fired[0] - talk) * 1000:.0f} ms after the visitor started"


def test_the_echo_left_decides_between_trust_and_the_gate() -> None:
    # The same device, once with its canceller on and once with it off: the verdict follows the residual.
    for residual_db, working in ((-25.0, True), (-8.0, False)):
        far, mic = room(residual_db, 6.0)
        control = DeviceEchoCancellation(RATE, FRAME)
        feed(control, mic, far)
        assert control.working is working, (residual_db, control.residual_db)


def test_the_profile_setting_builds_it_and_gate_or_off_still_win() -> None:
    hardware = parse_config("[audio]\nhardware_aec = true\ngate_hang_ms = 300\ngate_attenuation_db = 30\n").audio
    control = make_echo_control(hardware, RATE, FRAME)
    assert isinstance(control, DeviceEchoCancellation) and control.mode == "hardware"
    assert control.fallback.hang_ms == 300
    for mode in ("gate", "off"):  # an explicit choice is kept
        settings = parse_config(f'[audio]\nhardware_aec = true\necho = "{mode}"\n').audio
        assert make_echo_control(settings, RATE, FRAME).mode == mode
    profile = parse_config('[hardware]\nprofile = "respeaker-lite"\n').audio
    assert isinstance(make_echo_control(profile, RATE, FRAME), DeviceEchoCancellation)


class _IgnoresTheReference:
    """The control: the microphone passed through with no word to the detector about the device's voice."""

    mode = "naive"
    sample_rate, frame_samples = RATE, FRAME
    far_active = False
    echo_level = 0.0

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        return near

    def reset(self) -> None:
        pass


def test_the_control_without_the_reference_the_residual_alone_would_interrupt_the_device() -> None:
    # What makes the tests above (and the room test) mean something: 30 dB down, the device's voice is still
    # well above a quiet room, and a detector not told about it takes it for a visitor.
    far, mic = room(RESIDUAL_DB, 8.0)
    assert onsets(_IgnoresTheReference(), mic, far)
