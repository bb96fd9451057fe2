"""The conversation's core: its state, what the device shows, and the steps its rules share.

`Conversation` (machine.py) adds the rules: which input (a press, a server event, the clock...) leads to
which of these steps. The state is a `Phase`, a `LinkView`, `Faults`, a `Turn` and the mute (state.py); the
state shown is derived from them. The response lifecycle is not kept here: the session manager's
`Responses` owns it, and the conversation asks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgevoice.conversation.ports import Link, NoPreRoll, NotNow, NullPlayback, Playback, PreRoll
from edgevoice.conversation.settings import ConversationSettings
from edgevoice.conversation.state import Faults, LinkView, Phase, State, Turn
from edgevoice.conversation.trim import SilenceTrimmer
from edgevoice.realtime.usage import TurnAudio

log = logging.getLogger(__name__)

MIN_TURN_MS = 100  # the server refuses to commit less audio than this


class ConversationCore:
    """The conversation's state and the steps its rules are made of (see `Conversation` for the rules)."""

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
        self.server_interrupts = server_interrupts  # server VAD cancels the answer on speech by itself
        self.playback: Playback = playback or NullPlayback()  # the daemon plugs the speaker in once it is open
        self.preroll: PreRoll = NoPreRoll()  # and the microphone's recent past
        self._link = link
        self._emit = emit
        self._frame_ms = frame_ms
        self._clock = clock
        self.state = State.IDLE
        self.phase = Phase.IDLE
        self.link = LinkView()
        self.faults = Faults()
        self.turn = Turn()
        self.muted = False  # privacy mute: the microphone's audio goes nowhere
        self._unmuted_at = 0.0  # audio from before this is never sent
        self._open = False  # a conversation is going on (its context is kept until the idle timeout)
        self._follow_up_until: float | None = None
        self._last_activity = clock()

    # ---- what it shows -----------------------------------------------------------------------------------

    @property
    def reason(self) -> str:
        """Why the device shows `error` ("" otherwise)."""
        return self.faults.reason if self.state == State.ERROR else ""

    @property
    def conversation_open(self) -> bool:
        return self._open

    @property
    def streaming(self) -> bool:
        """Microphone frames go to the server now (otherwise the pre-roll keeps the recent ones)."""
        if self.muted:
            return False
        if self.push_to_talk:
            return self.turn.holding and self.phase is Phase.LISTENING
        return self._open and self.phase is not Phase.IDLE

    @property
    def between_turns(self) -> bool:
        """Nobody is talking and nothing is being answered (a session may be swapped now)."""
        if self.phase is Phase.IDLE:
            return True
        return not self.push_to_talk and self.phase is Phase.LISTENING and not self.turn.speech

    def _shown(self) -> State:
        if self.faults:
            return State.ERROR
        if self.muted and self.phase in (Phase.IDLE, Phase.LISTENING):
            return State.MUTED
        return self.link.shown(self.phase, self.settings.keep_warm)

    def _refresh(self) -> None:
        state = self._shown()
        if state == self.state:
            return
        previous, self.state = self.state, state
        log.info("state %s -> %s", previous, state)
        detail = {"reason": self.faults.reason} if state == State.ERROR else {}
        self._emit({"event": "state", "state": str(state), "previous": str(previous), **detail})

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._refresh()

    def start(self) -> None:
        """The device is up: connect now if the session is kept warm."""
        self._refresh()
        if self.settings.keep_warm:
            self._want_link()

    # ---- faults that need a person ------------------------------------------------------------------

    def report_fault(self, origin: str, message: str) -> None:
        """Something needs a person (no sound card, no key): show it until it is cleared."""
        if self.faults.set(origin, message):
            self._emit({"event": "error", "code": f"{origin}_fault", "message": message})
        self._refresh()

    def clear_fault(self, origin: str) -> None:
        if self.faults.clear(origin):
            self._refresh()

    # ---- the steps the rules share -----------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_activity = self._clock()

    def _may_talk(self) -> bool:
        """A visitor may start talking now (otherwise they are told why not)."""
        if self.faults:
            self._emit({"event": "notice", "message": f"cannot talk now: {self.faults.reason}"})
            return False
        if self.muted:
            self._emit({"event": "notice", "message": "the microphone is muted: unmute it to talk"})
            return False
        return True

    def _check(self, *, microphone: bool) -> None:
        """Raise NotNow when nothing can be said now (and, with `microphone`, nothing heard)."""
        if self.faults:
            raise NotNow(f"the device needs a person: {self.faults.reason}")
        if microphone and self.muted:
            raise NotNow("the microphone is muted: unmute it first")
        refusal = self._link.refusal()
        if refusal is not None:
            self.report_fault("budget", refusal)
            raise NotNow(refusal)

    def _want_link(self) -> None:
        if not self.link.wanted:
            self.link.wanted = True
            self.link.down_since = None
            self._link.connect()

    def _release_link(self, *, forget: bool) -> None:
        self.link.wanted = False
        self.link.down_since = None
        self._link.disconnect(forget=forget)

    def _open_conversation(self) -> None:
        self._touch()
        if not self._open:
            self._open = True
            self.link.up_once = self.link.state == "up"
        self._want_link()

    def _start_turn(self, since: float | None = None) -> None:
        refusal = self._link.refusal()
        if refusal is not None:
            self.report_fault("budget", refusal)
            return
        self._open_conversation()
        s = self.settings
        trim = SilenceTrimmer[np.ndarray](
            self._frame_ms, lead_ms=s.trim_lead_ms, trail_ms=s.trim_trail_ms, enabled=s.trim_silence
        )
        self.turn = Turn(holding=True, speech=self.turn.speech, started_at=self._clock(), trim=trim)
        self._follow_up_until = None
        if self.push_to_talk:
            self._link.clear_input()  # nothing stale may slip into this turn
        if since is not None:  # the audio since the finger went down, from the pre-roll
            for frame in self.preroll.since(max(since, self._unmuted_at)):
                self._take(frame.samples, frame.voiced)
        self._set_phase(Phase.LISTENING)

    def _take(self, frame: np.ndarray, voiced: bool) -> None:
        """A frame of the visitor's turn: to the server (in push-to-talk, unless it is silence around the speech)."""
        for sent in self.turn.trim.push(frame, voiced) if self.push_to_talk else (frame,):
            self._link.append_audio(sent)
            self.turn.ms += self._frame_ms

    def _end_turn(self) -> None:
        """Push-to-talk: the visitor let go. Commit the turn and ask for the answer."""
        turn = self.turn
        for frame in turn.trim.finish():
            self._link.append_audio(frame)
            turn.ms += self._frame_ms
        if turn.ms < MIN_TURN_MS:
            self._link.clear_input()
            message = f"turn too short ({turn.ms} ms): hold the button while talking"
            self._emit({"event": "notice", "message": message})
            self._set_phase(Phase.IDLE)
            return
        held, speech = turn.trim.captured_ms, turn.trim.speech_ms
        if turn.trim.heard:
            log.info("turn of %d ms: %d ms of speech, %d ms sent", held, speech, turn.ms)
        else:
            # The detector errs towards voice: nothing at all is a visitor it could not hear (far, quiet, a loud
            # room) more often than an empty turn. The server may still understand them: it gets the whole turn.
            log.info("turn of %d ms: no speech detected, all %d ms sent", held, turn.ms)
        self._link.commit_input()
        self._await_answer(turn=TurnAudio(sent_ms=turn.ms, speech_ms=speech))

    def _await_answer(
        self, instructions: str | None = None, *, turn: TurnAudio | None = None, owner: str | None = None
    ) -> None:
        """Ask for the answer to what the visitor said, and show that it is being thought about."""
        self._link.create_response(instructions, turn=turn, owner=owner)
        self.turn.ended_at = self._clock()
        self._set_phase(Phase.THINKING)

    def _stop_answer(self) -> None:
        """Interrupt the answer; then idle (push-to-talk) or listening for a follow-up (VAD)."""
        self._interrupt()
        if self.push_to_talk:
            self._set_phase(Phase.IDLE)
        else:
            self._follow_up_until = self._clock() + self.settings.follow_up_s
            self._set_phase(Phase.LISTENING)

    def _interrupt(self, *, server_cancels: bool = False) -> None:
        """Barge-in: silence the speaker now, tell the server what was heard, stop the answer."""
        item = self.playback.item
        if item is not None:
            played, received = self.playback.played_ms(item), self.playback.received_ms(item)
            # Finished = no more audio coming and all of it played. (Not `busy`: when the server streams
            # at real time the speaker runs dry between chunks while the answer is far from over.)
            finished = not self._link.responses.answer_streaming and played >= received
            self.playback.stop()
            if not finished:
                heard = int(min(played, received))
                self._link.truncate(item, heard, received)
                self._emit({"event": "interrupted", "item_id": item, "played_ms": heard})
        self._link.cancel_response(server_cancels=server_cancels)

    def _answer_finished(self) -> None:
        self._touch()
        if self._link.responses.answers_coming:  # another answer was asked for and is on its way
            self._set_phase(Phase.THINKING)
        elif self.push_to_talk:
            self._set_phase(Phase.IDLE)
        else:
            self._follow_up_until = self._clock() + self.settings.follow_up_s
            self._set_phase(Phase.LISTENING)

    def _abandon_turn(self, down_s: float) -> None:
        """The link stayed down longer than the outage buffer holds: give the turn up, say so."""
        message = f"the network was down for {down_s:.0f} s: this turn is lost, press again when back online"
        self._emit({"event": "error", "code": "turn_lost", "message": message})
        self._link.clear_input()
        self._link.cancel_response()
        if self.playback.busy:
            self.playback.stop()
        self.turn.holding = False
        self._set_phase(Phase.IDLE)
        if not self.settings.keep_warm:
            self._release_link(forget=False)
            self._refresh()

    def _end_conversation(self, why: str) -> None:
        """Forget the conversation: close the session (a new visitor starts fresh)."""
        log.info("conversation ended (%s)", why)
        if self.playback.busy:
            self.playback.stop()
        self._open = False
        self.turn.holding = False
        self._follow_up_until = None
        self._release_link(forget=True)
        self._set_phase(Phase.IDLE)
        self._emit({"event": "conversation_ended", "reason": why})
        if self.settings.keep_warm:
            self._want_link()
