"""One interface for the ways the microphone lives with the speaker: `aec` (edgevoice's canceller, or the
device's own with `[audio] hardware_aec`), `gate` and `off`.

    echo = make_echo_control(settings, sample_rate=24000, frame_samples=480)
    cleaned = echo.process(near, far)      # per capture frame, `far` from an EchoReference
    if vad.process(cleaned, echo.echo_level): ...    # a visitor started talking

`EchoFrontEnd` puts reference, echo control and voice detector together for the daemon: one call per capture frame.

`echo_level` tells a voice detector how loud the device's own voice is in the microphone: the canceller's
estimate of the echo power (mean square, int16 units, held while the room rings on; on a device that cancels
its own echo, the power it played), 0 when the device is silent, and infinity while the microphone cannot be
trusted at all (the gate is closed, or `off` while the device speaks). The detector learns how much of that
level gets through to `cleaned`.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from edgevoice.audio.bridge import PlaybackStream
from edgevoice.audio.echo import EchoCanceller
from edgevoice.audio.echo_hardware import DeviceEchoCancellation
from edgevoice.audio.echo_reference import EchoReference
from edgevoice.audio.gate import EchoGate, NoEchoControl
from edgevoice.audio.settings import AudioSettings
from edgevoice.audio.vad import LocalVad

log = logging.getLogger(__name__)


class EchoControl(Protocol):
    """What `EchoCanceller` (`aec`), `DeviceEchoCancellation` (`aec` on a device that cancels its own echo),
    `EchoGate` (`gate`) and `NoEchoControl` (`off`) all offer; pick one with
    `make_echo_control`. Call `process(near, far)` once per capture frame, both exactly `frame_samples` int16
    samples at `sample_rate`, `far` being what the speaker played at that moment; it returns the cleaned
    microphone frame and updates `far_active` and `echo_level` (see the module docstring). `reset()` forgets
    what was learnt about the room."""

    mode: str
    sample_rate: int
    frame_samples: int
    far_active: bool  # the device's voice is (or may still be) in the microphone
    echo_level: float  # power of the device's voice in the microphone; inf = do not trust the microphone

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray: ...
    def reset(self) -> None: ...


def make_echo_control(settings: AudioSettings, sample_rate: int, frame_samples: int) -> EchoControl:
    """The echo handling `[audio] echo` asks for, for frames of `frame_samples` at `sample_rate`."""
    if settings.echo == "aec" and settings.hardware_aec:  # the device cancels; the gate is the fallback
        return DeviceEchoCancellation(
            sample_rate, frame_samples, hang_ms=settings.gate_hang_ms, attenuation_db=settings.gate_attenuation_db
        )
    if settings.echo == "aec":
        return EchoCanceller(sample_rate, frame_samples, tail_ms=settings.echo_tail_ms)
    if settings.echo == "gate":
        return EchoGate(
            sample_rate, frame_samples, hang_ms=settings.gate_hang_ms, attenuation_db=settings.gate_attenuation_db
        )
    return NoEchoControl(sample_rate, frame_samples)


class EchoFrontEnd:
    """What the microphone goes through before it is sent: `process(frame)` per 24 kHz capture frame.

    `playback` must have been opened with a tap (`PlaybackStream(..., tap_seconds=1.0)`); its reference is
    what the speaker really played. Returns the cleaned frame and whether a visitor just started talking
    (the local barge-in: stop the speaker, truncate and cancel, without waiting for the server's VAD).

    A fault in this DSP must not take the microphone down: a frame it fails on goes on as silence (it might
    carry the device's own voice), the failure is logged with its traceback (the first, then every 500th),
    and the echo control and the detector start afresh.
    """

    def __init__(self, settings: AudioSettings, playback: PlaybackStream, rate: int = 24000, frame_samples: int = 480):
        self.reference = EchoReference(playback, rate=rate, frame_samples=frame_samples)
        self.control = make_echo_control(settings, rate, frame_samples)
        self.vad = LocalVad(rate, frame_samples)
        self.failures = 0

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        try:
            cleaned = self.control.process(frame, self.reference.next_frame())
            return cleaned, self.vad.process(cleaned, self.control.echo_level, self.control.far_active)
        except Exception:
            if self.failures % 500 == 0:
                log.exception(
                    "echo control failed on a microphone frame (%d so far): the frame goes on as silence and "
                    "the canceller learns the room afresh. Please report this with the traceback",
                    self.failures + 1,
                )
            self.failures += 1
            self.control.reset()
            self.vad.reset()
            return np.zeros_like(frame), False
