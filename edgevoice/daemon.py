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
import time
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
from edgevoice.audio.duplex import EchoFrontEnd
from edgevoice.audio.microphone import Microphone
from edgevoice.audio.speaker import Speaker
from edgevoice.config import Config, button_sections
from edgevoice.control.server import ControlServer
from edgevoice.control.socketfile import SocketFileError
from edgevoice.conversation import Conversation, State
from edgevoice.device_control import DaemonControl
from edgevoice.hw.gestures import ButtonAction
from edgevoice.hw.gpio import HardwareError, make_pin_factory
from edgevoice.hw.panel import Panel
from edgevoice.realtime import events as ev
from edgevoice.realtime.credentials import (
    ApiKeySecret,
    CredentialsError,
    EphemeralSecrets,
    MissingSecret,
    StaticSecret,
    load_api_key,
    load_device_token,
)
from edgevoice.realtime.manager import LinkStatus, SecretSource, SessionManager
from edgevoice.realtime.tools import ToolRegistry, command_tool
from edgevoice.realtime.usage import UsageMeter

log = logging.getLogger(__name__)

TICK_S = 0.25
AUDIO_RETRY_S = 10.0
SHUTDOWN_S = 1.5
AUDIO_STALL_S = 2.0  # no microphone callback for this long: the audio path is dead (watchdog)
EventListener = Callable[[dict[str, Any]], None]


def is_loopback(url: str) -> bool:
    return url.startswith(("ws://127.0.0.1", "ws://localhost", "ws://[::1]"))


def secrets_for(config: Config, on_secret: Callable[[str], None] | None = None) -> SecretSource:
    """Where the session manager gets its credentials: a token service, the API key, or nothing (loopback)."""
    rt = config.realtime
    if rt.token_url:
        return EphemeralSecrets(rt.token_url, load_device_token())
    if is_loopback(rt.url):
        return StaticSecret("local")  # the local emulator takes any key
    try:
        key = load_api_key(rt.api_key_file)
    except CredentialsError as exc:
        log.error("%s", exc)
        return MissingSecret(str(exc))
    if on_secret is not None:
        on_secret(key.value)
    log.info("API key from %s", key.source)
    return ApiKeySecret(rt.api_key_file, on_secret)


async def _problem(secrets: MissingSecret) -> str:
    try:
        await secrets.secret()
    except CredentialsError as exc:
        return str(exc)
    return ""


class AudioPaths:
    """The open sound devices: PortAudio, the capture and playback streams and their adapters."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, speaker_callbacks: dict[str, Any]):
        audio = config.audio
        self.pa = open_portaudio()
        try:
            devices = list_devices(self.pa)
            mic_dev = find_device(devices, audio.input_device, "input")
            spk_dev = find_device(devices, audio.output_device, "output")
            mic_fmt = negotiate_format(
                self.pa, mic_dev, "input", audio.input_rate, audio.input_channels, audio.sample_format
            )
            spk_fmt = negotiate_format(
                self.pa, spk_dev, "output", audio.output_rate, audio.output_channels, audio.sample_format
            )
            self.capture = CaptureStream(self.pa, mic_fmt, mic_fmt.rate * audio.frame_ms // 1000, loop)
            # The tap hands the echo canceller exactly what the speaker played.
            self.playback = PlaybackStream(self.pa, spk_fmt, spk_fmt.rate * audio.frame_ms // 1000, tap_seconds=1.0)
        except BaseException:
            self.pa.terminate()
            raise
        self.microphone = Microphone(self.capture, audio.input_channel, audio.frame_ms)
        # Kept as long as the streams: the room the canceller has learnt survives between turns and sessions.
        self.front = EchoFrontEnd(audio, self.playback, frame_samples=24000 * audio.frame_ms // 1000)
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
        secrets: SecretSource | None = None,
        pin_factory: Any | None = None,
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._secrets = secrets or secrets_for(config, on_secret)
        self._pin_factory = pin_factory
        self._listeners: list[EventListener] = []
        self.audio: AudioPaths | None = None
        self.panel: Panel | None = None  # buttons and status LEDs
        self.tools = ToolRegistry()
        for tool in config.realtime.tools:
            self.tools.register(command_tool(tool))
        self.usage = UsageMeter(config.usage, config.realtime.model)
        self.conversation: Conversation | None = None
        self.manager: SessionManager | None = None
        self._stopping: asyncio.Event | None = None
        self.control: ControlServer | None = None
        self._volume = 1.0
        self._tasks: list[asyncio.Task[Any]] = []
        self._audio_up = asyncio.Event()
        self._audio_started_at = 0.0

    # ---- events out ----------------------------------------------------------------------------------

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Hear every event from now on; returns the function that stops it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    @property
    def volume(self) -> float:
        return self._volume

    def set_volume(self, level: float) -> None:
        """The speaker's software volume, 0..1 (kept across a reopening of the sound devices)."""
        self._volume = min(1.0, max(0.0, float(level)))
        if self.audio is not None:
            self.audio.speaker.volume = self._volume
        self._emit({"event": "volume", "level": self._volume})

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "state" and self.panel is not None:
            pattern = self.panel.show(event["state"])  # never blocks, never raises for a broken LED
            if pattern is not None:
                self._emit({"event": "led", "state": event["state"], "pattern": pattern})
        elif event.get("event") == "mute" and self.panel is not None:
            self.panel.set_muted(bool(event["muted"]))
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

        def on_link(status: LinkStatus) -> None:
            if self.conversation is not None:
                self.conversation.on_link(status.state, status.message, needs_person=status.needs_person)

        def on_server_event(event: ev.ServerEvent) -> None:
            if self.conversation is not None:
                self.conversation.on_server_event(event)

        self.manager = SessionManager(
            rt,
            self._secrets,
            tools=self.tools,
            on_event=on_server_event,
            on_link=on_link,
            emit=self._emit,
            usage=self.usage,
            between_turns=lambda: self.conversation is None or self.conversation.between_turns,
            outage_buffer_s=self.config.conversation.outage_buffer_s,
            frame_ms=self.config.audio.frame_ms,
        )
        self.conversation = Conversation(
            self.config.conversation,
            push_to_talk=rt.turn_detection.type == "none",
            server_interrupts=rt.turn_detection.interrupt_response,
            link=self.manager,
            emit=self._emit,
            frame_ms=self.config.audio.frame_ms,
        )
        self._open_gpio(loop)
        self._emit({"event": "state", "state": "idle", "previous": ""})
        try:
            self._tasks = [
                asyncio.create_task(self._run_audio(loop), name="audio"),
                asyncio.create_task(self.manager.run(), name="session-manager"),
                asyncio.create_task(self._tick(), name="tick"),
            ]
            if isinstance(self._secrets, MissingSecret):
                self.conversation.report_fault("key", await _problem(self._secrets))
            self.conversation.start()
            await self._start_control()
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
            "on_level": self._on_level,
        }
        while True:
            try:
                self.audio = AudioPaths(self.config, loop, callbacks)
                break
            except AudioDeviceError as exc:
                log.error("audio: %s", exc)
                self.conversation.report_fault("audio", f"audio: {exc}")
                await asyncio.sleep(AUDIO_RETRY_S)
        self.audio.speaker.volume = self._volume
        self.conversation.playback = self.audio.speaker
        self.conversation.clear_fault("audio")
        self.audio.start()
        self._audio_started_at = time.monotonic()
        self._audio_up.set()
        pump = asyncio.create_task(self.audio.speaker.run(), name="speaker")
        try:
            front = self.audio.front
            async for frame in self.audio.microphone.frames():
                cleaned, speech_started = front.process(frame)
                if speech_started:
                    self.conversation.on_local_speech()
                self.conversation.on_mic_frame(cleaned)
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

    def _on_level(self, level: float) -> None:
        """The played speech's level, ~20 Hz while speaking: the LEDs follow it, controllers lip-sync to it."""
        if self.panel is not None:
            self.panel.set_level(level)
        self._emit({"event": "level", "level": round(level, 3)})

    def _on_button(self, action: ButtonAction) -> None:
        """A button gesture, as the action it is mapped to (on the event loop)."""
        assert self.conversation is not None
        self._emit(action.as_event())
        conversation = self.conversation
        match action.action, action.phase:
            case "talk", "start":
                conversation.on_button_pressed(pressed_at=action.pressed_at)
            case "talk", "end":
                conversation.on_button_released()
            case "converse", _:
                conversation.on_converse()
            case "end", _:
                conversation.end_conversation("ended by the button")
            case "mute", _:
                conversation.set_muted(not conversation.muted)

    # ---- service supervision (systemd readiness and watchdog: edgevoice.service) ----------------------

    async def wait_audio(self) -> None:
        """Return once the sound devices are open and streaming."""
        await self._audio_up.wait()

    def audio_alive(self, stall_s: float = AUDIO_STALL_S) -> bool:
        """False once the microphone's callbacks have stopped for `stall_s` (PortAudio or the card hung)."""
        if self.audio is None:
            return True  # still opening: the retry loop runs on the event loop and reports why
        last = self.audio.capture.last_callback or self._audio_started_at
        return time.monotonic() - last < stall_s

    async def _start_control(self) -> None:
        """The control socket for local controllers; without it the voice keeps working (the log says why)."""
        if not self.config.control.enabled:
            return
        server = ControlServer(self.config.control, DaemonControl(self))
        try:
            await server.start()
        except SocketFileError as exc:
            log.error("control socket: %s; robots cannot drive this device until it is fixed", exc)
            return
        self.control = server

    async def _shutdown(self) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                await self.control.close()  # says goodbye to controllers, at most about 1 s
        if self.audio is not None:
            self.audio.speaker.stop()  # silent at once; the session manager cancels the answer as it closes
        for task in self._tasks:
            task.cancel()
        # The session manager's last act (cancel the answer, close with 1000) gets a bounded moment: a server
        # that never answers our close must not hold the service past systemd's stop timeout.
        done, pending = await asyncio.wait(self._tasks, timeout=SHUTDOWN_S) if self._tasks else (set(), set())
        for task in done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        if pending:
            log.warning("stopping without waiting for %s", ", ".join(t.get_name() for t in pending))
        if self.audio is not None:
            self.audio.close()
        if self.panel is not None:
            with contextlib.suppress(Exception):
                self.panel.close()
        log.info("stopped")


__all__ = ["AudioPaths", "Daemon", "State"]
