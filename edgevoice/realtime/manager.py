"""The session manager: one durable conversation over as many Realtime sessions as it takes.

The conversation talks to the manager as if the link never failed: it appends audio, commits turns, asks for answers,
interrupts them. Underneath, the manager keeps the link alive and gives each of its jobs to one collaborator:

- the link's life is here: connect when a conversation wants a link, reconnect after any loss as
  `RetryPolicy` says, roll over to a fresh session before the server's time limit, between turns;
- `CarryOver` (carryover.py) keeps what a new session needs to continue: history, unacknowledged audio and
  commit, events waiting for a session;
- `ResponseTracker` (responses.py) keeps one response in flight: `response.create` waits for the previous
  `response.done`, so the server never answers `conversation_already_has_active_response`;
- `ToolCalls` (tool_calls.py) runs the tools the model calls and answers them after their response is done;
- `UsageMeter` (usage.py) prices every response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevoice.realtime import events as ev
from edgevoice.realtime.carryover import CarryOver
from edgevoice.realtime.credentials import SecretSource
from edgevoice.realtime.failures import LinkBusy, SessionError, ToolRefused
from edgevoice.realtime.history import ConversationHistory
from edgevoice.realtime.link import LinkStatus, SessionLink
from edgevoice.realtime.manager_hooks import Clockwork, ManagerHooks, warm_up
from edgevoice.realtime.responses import ResponseTracker
from edgevoice.realtime.retry import RATE_LIMIT_CODES, retry_after_from_message
from edgevoice.realtime.settings import RealtimeSettings
from edgevoice.realtime.tool_calls import ToolCalls
from edgevoice.realtime.tool_schema import refused_tools
from edgevoice.realtime.tools import ToolRegistry
from edgevoice.realtime.usage import TurnAudio, UsageMeter

if TYPE_CHECKING:
    from edgevoice.realtime import server_events as se
    from edgevoice.realtime.session import RealtimeSession

log = logging.getLogger(__name__)
REFUSED_FALLBACK_S = 15.0  # the server refused our answer as busy and then never finished its own: ask anyway

__all__ = ["Clockwork", "LinkStatus", "ManagerHooks", "SecretSource", "SessionManager", "warm_up"]


class SessionManager:
    """One durable conversation over many Realtime sessions (see the module docstring). Never blocks its callers."""

    def __init__(
        self,
        settings: RealtimeSettings,
        secrets: SecretSource,
        hooks: ManagerHooks = ManagerHooks(),
        *,
        tools: ToolRegistry | None = None,
        usage: UsageMeter | None = None,
        carry_over: CarryOver | None = None,
        clockwork: Clockwork = Clockwork(),
    ) -> None:
        self.settings = settings
        self.tools = tools or ToolRegistry()
        self.usage = usage
        self.carry = carry_over or CarryOver()
        self.responses = ResponseTracker()
        self.link = SessionLink(settings.reconnect, secrets, self, clock=clockwork.clock, sleep=clockwork.sleep)
        self._hooks = hooks
        self._clock = clockwork.clock
        self._factory = clockwork.session_factory
        self._pump_timer: asyncio.TimerHandle | None = None
        self._audio_batch = 0  # samples per append (see `batch_audio`)
        self._background: set[asyncio.Task[Any]] = set()
        self._declared: list[dict[str, Any]] = []  # the tools the session was last told of
        self.tool_calls = ToolCalls(
            self.tools,
            self.carry.history,
            spawn=self._spawn,
            send=self._send_tool_output,
            ask_answer=self.create_response,
        )
        self.tools.subscribe(self._tools_changed)

    @property
    def history(self) -> ConversationHistory:
        return self.carry.history

    @property
    def _session(self) -> RealtimeSession | None:
        return self.link.session

    @property
    def connects(self) -> int:
        return self.link.connects

    @property
    def attempts(self) -> int:
        """Failed attempts in a row."""
        return self.link.attempts

    @property
    def attempt_log(self) -> list[tuple[float, str]]:
        """(clock, outcome) of every attempt to open a session, for benchmarks."""
        return self.link.attempt_log

    # ---- the link, as the conversation asks for it ----------------------------------------------------

    def connect(self) -> None:
        """A conversation wants a session (from now on, until disconnect)."""
        self.link.connect()

    def disconnect(self, *, forget: bool = True) -> None:
        """Close the session; `forget` drops the conversation too (the next one starts fresh)."""
        self.link.disconnect()
        if forget:
            self.carry.forget()
            self.responses.forget()
            self.tool_calls.forget()

    @property
    def session_id(self) -> str:
        return self._session.session_id if self._session is not None else ""

    @property
    def is_up(self) -> bool:
        return self.link.is_up

    def refusal(self) -> str | None:
        """Why a new conversation must not start now (None: it may)."""
        if self.usage is not None and self.usage.budget_spent:
            return (
                f"the daily budget of ${self.usage.settings.daily_budget_usd:.2f} is spent "
                f"(${self.usage.day_cost:.2f} today); conversations resume tomorrow"
            )
        return None

    # ---- the uplink: never blocks, never fails, survives reconnects ----------------------------------

    def append_audio(self, frame: np.ndarray) -> None:
        self.carry.add_audio(frame, sent=self._session is not None)
        if self._session is not None:
            self._session.append_audio(frame, self._audio_batch)

    def batch_audio(self, ms: int) -> None:
        """Send the microphone in appends of `ms` (0: each frame as it comes; the audio held back goes now)."""
        self._audio_batch = 24 * ms  # samples at 24 kHz
        if not ms and self._session is not None:
            self._session.flush_audio()

    def commit_input(self) -> None:
        self.carry.commit_pending = True
        if self._session is not None:
            self._session.commit_input()

    def clear_input(self) -> None:
        self.carry.clear_turn()
        if self._session is not None:
            self._session.clear_input()

    def create_response(
        self, instructions: str | None = None, *, turn: TurnAudio | None = None, owner: str | None = None
    ) -> None:
        """Ask for an answer (sent when no other is in flight); `instructions` for this answer only; `turn`:
        the push-to-talk turn it answers, reported with its usage; `owner`: the controller that asked."""
        self.responses.want(instructions, turn, owner)
        self._pump_responses()

    def drop_requests(self, owner: str) -> int:
        """`owner` (a controller) left: drop the answers it asked for that still wait (all but one, see
        `ResponseTracker.drop_owner`); returns how many."""
        dropped = self.responses.drop_owner(owner)
        if dropped:
            log.info("%s left: %d of the answers it asked for are dropped, never requested", owner, dropped)
        return dropped

    def send_image(self, image_url: str, prompt: str | None = None) -> None:
        """A picture into the conversation (not replayed after a reconnect: the history keeps text only).
        LinkBusy when the link's queues have no room for it (they are bounded in bytes)."""
        event = ev.user_image(image_url, prompt)
        if self._session is None:
            self.carry.keep(event)
        elif not self._session.send(event):
            raise LinkBusy("the link to the server is not keeping up with what was sent: try again in a moment")

    def cancel_response(self, *, server_cancels: bool = False) -> None:
        """Stop the answer in flight; unless the server cancels it itself, drop the answers still waiting too."""
        if not server_cancels:
            self.tool_calls.cancel_follow_ups()  # tool outputs still go, but ask for no answer
        if self.responses.cancel(server_cancels=server_cancels) and self._session is not None:
            self._session.cancel_response()

    def truncate(self, item_id: str, audio_end_ms: int, received_ms: float) -> None:
        """The visitor heard `audio_end_ms` of the item's `received_ms`: cut it there, here and on the server."""
        self.history.on_truncate(item_id, audio_end_ms, received_ms)
        if self._session is not None:
            self._session.truncate(item_id, audio_end_ms)

    def send_text(self, text: str) -> None:
        """A typed user message (the control socket's `say`). Without a session, the replay carries it."""
        event = ev.user_text(text)
        event["item"]["id"] = f"item_ev{int(self._clock() * 1000) % 10**12:012d}"
        self.history.add_text(event["item"]["id"], "user", text)
        if self._session is not None:
            self._session.send(event)

    def _send_tool_output(self, event: dict[str, Any]) -> None:
        # Without a session the history's replay carries the output, after its call, into the next session
        # (kept here too, it reached that session twice).
        if self._session is not None:
            self._session.send(event)

    # ---- one response in flight -----------------------------------------------------------------------

    def _pump_responses(self) -> None:
        if self._session is None:
            return
        now = self._clock()
        request = self.responses.next_request(now)
        if request is not None:
            self._session.create_response(request.instructions)
            return
        wait = self.responses.wait_s(now)
        if wait > 0 and self._pump_timer is None:
            self._pump_timer = asyncio.get_running_loop().call_later(wait, self._pump_after_hold)

    def _pump_after_hold(self) -> None:
        self._pump_timer = None
        self._pump_responses()

    def _refused_fallback(self) -> None:
        if self.responses.give_up_waiting():
            self._pump_responses()

    # ---- events from the current session --------------------------------------------------------------

    def _handle(self, session: RealtimeSession, event: se.ServerEvent) -> None:
        from edgevoice.realtime import server_events as se  # loaded with the session's code, after start-up

        if session is not self._session:
            # A session we rolled over from may still finish a transcript: keep it, act on nothing else.
            if isinstance(event, se.Transcript):
                self.history.on_text(event.item_id, event.role, event.text, event.final)
            return
        match event:
            case se.ItemAdded(item_id=item_id, role=role):
                self.history.on_item(item_id, role)
            case se.Transcript(role=role, item_id=item_id, text=text, final=final):
                self.history.on_text(item_id, role, text, final)
            case se.InputCommitted():
                self.carry.on_committed()
            case se.ResponseCreated(response_id=rid):
                if self.responses.on_created(rid):
                    session.cancel_response()  # the visitor cancelled it before it started
            case se.AudioDelta(response_id=rid):
                self.responses.on_audio(rid)
            case se.FunctionCall():
                self.tool_calls.start(event)
            case se.ResponseDone():
                self._response_done(event)
            case se.ServerError(code="response_cancel_not_active"):
                # Our cancel crossed the server's own (server VAD interrupts too) or the answer's end: benign.
                log.debug("cancel arrived after the response had ended")
                return
            case se.ServerError(message=message, param=param) if blamed := self._tools_blamed(message, param):
                # Our tools update was refused because of a tool: drop it, and the update goes again without it.
                self.tools_refused(ToolRefused(blamed, message))
                return
            case se.ServerError(code="conversation_already_has_active_response"):
                # A response we did not ask for (server VAD) is under way: ours goes after its response.done.
                self.responses.on_refused()
                asyncio.get_running_loop().call_later(REFUSED_FALLBACK_S, self._refused_fallback)
        self._hooks.on_event(event)

    def _response_done(self, done: se.ResponseDone) -> None:
        turn = self.responses.turn_of(done.response_id)
        self.responses.on_done(
            done.response_id, called_tools=bool(done.function_calls), completed=done.status == "completed"
        )
        if self.usage is not None and done.usage:
            cost = self.usage.add(done.usage, turn)
            figures = turn.as_event() if turn is not None else {}
            self._hooks.emit(
                {
                    "event": "usage",
                    "response_id": done.response_id,
                    "usd": round(cost, 6),
                    **figures,
                    **self.usage.snapshot(),
                }
            )
        if done.status == "failed":
            self._response_failed(done)
        self.tool_calls.answer(done)
        self._pump_responses()

    def _response_failed(self, done: se.ResponseDone) -> None:
        code, message = done.error_code or "", done.error_message or ""
        if code in RATE_LIMIT_CODES or "rate limit" in message.lower():
            wait = retry_after_from_message(message) or self.link.policy.backoff(self.attempts + 3)
            self.responses.hold(self._clock() + wait)
            log.warning("rate limited: no new answer for %.1f s (%s)", wait, message)
        elif code == "insufficient_quota" and self._session is not None:
            # Nothing will work until somebody adds credit: end the session as a fatal failure.
            self._session.fail(SessionError("quota", f"the account has no quota left: {message}"))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task the manager keeps a reference to (and cancels when it stops)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _tools_changed(self) -> None:
        if self._session is not None:
            self._declared = self.tools.declarations()
            self._session.send(ev.tools_update(self._declared))

    def _tools_blamed(self, message: str, param: str | None) -> list[str]:
        """The tools a server error during a session blames: only an error about the session's tools or a
        schema counts (an error about a call's output that quotes a tool's name does not)."""
        if not ((param or "").startswith("session.tools") or "schema" in message.lower()):
            return []
        return refused_tools(message, param, self._declared)

    def tools_refused(self, error: ToolRefused) -> bool:
        """The server refused tools we declared: drop them and tell their owners (a `tool_refused` event),
        rather than fail the session. True if any was dropped."""
        dropped = self.tools.drop(error.names)
        for tool in dropped:
            log.warning("the server refused the tool %s of %s: %s", tool.name, tool.owner, error.server_message)
            self._hooks.emit(
                {"event": "tool_refused", "name": tool.name, "owner": tool.owner, "message": error.server_message}
            )
        return bool(dropped)

    # ---- the link's life (SessionLink asks) ---------------------------------------------------------

    async def run(self) -> None:
        """Keep a session while one is wanted; runs until cancelled."""
        try:
            await self.link.run()
        finally:
            for task in list(self._background):
                task.cancel()

    def make_session(self, secret: str) -> RealtimeSession:
        def on_event(event: se.ServerEvent) -> None:
            self._handle(session, event)

        self._declared = self.tools.declarations()
        session = self._factory(self.settings, secret, on_event, tools=self._declared)
        return session

    def session_installed(self, session: RealtimeSession, *, rollover: bool) -> None:
        """`session` is the current one: give it everything the conversation needs to carry on."""
        if self.usage is not None:
            self.usage.new_session()
        handed = self.carry.hand_over(session)
        if handed.lost_ms:
            log.warning("%d ms of audio captured during the outage did not fit the outage buffer", handed.lost_ms)
            message = f"{handed.lost_ms} ms of audio lost in the outage"
            self._hooks.emit({"event": "notice", "code": "audio_dropped", "message": message})
        if handed.items or handed.audio_ms:
            log.info(
                "session %s: replayed %d items and %d ms of audio", session.session_id, handed.items, handed.audio_ms
            )
        self._hooks.emit(
            {"event": "session", "status": "open", "session_id": session.session_id, "replayed": handed.items}
        )
        if rollover:
            self._hooks.emit({"event": "session", "status": "rolled_over", "session_id": session.session_id})
        self._pump_responses()

    def session_lost(self, error: SessionError) -> None:
        """The session that was up is gone: settle the response that was in flight."""
        cut = self.responses.on_link_lost()
        if cut is not None and cut.response_id is not None:
            from edgevoice.realtime import server_events as se

            # The visitor heard part of it: report it cut (asking again would repeat what they heard).
            self._hooks.on_event(se.ResponseDone(cut.response_id, "failed", None, "connection_lost", error.message))

    def session_closing(self, session: RealtimeSession) -> None:
        if self.responses.on_session_closed():
            session.cancel_response()  # do not leave an answer running (and billed) on the server

    def may_roll_over(self) -> bool:
        """Nothing in flight: the session may be swapped for a fresh one now."""
        return (
            self.responses.in_flight is None
            and not self.carry.commit_pending
            and not self.tool_calls.busy
            and self._hooks.between_turns()
        )

    def link_status(self, status: LinkStatus) -> None:
        self._hooks.on_link(status)
