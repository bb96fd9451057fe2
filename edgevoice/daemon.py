"""The composition root: builds every part from the configuration, wires them together, runs and stops them.

Leaves (`audio`, `realtime`, `hw`, `system`) know nothing of each other; this module connects them to the
`Conversation` state machine through callbacks:

    button ------------------------------> Conversation ---> LED, event listeners (timeline, socket)
    Microphone (24 kHz frames) ----------> Conversation ---> RealtimeSession (append/commit/truncate)
    RealtimeSession events --------------> Conversation ---> Speaker (push/stop)
    Speaker (started/drained) -----------> Conversation

One task per I/O path: microphone, speaker pump, the session's reader and writer, a clock tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from edgevoice.audio.bridge import CaptureStream, PlaybackStream
from edgevoice.audio.devices import (
    AudioDeviceError,
    find_device,
    list_devices,
    negotiate_format,
    open_portaudio,
)
from edgevoice.audio.microphone import Microphone
from edgevoice.audio.speaker import Speaker
from edgevoice.config import Config, button_sections
from edgevoice.conversation import Conversation, State
from edgevoice.hw.gestures import ButtonAction
from edgevoice.hw.gpio import HardwareError, make_pin_factory
from edgevoice.hw.panel import Panel
from edgevoice.realtime import events as ev
from edgevoice.realtime.credentials import ApiKey
from edgevoice.realtime.session import RealtimeSession, SessionError

log = logging.getLogger(__name__)

TICK_S = 0.25
AUDIO_RETRY_S = 10.0
EventListener = Callable[[dict[str, Any]], None]


class AudioPaths:
    """The open sound devices: PortAudio, the capture and playback streams and their adapters."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, speaker_callbacks: dict[str, Any]):
        audio = config.audio
        self.pa = open_portaudio()
        try:
            devices = list_devices(self.pa)
            mic_dev = find_device(devices, audio.input_device, "input")
            spk_dev = find_device(devices, audio.output_device, "output")
            mic_fmt = negotiate_format(self.pa, mic_dev, "input", audio.input_rate, audio.input_channels)
            spk_fmt = negotiate_format(self.pa, spk_dev, "output", audio.output_rate, audio.output_channels)
            self.capture = CaptureStream(self.pa, mic_fmt, mic_fmt.rate * audio.frame_ms // 1000, loop)
            self.playback = PlaybackStream(self.pa, spk_fmt, spk_fmt.rate * audio.frame_ms // 1000)
        except BaseException:
            self.pa.terminate()
            raise
        self.microphone = Microphone(self.capture, audio.input_channel, audio.frame_ms)
        self.speaker = Speaker(self.playback, frame_ms=audio.frame_ms, **speaker_callbacks)
        log.info(
            "microphone: %r at %d Hz x%d; speaker: %r at %d Hz x%d",
            mic_fmt.device.name,
            mic_fmt.rate,
            mic_fmt.channels,
            spk_fmt.device.name,
            spk_fmt.rate,
            spk_fmt.channels,
        )

    def start(self) -> None:
        self.playback.start()
        self.capture.start()

    def close(self) -> None:
        self.capture.close()
        self.playback.close()
        self.pa.terminate()


class Daemon:
    """edgevoice running: audio, GPIO, the conversation and its Realtime sessions."""

    def __init__(
        self,
        config: Config,
        *,
        api_key: ApiKey | None,
        key_problem: str = "",
        pin_factory: Any | None = None,
    ) -> None:
        self.config = config
        self._api_key = api_key
        self._key_problem = key_problem or "no API key"
        self._pin_factory = pin_factory
        self._listeners: list[EventListener] = []
        self.audio: AudioPaths | None = None
        self.panel: Panel | None = None  # buttons and status LEDs
        self.conversation: Conversation | None = None
        self._session: RealtimeSession | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._generation = 0  # bumped on disconnect: events of an older session are ignored
        self._stopping: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # ---- events out ----------------------------------------------------------------------------------

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "state" and self.panel is not None:
            pattern = self.panel.show(event["state"])  # never blocks, never raises for a broken LED
            if pattern is not None:
                self._emit({"event": "led", "state": event["state"], "pattern": pattern})
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

    # ---- running -------------------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until `stop()`."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        rt = self.config.realtime
        self.conversation = Conversation(
            self.config.conversation,
            push_to_talk=rt.turn_detection.type == "none",
            server_interrupts=rt.turn_detection.interrupt_response,
            link=self,
            emit=self._emit,
            frame_ms=self.config.audio.frame_ms,
        )
        self._open_gpio(loop)
        self._emit({"event": "state", "state": "idle", "previous": ""})
        try:
            self._tasks = [
                asyncio.create_task(self._run_audio(loop), name="audio"),
                asyncio.create_task(self._tick(), name="tick"),
            ]
            if self._api_key is None and not self._loopback_endpoint():
                self.conversation.report_fault(f"{self._key_problem}")
            self.conversation.start()
            if on_ready is not None:
                on_ready()
            await self._stopping.wait()
        finally:
            await self._shutdown()

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    @property
    def capture_seconds(self) -> float:
        """Seconds of microphone audio captured so far (the demo and tests pace themselves on it)."""
        if self.audio is None:
            return 0.0
        cap = self.audio.capture
        return cap.buffers * cap.frames_per_buffer / cap.format.rate

    async def _run_audio(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the sound devices (retrying while they are missing) and feed the microphone to the conversation."""
        assert self.conversation is not None
        callbacks = {
            "on_started": self.conversation.on_playback_started,
            "on_drained": self.conversation.on_playback_drained,
        }
        while True:
            try:
                self.audio = AudioPaths(self.config, loop, callbacks)
                break
            except AudioDeviceError as exc:
                log.error("audio: %s", exc)
                self.conversation.report_fault(f"audio: {exc}")
                await asyncio.sleep(AUDIO_RETRY_S)
        self.conversation.playback = self.audio.speaker
        self.conversation.clear_fault()
        self.audio.start()
        pump = asyncio.create_task(self.audio.speaker.run(), name="speaker")
        try:
            async for frame in self.audio.microphone.frames():
                self.conversation.on_mic_frame(frame)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _tick(self) -> None:
        assert self.conversation is not None
        while True:
            await asyncio.sleep(TICK_S)
            self.conversation.tick()

    def _open_gpio(self, loop: asyncio.AbstractEventLoop) -> None:
        """The buttons and LEDs; failures are logged and the voice keeps working without them."""
        buttons = {name: b for name, b in button_sections(self.config).items() if b.enabled}
        if not (buttons or self.config.leds.enabled):
            return
        factory = self._pin_factory
        if factory is None:
            try:
                factory = make_pin_factory(self.config.hardware.pin_factory)
            except HardwareError as exc:
                log.error("%s", exc)
                return
        self.panel = Panel.open(
            buttons=buttons,
            leds=self.config.leds,
            push_to_talk=self.config.realtime.turn_detection.type == "none",
            loop=loop,
            on_action=self._on_button,
            pin_factory=factory,
        )

    def _on_button(self, action: ButtonAction) -> None:
        """A button gesture, as the action it is mapped to (on the event loop)."""
        assert self.conversation is not None
        self._emit(action.as_event())
        conversation = self.conversation
        match action.action, action.phase:
            case "talk", "start":
                conversation.on_button_pressed()
            case "talk", "end":
                conversation.on_button_released()
            case "converse", _:  # start / interrupt / end listening: what a press-and-release did before
                conversation.on_button_pressed()
                conversation.on_button_released()
            case _:
                log.warning("button: %r is not wired to the conversation yet", action.action)

    async def _shutdown(self) -> None:
        self.disconnect()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._session_task
        if self.audio is not None:
            self.audio.close()
        if self.panel is not None:
            with contextlib.suppress(Exception):
                self.panel.close()
        log.info("stopped")

    # ---- the Link the conversation uses ---------------------------------------------------------------

    def _loopback_endpoint(self) -> bool:
        return self.config.realtime.url.startswith(("ws://127.0.0.1", "ws://localhost", "ws://[::1]"))

    def connect(self) -> None:
        if self._session_task is None or self._session_task.done():
            self._session_task = asyncio.create_task(self._session_lifetime(self._generation), name="session")

    def disconnect(self) -> None:
        self._generation += 1
        if self._session_task is not None and not self._session_task.done():
            self._session_task.cancel()
        self._session_task = None

    async def _session_lifetime(self, generation: int) -> None:
        assert self.conversation is not None
        conversation = self.conversation

        def current() -> bool:
            return generation == self._generation

        key = self._api_key.value if self._api_key is not None else ("local" if self._loopback_endpoint() else None)
        if key is None:
            conversation.on_session_lost(self._key_problem, needs_person=True)
            return

        def on_event(event: ev.ServerEvent) -> None:
            if current():
                conversation.on_server_event(event)

        self._emit({"event": "session", "status": "connecting", "host": self.config.realtime.url})
        session = RealtimeSession(self.config.realtime, key, on_event)
        try:
            await session.open()
        except SessionError as exc:
            log.error("realtime: %s", exc.message)
            if current():
                conversation.on_session_lost(exc.message, needs_person=exc.needs_person)
            return
        self._session = session
        self._emit({"event": "session", "status": "open", "session_id": session.session_id})
        try:
            if current():
                conversation.on_session_ready(session)
            error = await session.wait_closed()
            log.warning("realtime: %s", error.message)
            if current():
                conversation.on_session_lost(error.message, needs_person=error.needs_person)
        finally:
            self._session = None
            await session.close()


__all__ = ["AudioPaths", "Daemon", "State"]
