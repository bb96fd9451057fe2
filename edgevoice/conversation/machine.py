"""The conversation controller: the device's one state machine.

It takes every input (button gestures, a controller's commands, microphone frames, server events, link news,
playback progress, the clock) and decides what the device does and which state it shows. It owns no I/O: it
acts through the ports in ports.py (the session manager as a `Link`, the speaker as `Playback`, the
microphone's `PreRoll`) and reports through `emit(event_dict)`. Every rule of the conversation is here; the
state and the steps the rules share are in core.py.

Turn-taking follows `[realtime.turn_detection]`:
- `none` (push-to-talk): holding the button streams the microphone; releasing it commits the turn and
  asks for an answer. A press while the assistant talks interrupts it and starts a new turn.
- `server_vad` / `semantic_vad`: a press starts a conversation; the server finds the end of each turn.
  The microphone streams while the conversation is active (so the visitor can talk over the answer);
  after an answer the device listens for a follow-up for `follow_up_s`, then goes idle. A press while
  listening ends the conversation.
The conversation (and its context) lasts until `idle_timeout_s` without activity; then it is forgotten,
so a new visitor starts fresh, and an idle device holds no connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from edgevoice.conversation.core import ConversationCore
from edgevoice.conversation.ports import Busy, NotNow
from edgevoice.conversation.state import LinkState, Phase

if TYPE_CHECKING:
    from edgevoice.realtime import server_events as se

log = logging.getLogger(__name__)

SAY_EXACTLY = "Say exactly the following, word for word, in your voice, and nothing else: "


class Conversation(ConversationCore):
    """The one state machine: inputs in, commands to the link and the speaker out, `state` shown.

    Build it with the settings, the turn-taking mode, the `Link` (the session manager) and `emit`; plug the
    speaker (`playback`) and the microphone's `preroll` in once they are open. Its public methods are its
    inputs; `state`, `phase`, `muted`, `reason` and `streaming` are what it shows.
    """

    # ---- the buttons ---------------------------------------------------------------------------------

    def on_gesture(self, action: str, phase: str, pressed_at: float | None = None) -> None:
        """A button gesture, as the action it is mapped to (`[button] actions`): talk, converse, end, mute."""
        match action, phase:
            case "talk", "start":
                self.on_button_pressed(pressed_at)
            case "talk", "end":
                self.on_button_released()
            case "converse", _:
                self.on_converse()
            case "end", _:
                self.end_conversation("ended by the button")
            case "mute", _:
                self.set_muted(not self.muted)

    def on_button_pressed(self, pressed_at: float | None = None) -> None:
        """Push-to-talk starts (or, with a VAD, a press toggles the conversation). `pressed_at`: when the
        finger went down, if that was earlier than now (a hold is only known to be one after `hold_ms`)."""
        self._touch()
        if not self._may_talk():
            return
        if self.phase.answering:
            self._interrupt()
            self._start_turn(pressed_at)
        elif self.phase is Phase.LISTENING and not self.push_to_talk:
            self._end_conversation("ended by the button")
        else:
            self._start_turn(pressed_at)

    def on_button_released(self) -> None:
        self._touch()
        self.turn.holding = False
        if self.push_to_talk and self.phase is Phase.LISTENING:
            self._end_turn()

    def on_converse(self) -> None:
        """A tap: start a conversation, interrupt the answer, or end listening (what depends on the moment)."""
        self._touch()
        if not self._may_talk():
            return
        if self.phase.answering:
            self._stop_answer()
        elif self.phase is Phase.LISTENING:
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
        if self._open or self.phase is not Phase.IDLE:
            if self.phase.answering:
                self._interrupt()
            self._end_conversation(why)

    def set_muted(self, muted: bool) -> None:
        """Privacy mute: from now on the microphone's audio goes nowhere (not even the pre-roll)."""
        if muted == self.muted:
            return
        self.muted = muted
        if not muted:
            self._unmuted_at = self._clock()
        elif self.phase is Phase.LISTENING:
            self._link.clear_input()  # what was said in this turn is not sent either
            self.turn.holding = False
            self._set_phase(Phase.IDLE)
        log.info("microphone %s", "muted" if muted else "unmuted")
        self._emit({"event": "mute", "muted": muted})
        self._refresh()

    # ---- a controller's commands (the control socket); NotNow when they do not fit ------------------

    def listen(self) -> None:
        """Start listening, as a press would (push-to-talk: until `stop_listening`)."""
        self._check(microphone=True)
        if self.phase is Phase.LISTENING and (self.turn.holding or not self.push_to_talk):
            return
        if self.phase.answering:
            self._interrupt()
        self._start_turn()

    def stop_listening(self) -> None:
        """End the visitor's turn now: commit what was said and ask for the answer."""
        if self.phase is not Phase.LISTENING:
            raise NotNow(f"not listening (the device is {self.state})")
        self.turn.holding = False
        if self.push_to_talk:
            self._end_turn()
        else:
            self._link.commit_input()
            self._await_answer()

    def cancel(self) -> None:
        """Interrupt the assistant."""
        if not self.phase.answering:
            raise NotNow(f"nothing to cancel: the assistant is not answering (the device is {self.state})")
        self._stop_answer()

    def say(self, text: str, owner: str | None = None) -> None:
        """The visitor's words as text (no microphone needed), then the answer; `owner`: the controller that
        sent them (when it leaves before its answer was asked for, the answer is dropped: `release`)."""
        self._check(microphone=False)
        if self.phase.answering:
            self._interrupt()
        self._open_conversation()
        if self.phase is Phase.LISTENING:
            self._link.clear_input()
            self.turn.holding = False
        self._link.send_text(text)
        self._await_answer(owner=owner)

    def speak(self, text: str, owner: str | None = None) -> None:
        """Make the assistant say `text` as written, after what it is saying now (`owner`: as for `say`)."""
        self._check(microphone=False)
        if self._link.responses.full:
            raise Busy("answers already wait to be spoken: wait for them (or `cancel`) before asking for more")
        self._open_conversation()
        self._link.create_response(SAY_EXACTLY + text, owner=owner)
        if self.phase in (Phase.IDLE, Phase.LISTENING) and not self.turn.speech and not self.turn.holding:
            self._set_phase(Phase.THINKING)

    def image(self, image_url: str, prompt: str | None, owner: str | None = None) -> None:
        """A picture into the conversation; with a prompt, the assistant answers about it (`owner`: as for
        `say`)."""
        self._check(microphone=False)
        self._open_conversation()
        self._link.send_image(image_url, prompt)
        if prompt:
            if self.phase.answering:
                self._interrupt()
            self._await_answer(owner=owner)

    def release(self, owner: str) -> int:
        """The controller `owner` has gone: the answers it asked for that still wait are dropped (all but one:
        the one under way, or else its first, so that a controller that asks and leaves is still answered).
        Returns how many were dropped."""
        return self._link.drop_requests(owner)

    # ---- the microphone ------------------------------------------------------------------------------

    def on_mic_frame(self, frame: np.ndarray, *, voiced: bool = True) -> None:
        """A cleaned 24 kHz frame while `streaming` (other frames stay in the pre-roll). `voiced`: the device's
        voice detector heard a voice in it (push-to-talk trims the silence around the speech; True = unknown,
        nothing is trimmed)."""
        if not self.streaming:
            return
        if self.push_to_talk:
            self._take(frame, voiced)
            return
        self._link.append_audio(frame)
        if self.phase is Phase.LISTENING:
            self.turn.ms += self._frame_ms

    def on_local_speech(self) -> None:
        """The device's own voice detector heard a visitor (on the echo-cancelled microphone).

        With a VAD, that is a barge-in: stop the answer now, within a frame or two, rather than when the
        server's `speech_started` arrives (hundreds of ms later); the server then takes the turn as usual.
        In push-to-talk the button is the only way to take a turn.
        """
        if self.push_to_talk or not self._open or self.muted:
            return
        if self.phase is Phase.SPEAKING or (self.phase is Phase.THINKING and self.playback.busy):
            log.info("local barge-in: a visitor talks over the answer")
            self._interrupt()
            self._follow_up_until = None
            self._set_phase(Phase.LISTENING)

    # ---- the link ------------------------------------------------------------------------------------

    def on_link(self, state: LinkState, message: str = "", *, needs_person: bool = False) -> None:
        """The session manager's news: "connecting", "up" or "down" (with why, and whether a person must act)."""
        link = self.link
        link.state = state
        if state == "up":
            link.up_once = True
            link.down_since = None
            self.faults.clear("link")
        elif state == "down":
            self._emit({"event": "error", "code": "link_down", "message": message})
            if needs_person:
                self.faults.set("link", message)
            else:
                self.faults.clear("link")
            if link.down_since is None:
                link.down_since = self._clock()
            if self.phase is Phase.IDLE and link.wanted and not needs_person and not self.settings.keep_warm:
                # Nobody is talking: reconnect at the next press (the context is kept until the idle timeout).
                self._release_link(forget=False)
        self._refresh()

    # ---- the server ----------------------------------------------------------------------------------

    def on_server_event(self, event: se.ServerEvent) -> None:
        # The event types come with the session's code (loaded after start-up): not on the way to ready.
        from edgevoice.realtime import server_events as se

        responses = self._link.responses
        match event:
            case se.AudioDelta(response_id=rid, item_id=item, samples=samples):
                if not responses.dropped(rid) and self.phase.answering:
                    self.playback.push(item, samples)
            case se.SpeechStarted():
                self._touch()
                self.turn.speech = True
                if not self.push_to_talk and self.phase.answering:
                    self._interrupt(server_cancels=self.server_interrupts)
                if not self.push_to_talk and self.phase is not Phase.IDLE:
                    self._follow_up_until = None
                    self._set_phase(Phase.LISTENING)
            case se.SpeechStopped():
                self.turn.speech = False
                if not self.push_to_talk and self.phase is Phase.LISTENING:
                    self.turn.ended_at = self._clock()
                    self._set_phase(Phase.THINKING)
            case se.InputCommitted():
                self.turn.speech = False
            case se.ResponseCreated(response_id=rid):
                waiting = self.phase is Phase.IDLE or (self.phase is Phase.LISTENING and not self.turn.speech)
                if responses.asked_for(rid) and waiting:
                    self._set_phase(Phase.THINKING)  # e.g. a controller's `speak` queued behind an answer
            case se.ResponseDone():
                self._on_response_done(event)
            case se.FunctionCall(name=name, call_id=call_id, arguments=arguments):
                self._emit({"event": "tool_call", "call_id": call_id, "name": name, "arguments": arguments})
            case se.Transcript(role=role, item_id=item, text=text, final=final):
                self._touch()
                if final:
                    log.debug("%s said: %s", role, text)
                self._emit({"event": "transcript", "role": role, "item_id": item, "text": text, "final": final})
            case se.ServerError(code=code, message=message):
                log.warning("server error %s: %s", code, message)
                self._emit({"event": "error", "code": code or "server_error", "message": message})
            case _:
                pass

    def _on_response_done(self, done: se.ResponseDone) -> None:
        self._touch()
        if done.status == "failed":
            message = done.error_message or "the response failed"
            self._emit({"event": "error", "code": done.error_code or "response_failed", "message": message})
        responses = self._link.responses
        if responses.dropped(done.response_id) or responses.awaiting_tools:
            return  # cancelled by the visitor, or the answer comes after the tools ran
        if self.phase.answering and not self.playback.busy:
            self._answer_finished()

    # ---- the speaker ---------------------------------------------------------------------------------

    def on_playback_started(self, item_id: str) -> None:
        if self.phase is Phase.THINKING:
            if self.turn.ended_at is not None:
                ms = round((self._clock() - self.turn.ended_at) * 1000)
                self._emit({"event": "latency", "what": "end of speech to first answer audio", "ms": ms})
                self.turn.ended_at = None
            self._set_phase(Phase.SPEAKING)

    def on_playback_drained(self) -> None:
        responses = self._link.responses
        if self.phase is Phase.SPEAKING and not responses.answer_streaming and not responses.awaiting_tools:
            self._answer_finished()

    # ---- the clock -----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Called a few times a second: follow-up window, stuck buttons, outages, idle timeout, budget."""
        now = self._clock()
        if self.phase is Phase.LISTENING:
            if self._follow_up_until is not None and now > self._follow_up_until:
                self._follow_up_until = None
                self._set_phase(Phase.IDLE)
            elif self.push_to_talk and self.turn.holding and now - self.turn.started_at > self.settings.max_turn_s:
                self._emit({"event": "notice", "message": "turn longer than max_turn_s: answering now"})
                self.turn.holding = False
                self._end_turn()
        down_since = self.link.down_since
        if self.phase is not Phase.IDLE and down_since is not None and now - down_since > self.settings.outage_buffer_s:
            self._abandon_turn(now - down_since)
        if self._open and self.phase is Phase.IDLE and now - self._last_activity > self.settings.idle_timeout_s:
            self._end_conversation("idle timeout")
        if "budget" in self.faults.by_origin and self._link.refusal() is None:
            self.clear_fault("budget")
