"""The conversation controller: the device's one state machine.

It takes every input (button edges, microphone frames, server events, link status, playback progress, the
clock) and decides what the device does and which state it shows. It owns no I/O: it acts through small
interfaces the daemon plugs in (`Uplink` + `Link` = the session manager, `Playback` = the speaker) and
reports through `emit(event_dict)`. Every rule of the conversation is in this one file.

Turn-taking follows `[realtime.turn_detection]`:
- `none` (push-to-talk): holding the button streams the microphone; releasing it commits the turn and
  asks for an answer. A press while the assistant talks interrupts it and starts a new turn.
- `server_vad` / `semantic_vad`: a press starts a conversation; the server finds the end of each turn.
  The microphone streams while the conversation is active (so the visitor can talk over the answer);
  after an answer the device listens for a follow-up for `follow_up_s`, then goes idle. A press while
  listening ends the conversation.
The conversation (and its context) lasts until `idle_timeout_s` without activity; then it is forgotten,
so a new visitor starts fresh, and an idle device holds no connection.

What the device shows is derived, in `_displayed()`, from the conversational phase (idle, listening,
thinking, speaking), the link (connecting, up, down) and faults that need a person.
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
PREROLL_MS = 600  # microphone audio kept while not streaming: a turn can start from the moment of the press


class State(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    OFFLINE = "offline"
    ERROR = "error"


class NotNow(Exception):
    """A request that does not fit the moment (a controller's `stop` while nothing listens, say)."""


class Uplink(Protocol):
    """What the conversation sends; never blocks, survives reconnects (the session manager)."""

    def append_audio(self, frame: np.ndarray) -> None: ...
    def commit_input(self) -> None: ...
    def clear_input(self) -> None: ...
    def create_response(self, instructions: str | None = None) -> None: ...
    def send_text(self, text: str) -> None: ...
    def send_image(self, image_url: str, prompt: str | None = None) -> None: ...
    def cancel_response(self) -> None: ...
    def truncate(self, item_id: str, audio_end_ms: int) -> None: ...


class Link(Uplink, Protocol):
    """The session manager: the uplink, plus whether a conversation wants a session at all."""

    def connect(self) -> None: ...
    def disconnect(self, *, forget: bool = True) -> None: ...
    def refusal(self) -> str | None: ...


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
        self.state = State.IDLE  # what the device shows (derived)
        self.phase = State.IDLE  # where the conversation is: IDLE, LISTENING, THINKING or SPEAKING
        self._open = False  # a conversation is going on (its context is kept until the idle timeout)
        self._wanted = False  # we asked the link for a session
        self._link_state = "down"
        self._link_was_up = False  # up at least once since this conversation started
        self._link_needs_person: str | None = None
        self._link_down_since: float | None = None
        self._faults: dict[str, str] = {}  # what needs a person, by origin ("audio", "key", "budget")
        self.muted = False  # privacy mute: the microphone's audio goes nowhere
        self._preroll: deque[tuple[float, np.ndarray]] = deque(maxlen=max(1, PREROLL_MS // frame_ms))
        self._holding = False  # push-to-talk button is down
        self._turn_ms = 0
        self._turn_started = 0.0
        self._turn_ended_at: float | None = None  # for the end-of-speech -> first-audio latency
        self._speech = False  # server VAD heard speech not yet committed
        self._response_id: str | None = None
        self._ignored_responses: set[str] = set()  # interrupted: their late audio is dropped
        self._awaiting_tools = False
        self._expecting = 0  # answers this conversation asked for that have not started yet
        self._item_playing: str | None = None
        self._follow_up_until: float | None = None
        self._last_activity = clock()

    # ---- what the device shows ----------------------------------------------------------------------

    def _displayed(self) -> State:
        if self._faults or self._link_needs_person:
            return State.ERROR
        if self.muted and self.phase in (State.IDLE, State.LISTENING):
            return State.MUTED
        if self.phase == State.IDLE:
            kept_warm_but_down = self.settings.keep_warm and self._link_down_since is not None
            return State.OFFLINE if kept_warm_but_down else State.IDLE
        if self._link_state == "up":
            return self.phase
        if not self._link_was_up and self._link_down_since is None:
            return State.CONNECTING
        return State.OFFLINE

    def _refresh(self) -> None:
        state = self._displayed()
        if state == self.state:
            return
        previous, self.state = self.state, state
        log.info("state %s -> %s", previous, state)
        detail: dict[str, Any] = {}
        if state == State.ERROR:
            detail["reason"] = "; ".join([*self._faults.values(), *filter(None, [self._link_needs_person])])
        self._emit({"event": "state", "state": str(state), "previous": str(previous), **detail})

    def _set_phase(self, phase: State) -> None:
        self.phase = phase
        self._refresh()

    def _touch(self) -> None:
        self._last_activity = self._clock()

    @property
    def between_turns(self) -> bool:
        """Nobody is talking and nothing is being answered (a session may be swapped now)."""
        if self.phase == State.IDLE:
            return True
        return not self.push_to_talk and self.phase == State.LISTENING and not self._speech

    # ---- faults that need a person ------------------------------------------------------------------

    def start(self) -> None:
        """The device is up: connect now if the session is kept warm."""
        self._refresh()
        if self.settings.keep_warm:
            self._want_link()

    def _want_link(self) -> None:
        if not self._wanted:
            self._wanted = True
            self._link.connect()

    def _release_link(self, *, forget: bool) -> None:
        self._wanted = False
        self._link.disconnect(forget=forget)
        self._link_down_since = None

    def report_fault(self, origin: str, message: str) -> None:
        """Something needs a person (no sound card, no key): show it until it is cleared."""
        if self._faults.get(origin) != message:
            self._faults[origin] = message
            self._emit({"event": "error", "code": f"{origin}_fault", "message": message})
        self._refresh()

    def clear_fault(self, origin: str) -> None:
        if self._faults.pop(origin, None) is not None:
            self._refresh()

    # ---- button --------------------------------------------------------------------------------------

    def on_button_pressed(self, pressed_at: float | None = None) -> None:
        """Push-to-talk starts (or, with a VAD, a press toggles the conversation). `pressed_at`: when the
        finger went down, if that was earlier than now (a hold is only known to be one after `hold_ms`)."""
        self._touch()
        if not self._may_talk():
            return
        if self.phase in (State.THINKING, State.SPEAKING):
            self._interrupt(server_cancelled=False)
            self._start_turn(pressed_at)
        elif self.phase == State.LISTENING and not self.push_to_talk:
            self._end_conversation("ended by the button")
        else:
            self._start_turn(pressed_at)

    def on_converse(self) -> None:
        """A tap: start a conversation, interrupt the answer, or end listening (what depends on the moment)."""
        self._touch()
        if not self._may_talk():
            return
        if self.phase in (State.THINKING, State.SPEAKING):
            self._stop_answer()
        elif self.phase == State.LISTENING:
            if self.push_to_talk:
                self._end_turn()
            else:
                self._end_conversation("ended by the button")
        elif self.push_to_talk:
            self._emit({"event": "notice", "message": "hold the button while talking"})
        else:
            self._start_turn()

    def end_conversation(self, why: str = "ended by the user") -> None:
        """Forget the conversation now (the `end` gesture, a controller's `end`)."""
        self._touch()
        if self._open or self.phase != State.IDLE:
            if self.phase in (State.THINKING, State.SPEAKING):
                self._interrupt(server_cancelled=False)
            self._end_conversation(why)

    def set_muted(self, muted: bool) -> None:
        """Privacy mute: from now on the microphone's audio goes nowhere (not even the pre-roll)."""
        if muted == self.muted:
            return
        self.muted = muted
        self._preroll.clear()
        if muted and self.phase == State.LISTENING:
            self._link.clear_input()  # what was said in this turn is not sent either
            self._holding = False
            self._set_phase(State.IDLE)
        log.info("microphone %s", "muted" if muted else "unmuted")
        self._emit({"event": "mute", "muted": muted})
        self._refresh()

    def _ask(self, instructions: str | None = None) -> None:
        self._expecting += 1
        self._link.create_response(instructions)

    # ---- a controller's commands (the control socket) -------------------------------------------------

    def _check(self, *, microphone: bool) -> None:
        """Raise NotNow when nothing can be said now (and, with `microphone`, nothing heard)."""
        if self._faults or self._link_needs_person:
            raise NotNow(f"the device needs a person: {self._displayed_reason()}")
        if microphone and self.muted:
            raise NotNow("the microphone is muted: unmute it first")
        refusal = self._link.refusal()
        if refusal is not None:
            self.report_fault("budget", refusal)
            raise NotNow(refusal)

    def _open_conversation(self) -> None:
        self._touch()
        if not self._open:
            self._open = True
            self._link_was_up = self._link_state == "up"
        if not self._wanted:
            self._link_down_since = None
            self._want_link()

    def listen(self) -> None:
        """Start listening, as a press would (push-to-talk: until `stop_listening`)."""
        self._check(microphone=True)
        if self.phase == State.LISTENING and (self._holding or not self.push_to_talk):
            return
        if self.phase in (State.THINKING, State.SPEAKING):
            self._interrupt(server_cancelled=False)
        self._start_turn()

    def stop_listening(self) -> None:
        """End the user's turn now: commit what was said and ask for the answer."""
        if self.phase != State.LISTENING:
            raise NotNow(f"not listening (the device is {self.state})")
        self._holding = False
        if self.push_to_talk:
            self._end_turn()
            return
        self._link.commit_input()
        self._ask()
        self._turn_ended_at = self._clock()
        self._set_phase(State.THINKING)

    def cancel(self) -> None:
        """Interrupt the assistant."""
        if self.phase not in (State.THINKING, State.SPEAKING):
            raise NotNow(f"nothing to cancel: the assistant is not answering (the device is {self.state})")
        self._stop_answer()

    def _stop_answer(self) -> None:
        """Interrupt the answer; then idle (push-to-talk) or listening for a follow-up (VAD)."""
        self._interrupt(server_cancelled=False)
        if self.push_to_talk:
            self._set_phase(State.IDLE)
        else:
            self._follow_up_until = self._clock() + self.settings.follow_up_s
            self._set_phase(State.LISTENING)

    def say(self, text: str) -> None:
        """The user's words as text (no microphone needed), then the answer."""
        self._check(microphone=False)
        if self.phase in (State.THINKING, State.SPEAKING):
            self._interrupt(server_cancelled=False)
        self._open_conversation()
        if self.phase == State.LISTENING:
            self._link.clear_input()
            self._holding = False
        self._link.send_text(text)
        self._ask()
        self._turn_ended_at = self._clock()
        self._set_phase(State.THINKING)

    def speak(self, text: str) -> None:
        """Make the assistant say `text` as written, after what it is saying now."""
        self._check(microphone=False)
        self._open_conversation()
        self._ask(f"Say exactly the following, word for word, in your voice, and nothing else: {text}")
        if self.phase in (State.IDLE, State.LISTENING) and not self._speech and not self._holding:
            self._set_phase(State.THINKING)

    def image(self, image_url: str, prompt: str | None) -> None:
        """A picture into the conversation; with a prompt, the assistant answers about it."""
        self._check(microphone=False)
        self._open_conversation()
        self._link.send_image(image_url, prompt)
        if prompt:
            if self.phase in (State.THINKING, State.SPEAKING):
                self._interrupt(server_cancelled=False)
            self._ask()
            self._turn_ended_at = self._clock()
            self._set_phase(State.THINKING)

    @property
    def reason(self) -> str:
        """Why the device shows `error` ("" otherwise)."""
        return self._displayed_reason() if self.state == State.ERROR else ""

    @property
    def conversation_open(self) -> bool:
        return self._open

    def _may_talk(self) -> bool:
        if self._faults or self._link_needs_person:
            self._emit({"event": "notice", "message": f"cannot talk now: {self._displayed_reason()}"})
            return False
        if self.muted:
            self._emit({"event": "notice", "message": "the microphone is muted: unmute it to talk"})
            return False
        return True

    def on_button_released(self) -> None:
        self._touch()
        self._holding = False
        if self.push_to_talk and self.phase == State.LISTENING:
            self._end_turn()

    def _displayed_reason(self) -> str:
        return "; ".join([*self._faults.values(), *filter(None, [self._link_needs_person])])

    def _start_turn(self, since: float | None = None) -> None:
        refusal = self._link.refusal()
        if refusal is not None:
            self.report_fault("budget", refusal)
            return
        self._holding = True
        self._turn_ms = 0
        self._turn_started = self._clock()
        self._follow_up_until = None
        if not self._open:
            self._open = True
            self._link_was_up = self._link_state == "up"
        if not self._wanted:
            self._link_down_since = None
            self._want_link()
        if self.push_to_talk:
            self._link.clear_input()  # nothing stale may slip into this turn
        if since is not None:  # the audio since the finger went down, from the pre-roll
            for at, frame in self._preroll:
                if at >= since:
                    self._link.append_audio(frame)
                    self._turn_ms += self._frame_ms
        self._preroll.clear()
        self._set_phase(State.LISTENING)

    def _end_turn(self) -> None:
        """Push-to-talk: the user let go. Commit the turn and ask for the answer."""
        if self._turn_ms < MIN_TURN_MS:
            self._link.clear_input()
            message = f"turn too short ({self._turn_ms} ms): hold the button while talking"
            self._emit({"event": "notice", "message": message})
            self._set_phase(State.IDLE)
            return
        self._link.commit_input()
        self._ask()
        self._turn_ended_at = self._clock()
        self._set_phase(State.THINKING)

    # ---- microphone ----------------------------------------------------------------------------------

    def on_mic_frame(self, frame: np.ndarray) -> None:
        if self.muted:
            return
        if self.push_to_talk:
            streaming = self._holding and self.phase == State.LISTENING
        else:
            streaming = self._open and self.phase != State.IDLE
        if not streaming:
            # Arrival time: the frame ends now, so it began a frame earlier.
            self._preroll.append((self._clock() - self._frame_ms / 1000, frame))
            return
        self._link.append_audio(frame)
        if self.phase == State.LISTENING:
            self._turn_ms += self._frame_ms

    def on_local_speech(self) -> None:
        """The device's own voice detector heard a visitor (on the echo-cancelled microphone).

        With a VAD, that is a barge-in: stop the answer now, within a frame or two, rather than when the
        server's `speech_started` arrives (hundreds of ms later); the server then takes the turn as usual.
        In push-to-talk the button is the only way to take a turn.
        """
        if self.push_to_talk or not self._open or self.muted:
            return
        if self.phase == State.SPEAKING or (self.phase == State.THINKING and self.playback.busy):
            log.info("local barge-in: a visitor talks over the answer")
            self._interrupt(server_cancelled=False)
            self._follow_up_until = None
            self._set_phase(State.LISTENING)

    # ---- the link ------------------------------------------------------------------------------------

    def on_link(self, state: str, message: str = "", *, needs_person: bool = False) -> None:
        """The session manager's news: "connecting", "up" or "down" (with why, and whether a person must act)."""
        self._link_state = state
        if state == "up":
            self._link_was_up = True
            self._link_needs_person = None
            self._link_down_since = None
        elif state == "down":
            self._emit({"event": "error", "code": "link_down", "message": message})
            self._link_needs_person = message if needs_person else None
            if self._link_down_since is None:
                self._link_down_since = self._clock()
            if self.phase == State.IDLE and self._wanted and not needs_person and not self.settings.keep_warm:
                # Nobody is talking: reconnect at the next press (the context is kept until the idle timeout).
                self._release_link(forget=False)
        self._refresh()

    # ---- the server ----------------------------------------------------------------------------------

    def on_server_event(self, event: ev.ServerEvent) -> None:
        match event:
            case ev.AudioDelta(response_id=rid, item_id=item, samples=samples):
                if rid not in self._ignored_responses and self.phase in (State.THINKING, State.SPEAKING):
                    self._item_playing = item
                    self.playback.push(item, samples)
            case ev.SpeechStarted():
                self._touch()
                self._speech = True
                if not self.push_to_talk and self.phase in (State.THINKING, State.SPEAKING):
                    self._interrupt(server_cancelled=self.server_interrupts)
                if not self.push_to_talk and self.phase != State.IDLE:
                    self._follow_up_until = None
                    self._set_phase(State.LISTENING)
            case ev.SpeechStopped():
                self._speech = False
                if not self.push_to_talk and self.phase == State.LISTENING:
                    self._turn_ended_at = self._clock()
                    self._set_phase(State.THINKING)
            case ev.InputCommitted():
                self._speech = False
            case ev.ResponseCreated(response_id=rid):
                self._response_id = rid
                self._awaiting_tools = False
                if self._expecting:
                    self._expecting -= 1
                    if self.phase == State.IDLE or (self.phase == State.LISTENING and not self._speech):
                        self._set_phase(State.THINKING)  # e.g. a controller's `speak` queued behind an answer
            case ev.ResponseDone():
                self._on_response_done(event)
            case ev.FunctionCall(name=name, call_id=call_id, arguments=arguments):
                self._emit({"event": "tool_call", "call_id": call_id, "name": name, "arguments": arguments})
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
        if done.function_calls and done.status == "completed":
            self._awaiting_tools = True  # the answer comes in the next response, after the tools ran
            return
        if self.phase in (State.THINKING, State.SPEAKING) and not self.playback.busy:
            self._answer_finished()

    # ---- playback ------------------------------------------------------------------------------------

    def on_playback_started(self, item_id: str) -> None:
        if self.phase == State.THINKING:
            if self._turn_ended_at is not None:
                ms = round((self._clock() - self._turn_ended_at) * 1000)
                self._emit({"event": "latency", "what": "end of speech to first answer audio", "ms": ms})
                self._turn_ended_at = None
            self._set_phase(State.SPEAKING)

    def on_playback_drained(self) -> None:
        if self.phase == State.SPEAKING and self._response_id is None and not self._awaiting_tools:
            self._answer_finished()

    def _answer_finished(self) -> None:
        self._touch()
        self._item_playing = None
        if self._expecting:  # another answer was asked for and is on its way
            self._set_phase(State.THINKING)
        elif self.push_to_talk:
            self._set_phase(State.IDLE)
        else:
            self._follow_up_until = self._clock() + self.settings.follow_up_s
            self._set_phase(State.LISTENING)

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
                self._link.truncate(item, heard)
                self._emit({"event": "interrupted", "item_id": item, "played_ms": heard})
        if self._response_id is not None:
            self._ignored_responses.add(self._response_id)
            self._response_id = None
        if not server_cancelled:
            self._link.cancel_response()  # this also drops the answers still waiting to be asked for
            self._expecting = 0
        self._awaiting_tools = False
        self._item_playing = None

    # ---- time ----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Called a few times a second: follow-up window, stuck buttons, outages, idle timeout, budget."""
        now = self._clock()
        if self.phase == State.LISTENING:
            if self._follow_up_until is not None and now > self._follow_up_until:
                self._follow_up_until = None
                self._set_phase(State.IDLE)
            elif self.push_to_talk and self._holding and now - self._turn_started > self.settings.max_turn_s:
                self._emit({"event": "notice", "message": "turn longer than max_turn_s: answering now"})
                self._holding = False
                self._end_turn()
        if (
            self.phase != State.IDLE
            and self._link_down_since is not None
            and now - self._link_down_since > self.settings.outage_buffer_s
        ):
            self._abandon_turn(now - self._link_down_since)
        if self._open and self.phase == State.IDLE and now - self._last_activity > self.settings.idle_timeout_s:
            self._end_conversation("idle timeout")
        if "budget" in self._faults and self._link.refusal() is None:
            self.clear_fault("budget")

    def _abandon_turn(self, down_s: float) -> None:
        """The link stayed down longer than the outage buffer holds: give the turn up, say so."""
        message = f"the network was down for {down_s:.0f} s: this turn is lost, press again when back online"
        self._emit({"event": "error", "code": "turn_lost", "message": message})
        self._link.clear_input()
        self._link.cancel_response()
        if self.playback.busy:
            self.playback.stop()
        self._holding = False
        self._response_id = None
        self._awaiting_tools = False
        self._set_phase(State.IDLE)
        if not self.settings.keep_warm:
            self._release_link(forget=False)
            self._refresh()

    def _end_conversation(self, why: str) -> None:
        """Forget the conversation: close the session (a new visitor starts fresh)."""
        log.info("conversation ended (%s)", why)
        if self.playback.busy:
            self.playback.stop()
        self._open = False
        self._response_id = None
        self._holding = False
        self._follow_up_until = None
        self._awaiting_tools = False
        self._release_link(forget=True)
        self._set_phase(State.IDLE)
        self._emit({"event": "conversation_ended", "reason": why})
        if self.settings.keep_warm:
            self._want_link()
