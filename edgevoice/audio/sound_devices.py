"""The sound devices the daemon uses, opened as the `[audio]` settings say: the microphone and the speaker.

`SoundDevices` finds both devices, negotiates their formats, opens the PortAudio streams (the playback one
with the tap the echo canceller reads what was played from) and builds the parts on top of them: the
`MicrophonePath` (24 kHz frames through the echo front end, only while `mic_needed()`) and the `Speaker`
(the playout of answers). The echo front end's DSP is loaded and built at the microphone's first use, or by
`prepare_echo()` once the daemon is ready: the way to READY does not wait for it. `AudioDeviceError` says
what is missing, in words an installer can act on.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgevoice.audio.bridge import CaptureStream, PlaybackStream
from edgevoice.audio.devices import AudioDeviceError, find_device, list_devices, negotiate_format, open_portaudio
from edgevoice.audio.mic_path import MicrophonePath
from edgevoice.audio.microphone import Microphone
from edgevoice.audio.settings import AudioSettings
from edgevoice.audio.speaker import Speaker
from edgevoice.audio.xruns import XRuns

if TYPE_CHECKING:
    from edgevoice.audio.duplex import EchoFrontEnd

log = logging.getLogger(__name__)

__all__ = ["AudioDeviceError", "SoundDevices"]

TAP_SECONDS = 1.0  # what was played, kept for the echo canceller's reference
WAKE_MS = 40  # the microphone wakes the loop this often while it is needed: latency for the local VAD vs CPU


class SoundDevices:
    """The open microphone and speaker, streaming once `start()` is called, until `close()`."""

    def __init__(
        self,
        settings: AudioSettings,
        loop: asyncio.AbstractEventLoop,
        *,
        on_started: Callable[[str], None],
        on_drained: Callable[[], None],
        on_level: Callable[[float], None],
        mic_needed: Callable[[], bool] = lambda: True,
    ) -> None:
        self.pa = open_portaudio()
        try:
            devices = list_devices(self.pa)
            mic_dev = find_device(devices, settings.input_device, "input")
            spk_dev = find_device(devices, settings.output_device, "output")
            mic_fmt = negotiate_format(
                self.pa, mic_dev, "input", settings.input_rate, settings.input_channels, settings.sample_format
            )
            spk_fmt = negotiate_format(
                self.pa, spk_dev, "output", settings.output_rate, settings.output_channels, settings.sample_format
            )
            frame_ms = settings.frame_ms
            self.capture = CaptureStream(self.pa, mic_fmt, mic_fmt.rate * frame_ms // 1000, loop, ring_seconds=2.0)
            self.playback = PlaybackStream(self.pa, spk_fmt, spk_fmt.rate * frame_ms // 1000, tap_seconds=TAP_SECONDS)
        except BaseException:
            self.pa.terminate()
            raise
        self._settings = settings
        self.capture.paired = self.playback  # the canceller's reference is paired with the capture by stamp
        self.microphone = MicrophonePath(
            Microphone(self.capture, settings.input_channel, frame_ms),
            self._echo_front_end,
            needed=mic_needed,
            batch=max(1, WAKE_MS // frame_ms),
        )
        self.speaker = Speaker(
            self.playback, frame_ms=frame_ms, on_started=on_started, on_drained=on_drained, on_level=on_level
        )
        log.info(
            "microphone: %r at %d Hz x%d; speaker: %r at %d Hz x%d",
            mic_fmt.device.name,
            mic_fmt.rate,
            mic_fmt.channels,
            spk_fmt.device.name,
            spk_fmt.rate,
            spk_fmt.channels,
        )

    def _echo_front_end(self) -> EchoFrontEnd:
        """Built once, kept as long as the streams: the room the canceller has learnt survives between turns
        and sessions."""
        from edgevoice.audio.duplex import EchoFrontEnd  # the DSP: not on the way to READY

        frame_samples = 24000 * self._settings.frame_ms // 1000
        return EchoFrontEnd(self._settings, self.playback, frame_samples=frame_samples)

    async def prepare_echo(self) -> None:
        """Load the echo front end's DSP in a worker thread, then build it (call once the device is ready)."""
        await asyncio.to_thread(importlib.import_module, "edgevoice.audio.duplex")
        self.microphone.prepare()

    @property
    def captured_seconds(self) -> float:
        """Seconds of microphone audio captured so far."""
        return self.capture.delivered * self.capture.frames_per_buffer / self.capture.format.rate

    def xruns(self) -> XRuns:
        """The audio path's overflows and underflows so far (cheap: four counters; read it from a timer)."""
        capture, playback = self.capture, self.playback
        return XRuns(capture.overflows, capture.missed, playback.underflows, playback.gaps)

    def start(self) -> None:
        self.playback.start()
        self.capture.start()

    def close(self) -> None:
        self.capture.close()
        self.playback.close()
        self.pa.terminate()
