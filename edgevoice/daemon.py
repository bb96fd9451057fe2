"""The composition root: builds every part from the configuration, wires them together, runs and stops them.

Leaves (`audio`, `realtime`, `hw`, `control`, `system`, `fleet`) know nothing of each other; this module connects them
to the `Conversation` state machine through callbacks and an `EventBus`:

    Panel (button gestures) ---------> Conversation ---> EventBus ---> Panel LEDs, ControlServer, journal...
    ControlServer (DaemonControl) ---> Conversation      (state, transcripts, usage, level, ...)
    SoundDevices: Microphone -> EchoFrontEnd ---> Conversation ---> SessionManager ---> RealtimeSession
    SessionManager (server events, link news) ---> Conversation ---> Speaker (SoundDevices)
    Speaker (started, drained, level) ----------> Conversation, EventBus
    EventBus ---> DeviceFleet (MQTT bridge, metrics textfile) ---> DaemonControl (commands, via the one table)

One task per I/O path: the microphone, the speaker's pump, the session manager (and its session's reader
and writer), the control socket's connections, the fleet's broker connection ([mqtt]), and a clock tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgevoice.audio.mixer import apply_mixer
from edgevoice.audio.sound_devices import WAKE_MS, AudioDeviceError, SoundDevices
from edgevoice.audio.xruns import XRuns, XRunWatch
from edgevoice.bus import Event, EventBus, Listener
from edgevoice.config import Config, button_sections
from edgevoice.control.server import ControlServer
from edgevoice.control.socketfile import SocketFileError
from edgevoice.conversation.machine import Conversation
from edgevoice.conversation.state import State
from edgevoice.device_control import DaemonControl
from edgevoice.hw.gestures import ButtonAction
from edgevoice.hw.gpio import HardwareError, make_pin_factory
from edgevoice.hw.panel import Panel
from edgevoice.realtime.carryover import CarryOver
from edgevoice.realtime.credentials import MissingSecret, SecretSource, secrets_for
from edgevoice.realtime.manager import LinkStatus, ManagerHooks, SessionManager, warm_up
from edgevoice.realtime.tools import ToolRegistry, command_tool
from edgevoice.realtime.usage import UsageMeter

if TYPE_CHECKING:
    from edgevoice.device_fleet import DeviceFleet

log = logging.getLogger(__name__)

TICK_S = 0.25
AUDIO_RETRY_S = 10.0
SHUTDOWN_S = 1.5
AUDIO_STALL_S = 2.0  # no microphone callback for this long: the audio path is dead (watchdog)
ECHO_MARGIN_S = 0.3  # after the speaker falls silent its echo comes back this much later, at most


class Daemon:
    """edgevoice running: sound, buttons and LEDs, the conversation and its sessions, the control socket."""

    def __init__(
        self,
        config: Config,
        *,
        secrets: SecretSource | None = None,
        pin_factory: Any | None = None,
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.bus = EventBus()
        self.tools = ToolRegistry()
        for tool in config.realtime.tools:
            self.tools.register(command_tool(tool))
        self.usage = UsageMeter(config.usage, config.realtime.model)
        self._secrets = secrets or secrets_for(config.realtime, on_secret)
        self._on_secret = on_secret
        self._pin_factory = pin_factory
        self.sound: SoundDevices | None = None
        self.panel: Panel | None = None  # buttons and status LEDs
        self.conversation: Conversation | None = None
        self.manager: SessionManager | None = None
        self.control: ControlServer | None = None
        self.fleet: DeviceFleet | None = None  # with [mqtt] or [metrics]
        self._volume = 1.0
        self._stopping: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._sound_up = asyncio.Event()
        self._sound_started_at = 0.0
        self._echo_tail_s = config.audio.echo_tail_ms / 1000 + ECHO_MARGIN_S
        self._xrun_watch = XRunWatch()
        self.failure = ""  # a task of the daemon that failed (what it was and why): the daemon stopped for it

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every device event from now on; returns the function that stops it."""
        return self.bus.subscribe(listener)

    @property
    def volume(self) -> float:
        return self._volume

    def set_volume(self, level: float) -> None:
        """The speaker's software volume, 0..1 (kept across a reopening of the sound devices)."""
        self._volume = min(1.0, max(0.0, float(level)))
        if self.sound is not None:
            self.sound.speaker.volume = self._volume
        self.bus.publish({"event": "volume", "level": self._volume})

    def xruns(self) -> XRuns | None:
        """The audio path's overflows and underflows since the sound devices opened (None until they are)."""
        return self.sound.xruns() if self.sound is not None else None

    @property
    def capture_seconds(self) -> float:
        """Seconds of microphone audio captured so far (the demo and tests pace themselves on it)."""
        return self.sound.captured_seconds if self.sound is not None else 0.0

    # ---- running -------------------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until `stop()`."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        conversation = self.conversation = self._build_conversation()
        self._open_panel(loop)
        self.bus.publish({"event": "state", "state": "idle", "previous": ""})
        try:
            self._tasks = [
                asyncio.create_task(self._run_sound(loop), name="audio"),
                asyncio.create_task(self._manager.run(), name="session-manager"),
                asyncio.create_task(self._tick(), name="tick"),
            ]
            for task in self._tasks:
                task.add_done_callback(self._on_task_done)
            if isinstance(self._secrets, MissingSecret):
                conversation.report_fault("key", self._secrets.problem)
            conversation.start()
            await self._start_control()
            self._start_fleet()
            if on_ready is not None:
                on_ready()
            await self._stopping.wait()
        finally:
            await self._shutdown()

    def warm_up(self) -> None:
        """Once ready, load what the first conversation and the first controller need, and the microphone's echo
        front end (in the background: nothing waits for it)."""
        self._tasks.append(asyncio.create_task(warm_up(), name="warm-up"))
        if self.sound is not None:
            self._tasks.append(asyncio.create_task(self.sound.prepare_echo(), name="echo-warm-up"))
        if self.control is not None:
            self._tasks.append(asyncio.create_task(self.control.warm_up(), name="control-warm-up"))

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        """The audio, the session manager and the tick run as long as the daemon: one that ends on an error would
        leave it deaf, mute or frozen while the PortAudio callbacks keep the watchdog happy. The daemon stops
        instead, and the service exits with an error, so that systemd starts it afresh."""
        if task.cancelled() or (exc := task.exception()) is None or self.failure:
            return
        self.failure = f"the {task.get_name()} task failed: {type(exc).__name__}: {exc}"
        message = "%s; stopping (systemd restarts edgevoice). Please report this with the traceback"
        log.critical(message, self.failure, exc_info=exc)
        self.stop()

    @property
    def _manager(self) -> SessionManager:
        assert self.manager is not None
        return self.manager

    def _build_conversation(self) -> Conversation:
        rt, publish = self.config.realtime, self.bus.publish

        def on_link(status: LinkStatus) -> None:
            conversation.on_link(status.state, status.message, needs_person=status.needs_person)

        hooks = ManagerHooks(
            on_event=lambda event: conversation.on_server_event(event),
            on_link=on_link,
            emit=publish,
            between_turns=lambda: conversation.between_turns,
        )
        carry = CarryOver(self.config.conversation.outage_buffer_s, self.config.audio.frame_ms)
        self.manager = SessionManager(rt, self._secrets, hooks, tools=self.tools, usage=self.usage, carry_over=carry)
        self.bus.subscribe(self._batch_uplink)
        conversation = Conversation(
            self.config.conversation,
            push_to_talk=rt.turn_detection.type == "none",
            server_interrupts=rt.turn_detection.interrupt_response,
            link=self.manager,
            emit=publish,
            frame_ms=self.config.audio.frame_ms,
        )
        return conversation

    async def _run_sound(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the sound devices (retrying while they are missing) and feed the microphone to the conversation."""
        conversation = self.conversation
        assert conversation is not None
        if self.config.mixer.controls:  # the board's routing and gains, before its devices open
            await asyncio.to_thread(apply_mixer, self.config.mixer)
        while True:
            try:
                sound = SoundDevices(
                    self.config.audio,
                    loop,
                    on_started=conversation.on_playback_started,
                    on_drained=conversation.on_playback_drained,
                    on_level=self._on_level,
                    mic_needed=self._mic_needed,
                )
                break
            except AudioDeviceError as exc:
                log.error("audio: %s", exc)
                conversation.report_fault("audio", f"audio: {exc}")
                await asyncio.sleep(AUDIO_RETRY_S)
        self.sound = sound
        sound.speaker.volume = self._volume
        mic = sound.microphone
        conversation.playback, conversation.preroll = sound.speaker, mic
        conversation.clear_fault("audio")
        unsubscribe = self.bus.subscribe(lambda event: mic.wake_up())  # what the microphone is needed for changed
        sound.start()
        self._sound_started_at = time.monotonic()
        self._sound_up.set()
        mic.wake_up()
        pump = asyncio.create_task(sound.speaker.run(), name="speaker")
        try:
            async for frame in mic.frames():
                sound.speaker.nudge()  # the speaker tops its ring up on the microphone's wakes: no wake of its own
                if frame.speech_started:
                    conversation.on_local_speech()
                if conversation.streaming:
                    conversation.on_mic_frame(frame.samples, voiced=frame.voiced)
                elif not conversation.muted:
                    mic.keep(frame)
        finally:
            unsubscribe()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _mic_needed(self) -> bool:
        """The microphone is cleaned while the conversation streams it, and while the speaker plays or its
        echo may still ring (the canceller follows the room; a press then has an echo-free pre-roll)."""
        if self.conversation is not None and self.conversation.streaming:
            return True
        return self.sound is not None and self.sound.speaker.quiet_for() < self._echo_tail_s

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.conversation is not None:
                self.conversation.tick()
            if self.sound is not None and (warning := self._xrun_watch.check(self.sound.xruns(), time.monotonic())):
                log.warning("%s", warning)

    def _open_panel(self, loop: asyncio.AbstractEventLoop) -> None:
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
        self.bus.subscribe(self._show_on_panel)

    def _batch_uplink(self, event: Event) -> None:
        """While the device speaks the microphone only serves the server's barge-in (the local detector stops the
        speaker at once): it goes in larger appends then, fewer messages for the same audio. Otherwise one
        append per wake of the microphone: its frames come together anyway."""
        if event["event"] == "state":
            speaking = event["state"] == "speaking"
            self._manager.batch_audio(self.config.realtime.speaking_append_ms if speaking else WAKE_MS)

    def _show_on_panel(self, event: Event) -> None:
        """The LEDs follow the device's state and its mute (never blocks, never raises for a broken LED)."""
        assert self.panel is not None
        if event["event"] == "state":
            pattern = self.panel.show(event["state"])
            if pattern is not None:
                self.bus.publish({"event": "led", "state": event["state"], "pattern": pattern})
        elif event["event"] == "mute":
            self.panel.set_muted(bool(event["muted"]))

    def _on_level(self, level: float) -> None:
        """The played speech's level, ~20 Hz while speaking: the LEDs follow it, controllers lip-sync to it."""
        if self.panel is not None:
            self.panel.set_level(level)
        self.bus.publish({"event": "level", "level": round(level, 3)})

    def _on_button(self, action: ButtonAction) -> None:
        self.bus.publish(action.as_event())
        if self.conversation is not None:
            self.conversation.on_gesture(action.action, action.phase, action.pressed_at)

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

    def _start_fleet(self) -> None:
        """The MQTT bridge and the metrics textfile, if configured (loaded only then: they weigh on a Pi)."""
        if self.config.mqtt.enabled or self.config.metrics.textfile:
            from edgevoice.device_fleet import DeviceFleet

            self.fleet = DeviceFleet(self, self._on_secret)
            self._tasks.append(asyncio.create_task(self.fleet.run(), name="fleet"))

    # ---- service supervision (systemd readiness and watchdog: edgevoice.service) ----------------------

    async def wait_audio(self) -> None:
        """Return once the sound devices are open and streaming."""
        await self._sound_up.wait()

    def audio_alive(self, stall_s: float = AUDIO_STALL_S) -> bool:
        """False once the microphone's callbacks have stopped for `stall_s` (PortAudio or the card hung)."""
        if self.sound is None:
            return True  # still opening: the retry loop runs on the event loop and reports why
        last = self.sound.capture.last_callback or self._sound_started_at
        return time.monotonic() - last < stall_s

    async def _shutdown(self) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                await self.control.close()  # says goodbye to controllers, at most about 1 s
        if self.sound is not None:
            self.sound.speaker.stop()  # silent at once; the session manager cancels the answer as it closes
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
        if self.sound is not None:
            self.sound.close()
        if self.panel is not None:
            with contextlib.suppress(Exception):
                self.panel.close()
        log.info("stopped")


__all__ = ["Daemon", "State"]
