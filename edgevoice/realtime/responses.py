"""The response lifecycle: which answers are wanted, the one in flight, and which were cancelled.

The Realtime server takes one response at a time: a `response.create` while another runs is refused with
`conversation_already_has_active_response`. `ResponseTracker` is the one place that knows

- the answers asked for and not yet requested (a queue of their instructions),
- the response in flight: asked for and not yet created, created and running (its id, whether its audio
  started), or the server's own (server VAD answers by itself),
- the responses cancelled by a barge-in, whose late audio nobody must play,
- whether the last response ended by calling tools (the answer then comes in a response after the tools ran),
- how long a rate limit holds the next request back,
- who asked for each answer (`owner`: a controller), so that a controller that leaves takes its waiting
  answers with it (`drop_owner`).

It is pure: the session manager feeds it the server's events and sends what it decides; the conversation
asks it (through `ResponseView`) whether an answer is still coming. Nothing here does I/O or keeps time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from edgevoice.realtime.usage import TurnAudio

DROPPED_KEPT = 16  # ids of cancelled responses remembered (their late events are ignored)
MAX_WAITING = 8  # answers asked for and not yet started; more are refused (`full`): each is a billed response


class Stage(Enum):
    """Where the response in flight (`InFlight.stage`) is: asked for, refused while the server's own runs,
    or created and running."""

    ASKED = "asked"  # response.create sent, response.created not yet seen
    REFUSED = "refused"  # the server was busy with a response of its own: ours is queued again until that one ends
    RUNNING = "running"  # created: the server is generating it


@dataclass(frozen=True)
class Wanted:
    """An answer asked for and not yet requested: its instructions, the turn it answers, who asked."""

    instructions: str | None = None
    turn: TurnAudio | None = None
    owner: str | None = None  # a controller (its control-socket id); None: the device itself


@dataclass
class InFlight:
    """The one response the server is working on (or that we asked for)."""

    stage: Stage
    instructions: str | None = None  # what it was asked with, to ask again after a lost link
    turn: TurnAudio | None = None  # the push-to-talk turn it answers (for the usage event)
    response_id: str | None = None
    ours: bool = True  # False: the server started it itself (server VAD)
    audio: bool = False  # some of its audio arrived (the visitor may have heard part of it)
    cancel_when_created: bool = False
    owner: str | None = None  # who asked for it (see `Wanted.owner`)

    @property
    def wanted(self) -> Wanted:
        """It, as an answer to ask for again."""
        return Wanted(self.instructions, self.turn, self.owner)


class ResponseTracker:
    """One response in flight, the answers waiting, and the cancelled ones. See the module docstring."""

    def __init__(self) -> None:
        self._queue: deque[Wanted] = deque()  # answers wanted, not yet requested
        self.in_flight: InFlight | None = None
        self._dropped: deque[str] = deque(maxlen=DROPPED_KEPT)
        self.awaiting_tools = False  # the last response called tools; their answer comes next
        self.hold_until = 0.0  # no request before this time (a rate limit)

    # ---- what the conversation asks (ResponseView) --------------------------------------------------

    @property
    def answer_streaming(self) -> bool:
        """A response is being generated and was not cancelled: more of the answer may still come."""
        f = self.in_flight
        return f is not None and f.stage is Stage.RUNNING and f.response_id not in self._dropped

    @property
    def answers_coming(self) -> int:
        """Answers asked for that have not started yet (queued, or requested and not yet created)."""
        f = self.in_flight
        return len(self._queue) + (1 if f is not None and f.stage is Stage.ASKED else 0)

    def asked_for(self, response_id: str) -> bool:
        """The response was requested by us (not started by the server's own turn detection)."""
        f = self.in_flight
        return f is not None and f.response_id == response_id and f.ours

    @property
    def full(self) -> bool:
        """As many answers wait as may (`MAX_WAITING`): a controller's next `speak` is refused."""
        return self.answers_coming >= MAX_WAITING

    def dropped(self, response_id: str) -> bool:
        """The response was cancelled: its late audio and its end mean nothing to the visitor."""
        return response_id in self._dropped

    def turn_of(self, response_id: str) -> TurnAudio | None:
        """The push-to-talk turn the response in flight answers (None: another response, or none)."""
        f = self.in_flight
        return f.turn if f is not None and f.response_id == response_id else None

    # ---- what the session manager tells it ----------------------------------------------------------

    def want(self, instructions: str | None = None, turn: TurnAudio | None = None, owner: str | None = None) -> None:
        self._queue.append(Wanted(instructions, turn, owner))

    def next_request(self, now: float) -> InFlight | None:
        """The answer to request now (send `response.create` with its instructions), or None: nothing now.

        Call it when a session is up; see `wait_s` for a rate-limit hold.
        """
        if not self._queue or self.in_flight is not None or now < self.hold_until:
            return None
        wanted = self._queue.popleft()
        self.in_flight = InFlight(Stage.ASKED, wanted.instructions, wanted.turn, owner=wanted.owner)
        return self.in_flight

    def wait_s(self, now: float) -> float:
        """Seconds until a wanted answer may be requested (0: now or nothing wanted)."""
        if not self._queue or self.in_flight is not None:
            return 0.0
        return max(0.0, self.hold_until - now)

    def hold(self, until: float) -> None:
        self.hold_until = max(self.hold_until, until)

    def on_created(self, response_id: str) -> bool:
        """`response.created`; returns True if it must be cancelled at once (a cancel that came early)."""
        self.awaiting_tools = False
        f = self.in_flight
        if f is not None and f.stage is Stage.ASKED:
            f.stage, f.response_id = Stage.RUNNING, response_id
            if f.cancel_when_created:
                self._dropped.append(response_id)
                return True
            return False
        # A response we did not ask for: the server's turn detection answers the visitor by itself.
        self.in_flight = InFlight(Stage.RUNNING, response_id=response_id, ours=False)
        return False

    def on_audio(self, response_id: str) -> None:
        f = self.in_flight
        if f is not None and f.response_id == response_id:
            f.audio = True

    def on_done(self, response_id: str, *, called_tools: bool, completed: bool) -> None:
        """`response.done`: nothing is in flight any more (ours ended, or was refused, or the server's did)."""
        f = self.in_flight
        if f is not None and (f.response_id == response_id or f.stage is not Stage.RUNNING):
            self.in_flight = None
        if called_tools and completed and response_id not in self._dropped:
            self.awaiting_tools = True

    def on_refused(self) -> None:
        """The server is busy with a response of its own: ours goes again after that one's end."""
        f = self.in_flight
        if f is not None and f.stage is Stage.ASKED:
            self._queue.appendleft(f.wanted)
            f.stage = Stage.REFUSED

    def give_up_waiting(self) -> bool:
        """The server never finished the response that refused ours: stop waiting. True if it was waiting."""
        if self.in_flight is not None and self.in_flight.stage is Stage.REFUSED:
            self.in_flight = None
            return True
        return False

    def cancel(self, *, server_cancels: bool = False) -> bool:
        """A barge-in: the answer in flight is dropped. Unless the server cancels it itself, the answers still
        waiting are dropped too. Returns True when `response.cancel` must be sent now."""
        self.awaiting_tools = False
        f = self.in_flight
        if f is not None and f.response_id is not None and f.response_id not in self._dropped:
            self._dropped.append(f.response_id)
        if server_cancels:
            return False
        self._queue.clear()
        if f is None:
            return False
        if f.stage is Stage.ASKED:
            f.cancel_when_created = True
            return False
        return f.stage is Stage.RUNNING

    def on_link_lost(self) -> InFlight | None:
        """The session died. Returns the response that was cut while the visitor heard part of it (to report);
        an answer that never started is asked for again in the next session."""
        f, self.in_flight = self.in_flight, None
        if f is None or f.stage is Stage.REFUSED:
            return None  # (a refused answer is already queued again)
        if f.cancel_when_created or (f.response_id is not None and f.response_id in self._dropped):
            return None  # cancelled already: nothing to report, nothing to ask again
        if f.stage is Stage.RUNNING and f.audio:
            return f
        self._queue.appendleft(f.wanted)
        return None

    def drop_owner(self, owner: str) -> int:
        """`owner` (a controller) has left: the answers it asked for and that still wait are dropped, except one,
        so that a controller that asks and leaves (`edgevoice ctl speak`) is still answered. That one is the
        answer in flight if it is the owner's (asked for or running: it goes on), else its earliest waiting.
        Returns how many were dropped (none of them was sent, so none is billed)."""
        f = self.in_flight
        keep_one = not (f is not None and f.owner == owner and f.stage is not Stage.REFUSED)
        kept: deque[Wanted] = deque()
        dropped = 0
        for wanted in self._queue:
            if wanted.owner != owner:
                kept.append(wanted)
            elif keep_one:
                keep_one = False
                kept.append(wanted)
            else:
                dropped += 1
        self._queue = kept
        return dropped

    def on_session_closed(self) -> bool:
        """We close the session on purpose. Returns True if a running response should be cancelled first."""
        f, self.in_flight = self.in_flight, None
        return f is not None and f.stage is Stage.RUNNING

    def forget(self) -> None:
        """The conversation is over: nothing more is wanted, and what is in flight no longer matters."""
        self._queue.clear()
        self.awaiting_tools = False
        f = self.in_flight
        if f is not None and f.response_id is not None and f.response_id not in self._dropped:
            self._dropped.append(f.response_id)
