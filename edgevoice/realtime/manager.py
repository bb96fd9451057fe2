"""The session manager: one durable conversation over as many Realtime sessions as it takes.

The conversation talks to the manager as if the link never failed: it appends audio, commits turns, asks for
answers, interrupts them. Underneath, the manager

- connects when a conversation wants a link, and reconnects after any loss, as `RetryPolicy` says (fast with
  full jitter for transient failures, as the server asks for rate limits, every few minutes when a person
  must fix something);
- keeps what a new session needs to continue: the conversation's history (replayed as items), the audio
  of the turn not yet acknowledged by the server (re-sent, bounded by `outage_buffer_s`), a commit not yet
  acknowledged, an answer that was asked for but never started (asked again);
- rolls over to a fresh session before the server's time limit, between turns, without the user noticing;
- keeps one response in flight: `response.create` waits for the previous `response.done`, so the server
  never answers `conversation_already_has_active_response`;
- runs the tools the model calls and sends their outputs, then one `response.create`, after the response
  that called them is done;
- prices every response's usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from edgevoice.realtime import events as ev
from edgevoice.realtime.credentials import CredentialsError, TokenUnavailable
from edgevoice.realtime.history import ConversationHistory
from edgevoice.realtime.retry import RATE_LIMIT_CODES, RetryPolicy, retry_after_from_message
from edgevoice.realtime.session import RealtimeSession, SessionError
from edgevoice.realtime.settings import RealtimeSettings
from edgevoice.realtime.tools import ToolRegistry, run_tool
from edgevoice.realtime.usage import UsageMeter

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
BUSY_FALLBACK_S = 15.0  # if the server said "busy" and then never finished a response, try again anyway
ROLLOVER_RETRY_S = 30.0


class SecretSource(Protocol):
    async def secret(self) -> str: ...


@dataclass(frozen=True)
class LinkStatus:
    state: Literal["connecting", "up", "down"]
    message: str = ""
    needs_person: bool = False
    retry_in_s: float | None = None


class SessionManager:
    def __init__(
        self,
        settings: RealtimeSettings,
        secrets: SecretSource,
        *,
        tools: ToolRegistry,
        on_event: Callable[[ev.ServerEvent], None],
        on_link: Callable[[LinkStatus], None],
        emit: Callable[[dict[str, Any]], None] = lambda event: None,
        usage: UsageMeter | None = None,
        between_turns: Callable[[], bool] = lambda: True,
        outage_buffer_s: float = 10.0,
        frame_ms: int = 20,
        session_factory: Callable[..., RealtimeSession] = RealtimeSession,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.tools = tools
        self.history = ConversationHistory()
        self.policy = RetryPolicy(settings.reconnect)
        self.usage = usage
        self._secrets = secrets
        self._on_event = on_event
        self._on_link = on_link
        self._emit = emit
        self._between_turns = between_turns
        self._frame_ms = frame_ms
        self._factory = session_factory
        self._clock = clock
        self._sleep = sleep
        self._want = False
        self._changed = asyncio.Event()
        self._session: RealtimeSession | None = None
        self._connected_at = 0.0
        # what a new session needs to carry on
        self._turn_audio: deque[np.ndarray] = deque(maxlen=max(1, int(outage_buffer_s * 1000 / frame_ms)))
        self._lost_frames = 0
        self._commit_pending = False
        self._outbox: list[dict[str, Any]] = []  # events that wait for a session (tool outputs)
        # one response in flight: None, "?" (asked, not yet created), "busy" (the server said so) or its id
        self._response: str | None = None
        self._response_audio = False
        self._wanted: deque[str | None] = deque()  # answers asked for and not yet sent: their instructions
        self._in_flight: str | None = None  # the instructions of the answer asked for last
        self._cancel_when_created = False
        self._hold_until = 0.0
        self._pump_timer: asyncio.TimerHandle | None = None
        self._audio_ms: dict[str, float] = {}
        # tools
        self._tool_tasks: dict[str, list[asyncio.Task[tuple[str, str]]]] = {}
        self._no_follow_up: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.tools.subscribe(self._tools_changed)
        # figures
        self.attempts = 0  # failures in a row
        self.connects = 0
        self.attempt_log: list[tuple[float, str]] = []  # (clock, outcome) of every attempt, for benchmarks
        self._last_failure = ""

    # ---- the link, as the conversation asks for it ----------------------------------------------------

    def connect(self) -> None:
        """A conversation wants a session (from now on, until disconnect)."""
        if not self._want:
            self._want = True
            self._changed.set()

    def disconnect(self, *, forget: bool = True) -> None:
        """Close the session; `forget` drops the conversation too (the next one starts fresh)."""
        self._want = False
        self._changed.set()
        if forget:
            self.history.clear()
            self._turn_audio.clear()
            self._commit_pending = False
            self._outbox.clear()
            self._wanted.clear()
            for tasks in self._tool_tasks.values():
                for task in tasks:
                    task.cancel()
            self._tool_tasks.clear()

    @property
    def session_id(self) -> str:
        return self._session.session_id if self._session is not None else ""

    @property
    def is_up(self) -> bool:
        return self._session is not None and self._session.is_open

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
        if len(self._turn_audio) == self._turn_audio.maxlen and self._session is None:
            self._lost_frames += 1  # the oldest unsent frame falls out of the outage buffer
        self._turn_audio.append(frame)
        if self._session is not None:
            self._session.append_audio(frame)

    def commit_input(self) -> None:
        self._commit_pending = True
        if self._session is not None:
            self._session.commit_input()

    def clear_input(self) -> None:
        self._turn_audio.clear()
        self._commit_pending = False
        if self._session is not None:
            self._session.clear_input()

    def create_response(self, instructions: str | None = None) -> None:
        """Ask for an answer (sent when no other is in flight); `instructions` for this answer only."""
        self._wanted.append(instructions)
        self._pump_responses()

    def send_image(self, image_url: str, prompt: str | None = None) -> None:
        """A picture into the conversation (not replayed after a reconnect: the history keeps text only)."""
        self._send_or_keep(ev.user_image(image_url, prompt))

    def cancel_response(self) -> None:
        """Stop the answer in flight (and any answer still waiting to be asked for)."""
        self._wanted.clear()
        self._no_follow_up.update(self._tool_tasks)  # tool outputs still go, but ask for no answer
        if self._response == "?":
            self._cancel_when_created = True
        elif self._response not in (None, "busy") and self._session is not None:
            self._session.cancel_response()

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.history.on_truncate(item_id, audio_end_ms, self._audio_ms.get(item_id, 0.0))
        if self._session is not None:
            self._session.truncate(item_id, audio_end_ms)

    def send_text(self, text: str) -> None:
        """A typed user message (the control socket's `say`), kept in the history too."""
        event = ev.user_text(text)
        event["item"]["id"] = f"item_ev{int(self._clock() * 1000) % 10**12:012d}"
        self.history.add_text(event["item"]["id"], "user", text)
        self._send_or_keep(event)

    def _send_or_keep(self, event: dict[str, Any]) -> None:
        if self._session is not None:
            self._session.send(event)
        else:
            self._outbox.append(event)

    # ---- one response in flight -----------------------------------------------------------------------

    def _pump_responses(self) -> None:
        if not self._wanted or self._response is not None or self._session is None:
            return
        wait = self._hold_until - self._clock()
        if wait > 0:
            if self._pump_timer is None:
                self._pump_timer = asyncio.get_running_loop().call_later(wait, self._pump_after_hold)
            return
        self._in_flight = self._wanted.popleft()
        self._response = "?"
        self._response_audio = False
        self._session.create_response(self._in_flight)

    def _pump_after_hold(self) -> None:
        self._pump_timer = None
        self._pump_responses()

    def _busy_fallback(self) -> None:
        if self._response == "busy":
            self._response = None
            self._pump_responses()

    # ---- events from the current session --------------------------------------------------------------

    def _handle(self, session: RealtimeSession, event: ev.ServerEvent) -> None:
        if session is not self._session:
            # A session we rolled over from may still finish a transcript: keep it, act on nothing else.
            if isinstance(event, ev.Transcript):
                self.history.on_text(event.item_id, event.role, event.text, event.final)
            return
        match event:
            case ev.ItemAdded(item_id=item_id, role=role):
                self.history.on_item(item_id, role)
            case ev.Transcript(role=role, item_id=item_id, text=text, final=final):
                self.history.on_text(item_id, role, text, final)
            case ev.InputCommitted():
                self._turn_audio.clear()
                self._commit_pending = False
            case ev.ResponseCreated(response_id=rid):
                self._response = rid
                self._response_audio = False
                if self._cancel_when_created:
                    self._cancel_when_created = False
                    session.cancel_response()
            case ev.AudioDelta(item_id=item_id, samples=samples):
                self._response_audio = True
                self._audio_ms[item_id] = self._audio_ms.get(item_id, 0.0) + len(samples) / 24
            case ev.FunctionCall():
                self.history.add_tool_call(event.item_id, event.call_id, event.name, event.arguments)
                task = self._spawn(self._call_tool(event), f"tool-{event.name}")
                self._tool_tasks.setdefault(event.response_id, []).append(task)
            case ev.ResponseDone():
                self._response_done(event)
            case ev.ServerError(code="response_cancel_not_active"):
                # Our cancel crossed the server's own (server VAD interrupts too) or the answer's end: benign.
                log.debug("cancel arrived after the response had ended")
                return
            case ev.ServerError(code="conversation_already_has_active_response"):
                # A response we did not ask for (server VAD) is under way: ours goes after its response.done.
                self._wanted.appendleft(self._in_flight)
                self._response = "busy"
                asyncio.get_running_loop().call_later(BUSY_FALLBACK_S, self._busy_fallback)
        self._on_event(event)

    def _response_done(self, done: ev.ResponseDone) -> None:
        if self._response in (done.response_id, "?", "busy"):
            self._response = None
        if self.usage is not None and done.usage:
            cost = self.usage.add(done.usage)
            self._emit(
                {"event": "usage", "response_id": done.response_id, "usd": round(cost, 6), **self.usage.snapshot()}
            )
        if done.status == "failed":
            self._response_failed(done)
        if done.response_id in self._tool_tasks or done.function_calls:
            self._spawn(self._answer_tools(done.response_id, done.function_calls), "tool-outputs")
        self._pump_responses()

    def _response_failed(self, done: ev.ResponseDone) -> None:
        code, message = done.error_code or "", done.error_message or ""
        if code in RATE_LIMIT_CODES or "rate limit" in message.lower():
            wait = retry_after_from_message(message) or self.policy.backoff(self.attempts + 3)
            self._hold_until = max(self._hold_until, self._clock() + wait)
            log.warning("rate limited: no new answer for %.1f s (%s)", wait, message)
        elif code == "insufficient_quota" and self._session is not None:
            # Nothing will work until somebody adds credit: end the session as a fatal failure.
            self._session.fail(SessionError("quota", f"the account has no quota left: {message}"))

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A background task the manager keeps a reference to (and cancels when it stops)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---- tools ------------------------------------------------------------------------------------------

    async def _call_tool(self, call: ev.FunctionCall) -> tuple[str, str]:
        log.info("tool call %s(%s)", call.name, call.arguments[:200])
        output = await run_tool(self.tools, call.name, call.arguments, call.call_id)
        self.history.add_tool_output(call.call_id, output)
        return call.call_id, output

    async def _answer_tools(self, response_id: str, call_ids: tuple[str, ...]) -> None:
        """After the calling response is done: every call's output, then one response.create."""
        tasks = self._tool_tasks.pop(response_id, [])
        results = dict(await asyncio.gather(*tasks)) if tasks else {}
        for call_id in call_ids:
            if call_id not in results:  # a call announced only in response.done: never leave it unanswered
                results[call_id] = '{"error": "the call arrived incomplete and was not run"}'
        for call_id, output in results.items():
            self._send_or_keep(ev.function_call_output(call_id, output))
        if response_id in self._no_follow_up:
            self._no_follow_up.discard(response_id)
        elif results:
            self.create_response()

    def _tools_changed(self) -> None:
        if self._session is not None:
            self._session.send(ev.tools_update(self.tools.declarations()))

    # ---- the connection's life --------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a session while one is wanted; runs until cancelled."""
        try:
            while True:
                if not self._want:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                error = await self._open()
                was_up = error is None
                if error is None:
                    error = await self._serve()
                    if error is None:
                        continue
                    self._lost(error)
                decision = self.policy.after(error, self.attempts)
                lived = self._clock() - self._connected_at
                if error.kind == "expired" and (not was_up or lived < self.settings.reconnect.healthy_after_s):
                    # a server that ends every session at once is failing, not rolling over: back off
                    decision = self.policy.after(SessionError("network", error.message), self.attempts)
                if decision.counts_as_failure:
                    self.attempts += 1
                self._log_failure(error, decision.delay_s, was_up)
                self._on_link(LinkStatus("down", error.message, decision.needs_person, decision.delay_s))
                await self._pause(decision.delay_s)
        finally:
            for task in list(self._background):
                task.cancel()
            await self._close_session()

    def _log_failure(self, error: SessionError, delay_s: float, was_up: bool) -> None:
        """A failure at WARNING; repeats of the same one at DEBUG, with a summary every 10 (logs stay readable)."""
        if was_up or self.attempts <= 1 or error.message != self._last_failure:
            log.warning("realtime (%s): %s; next attempt in %.1f s", error.kind, error.message, delay_s)
        elif self.attempts % 10 == 0:
            log.warning("realtime: still failing after %d attempts: %s", self.attempts, error.message)
        else:
            log.debug("realtime attempt %d failed: %s", self.attempts, error.message)
        self._last_failure = error.message

    async def _pause(self, seconds: float) -> None:
        """Sleep before the next attempt; a disconnect ends the pause early (a connect does not)."""
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        changed = asyncio.ensure_future(self._wait_unwanted())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            changed.cancel()

    async def _wait_unwanted(self) -> None:
        while self._want:
            self._changed.clear()
            await self._changed.wait()

    async def _open(self) -> SessionError | None:
        self._on_link(LinkStatus("connecting"))
        try:
            secret = await self._secrets.secret()
        except CredentialsError as exc:
            self.attempt_log.append((self._clock(), "auth"))
            return SessionError("auth", str(exc))
        except TokenUnavailable as exc:
            self.attempt_log.append((self._clock(), "network"))
            return SessionError("network", str(exc))
        session = self._new_session(secret)
        try:
            await session.open()
        except SessionError as exc:
            self.attempt_log.append((self._clock(), exc.kind))
            return exc
        self.attempt_log.append((self._clock(), "ok"))
        self._install(session)
        self._on_link(LinkStatus("up"))
        return None

    def _new_session(self, secret: str) -> RealtimeSession:
        def on_event(event: ev.ServerEvent) -> None:
            self._handle(session, event)

        session = self._factory(self.settings, secret, on_event, tools=self.tools.declarations())
        return session

    def _install(self, session: RealtimeSession) -> None:
        """Make `session` the current one and give it everything the conversation needs to carry on."""
        self._session = session
        self._connected_at = self._clock()
        self.connects += 1
        if self.usage is not None:
            self.usage.new_session()
        replay = self.history.replay()
        for event in replay:
            session.send(event)
        audio_ms = len(self._turn_audio) * self._frame_ms
        for frame in self._turn_audio:
            session.append_audio(frame)
        if self._commit_pending:
            if audio_ms >= MIN_COMMIT_MS:
                session.commit_input()
            else:
                self._commit_pending = False
        for event in self._outbox:
            session.send(event)
        self._outbox.clear()
        if self._lost_frames:
            lost_ms = self._lost_frames * self._frame_ms
            log.warning("%d ms of audio captured during the outage did not fit the outage buffer", lost_ms)
            self._emit(
                {"event": "notice", "code": "audio_dropped", "message": f"{lost_ms} ms of audio lost in the outage"}
            )
            self._lost_frames = 0
        if replay or audio_ms:
            log.info("session %s: replayed %d items and %d ms of audio", session.session_id, len(replay), audio_ms)
        self._emit({"event": "session", "status": "open", "session_id": session.session_id, "replayed": len(replay)})
        self._pump_responses()

    def _lost(self, error: SessionError) -> None:
        """The session that was up is gone: settle what was in flight."""
        if self._clock() - self._connected_at >= self.settings.reconnect.healthy_after_s:
            self.attempts = 0  # it had been healthy: start the backoff again from the bottom
        if self._response is not None:
            if self._response_audio and self._response not in ("?", "busy"):
                # The user heard part of it: report it cut (asking again would repeat what they heard).
                self._on_event(ev.ResponseDone(self._response, "failed", None, "connection_lost", error.message))
            else:
                self._wanted.appendleft(self._in_flight)  # never started: ask again in the next session
            self._response = None
        self._cancel_when_created = False

    async def _serve(self) -> SessionError | None:
        """Wait while the session lives; roll it over when due. None = closed on purpose."""
        assert self._session is not None
        rollover_at = self._connected_at + self.settings.reconnect.rollover_after_s
        while True:
            session = self._session
            if not self._want:
                await self._close_session()
                return None
            if self._clock() >= rollover_at and self._quiet():
                if not await self._rollover():
                    rollover_at = self._clock() + ROLLOVER_RETRY_S
                else:
                    rollover_at = self._connected_at + self.settings.reconnect.rollover_after_s
                continue
            closed = asyncio.ensure_future(session.wait_closed())
            changed = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({closed, changed}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            self._changed.clear()
            if closed.done():
                self._session = None
                await session.close()
                return closed.result()
            closed.cancel()

    def _quiet(self) -> bool:
        return self._response is None and not self._commit_pending and not self._tool_tasks and self._between_turns()

    async def _rollover(self) -> bool:
        """Make before break: open a fresh session, replay into it, switch, then close the old one."""
        old = self._session
        age_min = (self._clock() - self._connected_at) / 60
        try:
            new = self._new_session(await self._secrets.secret())
            await new.open()
        except (SessionError, CredentialsError, TokenUnavailable) as exc:
            log.warning("rollover failed, keeping the current session: %s", exc)
            return False
        self._install(new)
        log.info("rolled over to session %s after %.1f min", new.session_id, age_min)
        self._emit({"event": "session", "status": "rolled_over", "session_id": new.session_id})
        if old is not None:
            await old.close()
        return True

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            if self._response not in (None, "?", "busy"):
                session.cancel_response()  # do not leave an answer running (and billed) on the server
            self._response = None
            with contextlib.suppress(Exception):
                await session.close()
