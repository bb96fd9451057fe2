"""A local server that speaks the OpenAI Realtime API (GA, WebSocket) well enough for edgevoice to run on.

Used by `edgevoice demo`, `edgevoice emulator` and every test: no network, no key, no cost. It answers
with scripted replies (tones with a transcript, or tool calls) and can inject the faults a field device
meets: handshake failures, drops, stalls, close codes, session expiry, failed responses, garbage frames.

This module is the listening socket, the registry of connections and the fault injection; the rules of
the opening handshake are `handshake.HandshakeRules`, the protocol of one connection is
`session.EmulatorSession`. It is a leaf: the standard library, numpy and websockets only, so a separate
process can run it without the rest of edgevoice.

Limits: one client frame may be at most 16 MiB (`max_size`; larger frames are closed by websockets with
code 1009), and one event at most 15 MiB (larger ones get an `error` event). The server sends no
keepalive pings of its own: liveness is the client's job, and `stall()` must look like a dead network.

Usage:
    async with RealtimeEmulator(EmulatorSettings(realtime_factor=0)) as emulator:
        emulator.queue_reply(SpokenReply("Hi.", (Tone(500.0, 0.5),)))
        ... connect to f"{emulator.url}?model=gpt-realtime" ...
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.exceptions import ConnectionClosed, ProtocolError
from websockets.frames import Close
from websockets.http11 import Request, Response

from .handshake import Admission, EmulatorConnection, HandshakeRecord, HandshakeRules, close_reason
from .script import (
    EmulatorSettings,
    FunctionCallReply,
    Reply,
    ResponseFailure,
    SpokenReply,
)
from .server_events import BETA_DISABLED_MESSAGE, SESSION_EXPIRED_MESSAGE, error_event
from .session import EmulatorSession

logger = logging.getLogger("edgevoice.emulator")
# websockets logs request headers (credentials included) and every frame at debug level: drop those records
# (a filter, not a level, so that the application's own threshold still applies above DEBUG).
_websockets_logger = logging.getLogger("edgevoice.emulator.websockets")
_websockets_logger.addFilter(lambda record: record.levelno > logging.DEBUG)

MAX_FRAME_BYTES = 16 * 1024 * 1024
DEFAULT_RATE_LIMIT_MESSAGE = "Rate limit reached for requests per day (RPD). Please try again in 20s."


class _Link:
    """A session's view of the emulator: its own connection plus the shared script and records."""

    def __init__(self, emulator: RealtimeEmulator, connection: EmulatorConnection) -> None:
        self._emulator = emulator
        self._connection = connection

    @property
    def settings(self) -> EmulatorSettings:
        return self._emulator.settings

    async def send_event(self, event: dict[str, Any]) -> None:
        await self._emulator._send_event(self._connection, event)

    async def close(self, code: int, reason: str) -> None:
        await self._connection.close(code, close_reason(reason))

    def next_reply(self) -> Reply:
        return self._emulator._replies.popleft() if self._emulator._replies else SpokenReply()

    def take_response_failure(self) -> ResponseFailure | None:
        return self._emulator._failures.popleft() if self._emulator._failures else None

    def record_received(self, event: dict[str, Any]) -> None:
        self._emulator._note_received(event)


class RealtimeEmulator:
    """The emulator server: start it, point a client at `url`, script it, inject faults, stop it."""

    def __init__(self, settings: EmulatorSettings = EmulatorSettings()) -> None:  # noqa: B008 (frozen)
        self.settings = settings
        self.received: list[dict[str, Any]] = []
        """Every client event parsed (valid JSON objects), all connections, in order of arrival."""
        self.sent: list[dict[str, Any]] = []
        """Every server event sent, including injected dicts (once per connection they went to)."""
        self.handshakes: list[HandshakeRecord] = []
        self.sessions_started = 0
        self._server: Server | None = None
        self._connections: set[EmulatorConnection] = set()
        self._sessions: dict[EmulatorConnection, EmulatorSession] = {}
        self._replies: collections.deque[Reply] = collections.deque()
        self._failures: collections.deque[ResponseFailure] = collections.deque()
        self._handshake_rules = HandshakeRules()
        self._received_counts: collections.Counter[str] = collections.Counter()
        self._last_received: dict[str, dict[str, Any]] = {}
        self._received_signal: asyncio.Event | None = None
        self._unstalled: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._received_signal = asyncio.Event()
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._server = await websockets_serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            process_response=self._process_response,
            create_connection=EmulatorConnection,
            compression=None,  # base64 audio does not compress; the SDK turns deflate off too
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,
            close_timeout=2.0,
            server_header="edgevoice-emulator",
            logger=_websockets_logger,
        )
        logger.debug("Realtime emulator listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), as a server shutting down does; stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stall(False)  # a stalled connection could not complete its close handshake
        server.close()
        await server.wait_closed()
        logger.info("Realtime emulator stopped")

    async def __aenter__(self) -> RealtimeEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The OpenAI-style endpoint, without the `?model=` query the client must add."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.settings.host, self.settings.host)
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}/v1/realtime"

    @property
    def connection_count(self) -> int:
        """WebSocket connections open now."""
        return len(self._connections)

    # --- scripting -----------------------------------------------------------------------------------
    def queue_reply(self, reply: SpokenReply | FunctionCallReply) -> None:
        """The next response uses this reply (queued replies are used in order; then `SpokenReply()`)."""
        self._replies.append(reply)

    async def wait_for(self, event_type: str, timeout: float = 5.0, *, count: int = 1) -> dict[str, Any]:
        """Wait until `count` client events of `event_type` have been received in total; return the last."""
        assert self._received_signal is not None, "start the emulator first"
        try:
            async with asyncio.timeout(timeout):
                while self._received_counts[event_type] < count:
                    await self._received_signal.wait()
        except TimeoutError:
            seen = self._received_counts[event_type]
            raise TimeoutError(f"waited {timeout} s for {count} '{event_type}' client events, got {seen}") from None
        return self._last_received[event_type]

    def set_delay(self, response_delay_s: float) -> None:
        """Change the response latency at run time (for responses that have not reached it yet)."""
        self.settings = replace(self.settings, response_delay_s=response_delay_s)

    # --- fault injection -----------------------------------------------------------------------------
    async def inject(self, event: dict[str, Any] | str) -> None:
        """Send `event` as is to every open session (a str is sent as a raw text frame, garbage allowed)."""
        text = event if isinstance(event, str) else json.dumps(event)
        for connection in list(self._sessions):
            try:
                await connection.send(text)
            except ConnectionClosed:
                continue
            if isinstance(event, dict) and self.settings.record_events:
                self.sent.append(event)

    async def close_connections(self, code: int, reason: str = "") -> None:
        """Close every open connection with a close handshake carrying `code` (e.g. 1011, 1012, 4000)."""
        try:
            Close(code, "").check()
        except ProtocolError:
            raise ValueError(f"{code} cannot be sent in a close frame") from None
        connections = list(self._connections)
        self._resume_reading(connections)
        await asyncio.gather(*(c.close(code, close_reason(reason)) for c in connections), return_exceptions=True)

    def drop_connections(self) -> None:
        """Cut every connection abruptly (TCP abort, no close frame): the client sees 1006."""
        for connection in list(self._connections):
            connection.transport.abort()

    def stall(self, stalled: bool = True) -> None:
        """Freeze (or thaw) every connection, like a dead network path: no client events are read, no
        pongs answered, no session events sent. Connections opened while stalled freeze too."""
        assert self._unstalled is not None, "start the emulator first"
        if stalled:
            self._unstalled.clear()
            for connection in self._connections:
                connection.transport.pause_reading()
        else:
            self._unstalled.set()
            self._resume_reading(list(self._connections))

    def refuse_tools(self, *names: str) -> None:
        """From now on, refuse every `session.update` that declares one of these function tools (none: stop)."""
        self.settings = replace(self.settings, refused_tools=names)

    def fail_handshakes(self, status: int, count: int = 1, *, retry_after: float | None = None) -> None:
        """Answer the next `count` handshakes with HTTP `status` (and a Retry-After header if given)."""
        self._handshake_rules.fail_next(status, count, retry_after)

    def fail_next_response(self, code: str = "rate_limit_exceeded", message: str = DEFAULT_RATE_LIMIT_MESSAGE) -> None:
        """The next response ends with `response.done` status "failed" and this `status_details.error`."""
        self._failures.append(ResponseFailure(code, message))

    async def expire_sessions(self, *, via: Literal["error", "close"] = "error") -> None:
        """End every session as at its time limit: an error `session_expired` then close 1001 ("error"),
        or the close 1001 alone ("close"). The reason is SESSION_EXPIRED_MESSAGE (60 minutes)."""
        sessions = list(self._sessions.values())
        await asyncio.gather(*(s.expire(via, SESSION_EXPIRED_MESSAGE) for s in sessions), return_exceptions=True)

    # --- handshake -----------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        assert isinstance(connection, EmulatorConnection)
        return self._handshake_rules.decide(connection, request, self.settings)

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        """Record every handshake with the status actually answered."""
        record = HandshakeRecord.of(request, response.status_code)
        self.handshakes.append(record)
        if record.status != 101:
            logger.info("handshake for %s refused with HTTP %d", record.path, record.status)

    # --- connections ---------------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, EmulatorConnection)
        self._connections.add(connection)
        try:
            if connection.admission is Admission.BAD_KEY:
                await self._refuse(connection, "invalid_api_key", connection.refusal_message, 3000)
            elif connection.admission is Admission.BETA:
                await self._refuse(connection, "beta_api_shape_disabled", BETA_DISABLED_MESSAGE, 4000)
            else:
                await self._run_session(connection)
        except Exception:
            logger.exception("emulator connection handler failed")
        finally:
            self._connections.discard(connection)

    async def _run_session(self, connection: EmulatorConnection) -> None:
        assert self._unstalled is not None
        if not self._unstalled.is_set():
            connection.transport.pause_reading()
        session = EmulatorSession(_Link(self, connection), connection.model)
        self._sessions[connection] = session
        self.sessions_started += 1
        logger.info("session started (model %s)", connection.model)
        try:
            await session.open()
            while True:
                await self._unstalled.wait()
                try:
                    frame = await connection.recv()
                except ConnectionClosed as closed:
                    logger.info("session ended: %s", closed)
                    return
                await self._unstalled.wait()
                await session.handle_frame(frame)
        finally:
            del self._sessions[connection]
            await session.shutdown()

    async def _refuse(self, connection: EmulatorConnection, code: str, message: str, close_code: int) -> None:
        """Accept the socket only to say why it is refused, then close it with `close_code`."""
        logger.info("connection refused after upgrade (%s), closing with %d", code, close_code)
        await self._send_event(connection, error_event(code, message))
        await connection.close(close_code, close_reason(message))

    async def _send_event(self, connection: ServerConnection, event: dict[str, Any]) -> None:
        """Send one server event (held while stalled); a connection already gone is not an error."""
        assert self._unstalled is not None
        await self._unstalled.wait()
        try:
            await connection.send(json.dumps(event))
        except ConnectionClosed:
            return
        if self.settings.record_events:
            self.sent.append(event)

    def _note_received(self, event: dict[str, Any]) -> None:
        if self.settings.record_events:
            self.received.append(event)
        event_type = event.get("type")
        # Types are client-chosen: stop counting new ones after a while, so garbage cannot grow memory.
        if isinstance(event_type, str) and (event_type in self._received_counts or len(self._received_counts) < 256):
            self._received_counts[event_type] += 1
            self._last_received[event_type] = event
            assert self._received_signal is not None
            self._received_signal.set()
            self._received_signal = asyncio.Event()

    def _resume_reading(self, connections: list[EmulatorConnection]) -> None:
        for connection in connections:
            # websockets pauses reading itself when its frame queue is full; leave that pause alone.
            queue_full = getattr(connection.recv_messages, "paused", False)
            if not queue_full and not connection.transport.is_closing():
                connection.transport.resume_reading()


async def serve(settings: EmulatorSettings = EmulatorSettings()) -> None:  # noqa: B008 (frozen)
    """Run an emulator until cancelled (the `edgevoice emulator` command)."""
    async with RealtimeEmulator(settings) as emulator:
        logger.info("connect to %s?model=gpt-realtime (Ctrl-C stops)", emulator.url)
        await asyncio.Event().wait()
