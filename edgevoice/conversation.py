"""The conversation controller: the device's one state machine.

It takes every input (button edges, microphone frames, server events, playback progress, the clock) and
decides what the device does and which state it shows. It owns no I/O: it acts through three small
interfaces that the daemon plugs in (`Uplink` = the Realtime session, `Playback` = the speaker,
`Link` = whoever opens and closes sessions), and reports through `emit(event_dict)`. That keeps every
rule of the conversation in this one file, testable without sound cards or sockets.

Turn-taking follows `[realtime.turn_detection]`:
- `none` (push-to-talk): holding the button streams the microphone; releasing it commits the turn and
  asks for an answer. A press while the assistant talks interrupts it and starts a new turn.
- `server_vad` / `semantic_vad`: a press starts a conversation; the server finds the end of each turn.
  The microphone streams while the conversation is active (so the visitor can talk over the answer);
  after an answer the device listens for a follow-up for `follow_up_s`, then goes idle. A press while
  listening ends the conversation.
In both, the Realtime session (and the conversation's context) is kept until `idle_timeout_s` of
inactivity, so a quick follow-up keeps its context and a new visitor later starts fresh.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from edgevoice.config import ConversationSettings
from edgevoice.realtime import events as ev

log = logging.getLogger(__name__)

MIN_TURN_MS = 100  # the server refuses to commit less audio than this


class State(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    OFFLINE = "offline"
    ERROR = "error"


class Uplink(Protocol):
    """The open Realtime session, as the conversation uses it (sending never blocks)."""

    def append_audio(self, frame: np.ndarray) -> None: ...
    def commit_input(self) -> None: ...
    def clear_input(self) -> None: ...
    def create_response(self) -> None: ...
    def cancel_response(self) -> None: ...
    def truncate(self, item_id: str, audio_end_ms: int) -> None: ...


class Playback(Protocol):
    def push(self, item_id: str, samples: np.ndarray) -> None: ...
    def stop(self) -> float: ...
    def played_ms(self, item_id: str) -> float: ...
    def received_ms(self, item_id: str) -> float: ...
    @property
    def busy(self) -> bool: ...


class NullPlayback:
    """Playback while no speaker is open: plays nothing, never busy."""

    def push(self, item_id: str, samples: np.ndarray) -> None:
        pass

    def stop(self) -> float:
        return 0.0

    def played_ms(self, item_id: str) -> float:
        return 0.0

    def received_ms(self, item_id: str) -> float:
        return 0.0

    @property
    def busy(self) -> bool:
        return False


class Link(Protocol):
    """Opens and closes Realtime sessions; reports back through on_session_ready / on_session_lost."""

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...


class Conversation:
    def __init__(
        self,
        settings: ConversationSettings,
        *,
        push_to_talk: bool,
        server_interrupts: bool,
        link: Link,
        emit: Callable[[dict[str, Any]], None],
        playback: Playback | None = None,
        frame_ms: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.push_to_talk = push_to_talk
        self.server_interrupts = server_interrupts  # server VAD cancels the response on speech itself
        self.playback: Playback = playback or NullPlayback()  # the daemon plugs the speaker in once it is open
        self._link = link
        self._emit = emit
        self._frame_ms = frame_ms
        self._clock = clock
        self.state = State.IDLE
        self._uplink: Uplink | None = None
        self._connecting = False
        self._holding = False  # push-to-talk button is down
        self._turn_ms = 0  # audio sent (or buffered) in this user turn
        self._turn_started = 0.0
        self._turn_ended_at: float | None = None  # for the end-of-speech -> first-audio latency
        self._buffer: deque[np.ndarray] = deque(maxlen=max(1, int(settings.outage_buffer_s * 1000 / frame_ms)))
        self.buffer_dropped = 0
        self._response_id: str | None = None  # the response in flight (created, not done)
        self._ignored_responses: set[str] = set()  # interrupted: their late audio is dropped
        self._item_playing: str | None = None  # assistant item whose audio went to the speaker last
        self._follow_up_until: float | None = None
        self._last_activity = clock()

    # ---- state ---------------------------------------------------------------------------------------

    def _set_state(self, state: State, **detail: Any) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        log.info("state %s -> %s", previous, state)
        self._emit({"event": "state", "state": str(state), "previous": str(previous), **detail})

    def _touch(self) -> None:
        self._last_activity = self._clock()

    @property
    def in_conversation(self) -> bool:
        return self.state in (State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING)

    def start(self) -> None:
        """The device is up: connect now if the session is kept warm."""
        if self.settings.keep_warm:
            self._request_connect()

    def report_fault(self, message: str) -> None:
        """Something needs a person (no sound card, no key): show it until it is cleared."""
        self._emit({"event": "error", "code": "fault", "message": message})
        self._set_state(State.ERROR, reason=message)

    def clear_fault(self) -> None:
        if self.state == State.ERROR:
            self._set_state(State.IDLE)

    # ---- button --------------------------------------------------------------------------------------

    def on_button_pressed(self) -> None:
        self._touch()
        if self.state == State.MUTED:
            return
        if self.state in (State.THINKING, State.SPEAKING):
            self._interrupt(server_cancelled=False)
            self._start_turn()
        elif self.state == State.LISTENING and not self.push_to_talk:
            self._end_conversation("ended by the button")
        elif self.state in (State.IDLE, State.OFFLINE, State.ERROR, State.LISTENING):
            self._start_turn()
        else:  # CONNECTING: a press after a quick release keeps the same turn going
            self._holding = True

    def on_button_released(self) -> None:
        self._touch()
        self._holding = False
        if self.push_to_talk and self.state == State.LISTENING:
            self._end_turn()

    def _start_turn(self) -> None:
        self._holding = True
        self._turn_ms = 0
        self._turn_started = self._clock()
        self._follow_up_until = None
        self._buffer.clear()
        if self._uplink is not None:
            if self.push_to_talk:
                self._uplink.clear_input()  # nothing stale may slip into this turn
            self._set_state(State.LISTENING)
        else:
            self._set_state(State.CONNECTING)
            self._request_connect()

    def _end_turn(self) -> None:
        """Push-to-talk: the user let go. Commit the turn and ask for the answer."""
        if self._uplink is None:  # the session went away mid-turn (already reported)
            self._set_state(State.IDLE)
            return
        if self._turn_ms < MIN_TURN_MS:
            self._uplink.clear_input()
            self._emit(
                {
                    "event": "notice",
                    "message": f"turn too short ({self._turn_ms} ms): hold the button while talking",
                }
            )
            self._set_state(State.IDLE)
            return
        self._uplink.commit_input()
        self._uplink.create_response()
        self._turn_ended_at = self._clock()
        self._set_state(State.THINKING)

    # ---- microphone ----------------------------------------------------------------------------------

    def _streaming(self) -> bool:
        if self.push_to_talk:
            return self._holding and self.state in (State.CONNECTING, State.LISTENING)
        return self.in_conversation

    def on_mic_frame(self, frame: np.ndarray) -> None:
        if not self._streaming():
            return
        if self._uplink is None:
            if len(self._buffer) == self._buffer.maxlen:
                self.buffer_dropped += 1
            self._buffer.append(frame)
        else:
            self._uplink.append_audio(frame)
        if self.state in (State.CONNECTING, State.LISTENING):
            self._turn_ms += self._frame_ms

    # ---- the session ---------------------------------------------------------------------------------

    def _request_connect(self) -> None:
        if not self._connecting:
            self._connecting = True
            self._link.connect()

    def on_session_ready(self, uplink: Uplink) -> None:
        self._connecting = False
        self._uplink = uplink
        self._touch()
        if self._buffer:
            log.info("sending %d ms of audio captured while connecting", len(self._buffer) * self._frame_ms)
            while self._buffer:
                uplink.append_audio(self._buffer.popleft())
        if self.buffer_dropped:
            self._emit({"event": "notice", "message": f"{self.buffer_dropped} audio frames dropped while connecting"})
            self.buffer_dropped = 0
        if self.state == State.CONNECTING:
            if self.push_to_talk and not self._holding:
                self._end_turn()
            else:
                self._set_state(State.LISTENING)
        elif self.state in (State.OFFLINE, State.ERROR):
            self._set_state(State.IDLE)

    def on_session_lost(self, message: str, *, needs_person: bool) -> None:
        """The session ended, or never opened (not called when we closed it ourselves)."""
        self._connecting = False
        self._uplink = None
        self._response_id = None
        if self._buffer:
            self._emit({"event": "notice", "message": f"{len(self._buffer) * self._frame_ms} ms of audio lost"})
            self._buffer.clear()
        self._emit({"event": "error", "code": "session_lost", "message": message})
        if needs_person:
            self._set_state(State.ERROR, reason=message)
        elif self.in_conversation or self.state == State.OFFLINE:
            self._set_state(State.OFFLINE, reason=message)

    def on_server_event(self, event: ev.ServerEvent) -> None:
        match event:
            case ev.AudioDelta(response_id=rid, item_id=item, samples=samples):
                if rid not in self._ignored_responses and self.state in (State.THINKING, State.SPEAKING):
                    self._item_playing = item
                    self.playback.push(item, samples)
            case ev.SpeechStarted():
                self._touch()
                if not self.push_to_talk and self.state in (State.THINKING, State.SPEAKING):
                    self._interrupt(server_cancelled=self.server_interrupts)
                if not self.push_to_talk and self.in_conversation:
                    self._follow_up_until = None
                    self._set_state(State.LISTENING)
            case ev.SpeechStopped():
                if not self.push_to_talk and self.state == State.LISTENING:
                    self._turn_ended_at = self._clock()
                    self._set_state(State.THINKING)
            case ev.ResponseCreated(response_id=rid):
                self._response_id = rid
            case ev.ResponseDone():
                self._on_response_done(event)
            case ev.Transcript(role=role, item_id=item, text=text, final=final):
                self._touch()
                if final:
                    log.debug("%s said: %s", role, text)
                self._emit({"event": "transcript", "role": role, "item_id": item, "text": text, "final": final})
            case ev.ServerError(code=code, message=message):
                log.warning("server error %s: %s", code, message)
                self._emit({"event": "error", "code": code or "server_error", "message": message})
            case _:
                pass

    def _on_response_done(self, done: ev.ResponseDone) -> None:
        self._touch()
        if done.response_id == self._response_id:
            self._response_id = None
        if done.status == "failed":
            message = done.error_message or "the response failed"
            self._emit({"event": "error", "code": done.error_code or "response_failed", "message": message})
        if done.response_id in self._ignored_responses:
            self._ignored_responses.discard(done.response_id)
            return
        if self.state in (State.THINKING, State.SPEAKING) and not self.playback.busy:
            self._answer_finished()

    # ---- playback ------------------------------------------------------------------------------------

    def on_playback_started(self, item_id: str) -> None:
        if self.state == State.THINKING:
            if self._turn_ended_at is not None:
                ms = round((self._clock() - self._turn_ended_at) * 1000)
                self._emit({"event": "latency", "what": "end of speech to first answer audio", "ms": ms})
                self._turn_ended_at = None
            self._set_state(State.SPEAKING)

    def on_playback_drained(self) -> None:
        if self.state == State.SPEAKING and self._response_id is None:
            self._answer_finished()

    def _answer_finished(self) -> None:
        self._touch()
        self._item_playing = None
        if self.push_to_talk:
            self._set_state(State.IDLE)
        else:
            self._follow_up_until = self._clock() + self.settings.follow_up_s
            self._set_state(State.LISTENING)

    def _interrupt(self, *, server_cancelled: bool) -> None:
        """Barge-in: silence the speaker now, tell the server what was heard, stop the answer."""
        item = self._item_playing
        if item is not None:
            played, received = self.playback.played_ms(item), self.playback.received_ms(item)
            # Finished = no more audio coming and all of it played. (Not `busy`: when the server streams
            # at real time the speaker runs dry between chunks while the answer is far from over.)
            finished = self._response_id is None and played >= received
            self.playback.stop()
            if not finished:
                heard = int(min(played, received))
                if self._uplink is not None:
                    self._uplink.truncate(item, heard)
                self._emit({"event": "interrupted", "item_id": item, "played_ms": heard})
        if self._response_id is not None:
            self._ignored_responses.add(self._response_id)
            if not server_cancelled and self._uplink is not None:
                self._uplink.cancel_response()
            self._response_id = None
        self._item_playing = None

    # ---- time ----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Called a few times a second: follow-up window, stuck buttons, idle timeout."""
        now = self._clock()
        if self.state == State.LISTENING:
            if self._follow_up_until is not None and now > self._follow_up_until:
                self._follow_up_until = None
                self._set_state(State.IDLE)
            elif self.push_to_talk and now - self._turn_started > self.settings.max_turn_s:
                self._emit({"event": "notice", "message": "turn longer than max_turn_s: answering now"})
                self._holding = False
                self._end_turn()
        if (
            self._uplink is not None
            and self.state == State.IDLE
            and now - self._last_activity > self.settings.idle_timeout_s
        ):
            self._end_conversation("idle timeout")

    def _end_conversation(self, why: str) -> None:
        """Forget the conversation: close the session (a new visitor starts fresh)."""
        log.info("conversation ended (%s)", why)
        if self.playback.busy:
            self.playback.stop()
        self._uplink = None
        self._response_id = None
        self._holding = False
        self._follow_up_until = None
        self._set_state(State.IDLE)
        self._emit({"event": "conversation_ended", "reason": why})
        self._link.disconnect()
        if self.settings.keep_warm:
            self._request_connect()
