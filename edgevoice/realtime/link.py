"""The link's life: a Realtime session while one is wanted, reconnected after every loss, rolled over in time.

`SessionLink.run()` keeps a session open while `connect()` is in force: it fetches a credential, opens a
`RealtimeSession`, hands it to its owner (`LinkOwner.installed`), waits while it lives, and after a loss
asks `RetryPolicy` how long to wait (fast with full jitter for transient failures, as the server asks for
rate limits, every few minutes when a person must fix something) before the next attempt. Before the
server's time limit, between turns, it opens the next session before closing the old one (make before break).
What a session carries (history, audio, responses) is the owner's business, not the link's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from edgevoice.realtime.credentials import CredentialsError, SecretSource, TokenUnavailable
from edgevoice.realtime.failures import SessionError, ToolRefused
from edgevoice.realtime.retry import RetryPolicy
from edgevoice.realtime.settings import ReconnectSettings

if TYPE_CHECKING:
    from edgevoice.realtime.session import RealtimeSession

log = logging.getLogger(__name__)

ROLLOVER_RETRY_S = 30.0


@dataclass(frozen=True)
class LinkStatus:
    """The link's news for the conversation: connecting, up, or down (why, and whether a person must act)."""

    state: Literal["connecting", "up", "down"]
    message: str = ""
    needs_person: bool = False
    retry_in_s: float | None = None


class LinkOwner(Protocol):
    """What the link asks of the session manager that owns it."""

    def make_session(self, secret: str) -> RealtimeSession: ...
    def session_installed(self, session: RealtimeSession, *, rollover: bool) -> None: ...
    def session_lost(self, error: SessionError) -> None: ...
    def session_closing(self, session: RealtimeSession) -> None: ...
    def may_roll_over(self) -> bool: ...
    def link_status(self, status: LinkStatus) -> None: ...
    def tools_refused(self, error: ToolRefused) -> bool: ...


class SessionLink:
    """One session at a time, while wanted; see the module docstring."""

    def __init__(
        self,
        settings: ReconnectSettings,
        secrets: SecretSource,
        owner: LinkOwner,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.policy = RetryPolicy(settings)
        self._secrets = secrets
        self._owner = owner
        self._clock = clock
        self._sleep = sleep
        self._want = False
        self._changed = asyncio.Event()
        self.session: RealtimeSession | None = None
        self.connected_at = 0.0
        self.attempts = 0  # failures in a row
        self.connects = 0
        self.attempt_log: list[tuple[float, str]] = []  # (clock, outcome) of every attempt, for benchmarks
        self._not_before = 0.0  # no attempt before this (clock): the backoff outlives a disconnect
        self._last_failure = ""

    def connect(self) -> None:
        if not self._want:
            self._want = True
            self._changed.set()

    def disconnect(self) -> None:
        self._want = False
        self._changed.set()

    @property
    def is_up(self) -> bool:
        return self.session is not None and self.session.is_open

    async def run(self) -> None:
        """Keep a session while one is wanted; runs until cancelled."""
        try:
            while True:
                if not self._want:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                wait = self._not_before - self._clock()
                if wait > 0:  # still in the backoff of the last failure: a new request does not shorten it
                    await self._pause(wait)
                    continue
                error = await self._open()
                if isinstance(error, ToolRefused) and self._owner.tools_refused(error):
                    continue  # those tools are dropped: open it again at once, without them
                was_up = error is None
                if error is None:
                    error = await self._serve()
                    if error is None:
                        continue
                    if self._clock() - self.connected_at >= self.settings.healthy_after_s:
                        self.attempts = 0  # it had been healthy: start the backoff again from the bottom
                    self._owner.session_lost(error)
                decision = self.policy.after(error, self.attempts)
                lived = self._clock() - self.connected_at
                if error.kind == "expired" and (not was_up or lived < self.settings.healthy_after_s):
                    # a server that ends every session at once is failing, not rolling over: back off
                    decision = self.policy.after(SessionError("network", error.message), self.attempts)
                if decision.counts_as_failure:
                    self.attempts += 1
                self._log_failure(error, decision.delay_s, was_up)
                self._not_before = self._clock() + decision.delay_s
                self._owner.link_status(LinkStatus("down", error.message, decision.needs_person, decision.delay_s))
        finally:
            await self.close_session()

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
        """Sleep before the next attempt; a disconnect ends the pause early (a connect does not), but the
        attempt still waits for the end of the backoff (`_not_before`) when the link is wanted again."""
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
        self._owner.link_status(LinkStatus("connecting"))
        try:
            secret = await self._secrets.secret()
        except CredentialsError as exc:
            self.attempt_log.append((self._clock(), "auth"))
            return SessionError("auth", str(exc))
        except TokenUnavailable as exc:
            self.attempt_log.append((self._clock(), "network"))
            return SessionError("network", str(exc))
        session = self._owner.make_session(secret)
        try:
            await session.open()
        except SessionError as exc:
            self.attempt_log.append((self._clock(), exc.kind))
            return exc
        self.attempt_log.append((self._clock(), "ok"))
        self._install(session, rollover=False)
        self._owner.link_status(LinkStatus("up"))
        return None

    def _install(self, session: RealtimeSession, *, rollover: bool) -> None:
        self.session = session
        self.connected_at = self._clock()
        self.connects += 1
        self._owner.session_installed(session, rollover=rollover)

    async def _serve(self) -> SessionError | None:
        """Wait while the session lives; roll it over when due. None = closed on purpose."""
        assert self.session is not None
        rollover_at = self.connected_at + self.settings.rollover_after_s
        while True:
            session = self.session
            if not self._want:
                await self.close_session()
                return None
            if self._clock() >= rollover_at and self._owner.may_roll_over():
                if not await self._rollover():
                    rollover_at = self._clock() + ROLLOVER_RETRY_S
                else:
                    rollover_at = self.connected_at + self.settings.rollover_after_s
                continue
            closed = asyncio.ensure_future(session.wait_closed())
            changed = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({closed, changed}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            self._changed.clear()
            if closed.done():
                self.session = None
                await session.close()
                return closed.result()
            closed.cancel()

    async def _rollover(self) -> bool:
        """Make before break: open a fresh session, replay into it, switch, then close the old one."""
        old = self.session
        age_min = (self._clock() - self.connected_at) / 60
        try:
            new = self._owner.make_session(await self._secrets.secret())
            await new.open()
        except (SessionError, CredentialsError, TokenUnavailable) as exc:
            log.warning("rollover failed, keeping the current session: %s", exc)
            if isinstance(exc, ToolRefused):
                self._owner.tools_refused(exc)  # the next try declares the others only
            return False
        self._install(new, rollover=True)
        log.info("rolled over to session %s after %.1f min", new.session_id, age_min)
        if old is not None:
            await old.close()
        return True

    async def close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self._owner.session_closing(session)
            with contextlib.suppress(Exception):
                await session.close()
