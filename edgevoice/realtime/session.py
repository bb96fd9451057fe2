"""One connection to the Realtime API: open, configure, stream events both ways, close.

`RealtimeSession.open()` connects with the credentials in a header, waits for `session.created`, sends
our `session.update` and waits for `session.updated`. Then two tasks run, one per direction: a reader
that parses every server frame into a typed event for `on_event`, and a writer that drains the outgoing
queue, so that nobody sending audio ever waits on the network. Any failure ends in a `SessionError`
with a `kind` the caller can act on and a message an operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from edgevoice import __version__
from edgevoice.realtime import events, server_events
from edgevoice.realtime.failures import FATAL_ERROR_KINDS, ErrorKind, SessionError, ToolRefused, classify_close
from edgevoice.realtime.settings import RealtimeSettings
from edgevoice.realtime.tool_schema import refused_tools
from edgevoice.realtime.urls import is_loopback_host

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024  # session.created and item retrievals can exceed websockets' 1 MiB default
MAX_QUEUED_EVENTS = 1000  # ~20 s of 20 ms audio frames; beyond that the link is not keeping up
MAX_QUEUED_BYTES = 12 * 1024 * 1024  # two pictures of the control socket's largest, or ~9 min of audio

# Close codes edgevoice itself sends when a server breaks the rules, and what the server did.
_OUR_REASONS = {1002: "a frame that breaks the WebSocket protocol", 1007: "text that is not UTF-8",
                1009: f"a frame over {MAX_FRAME_BYTES // 2**20} MiB"}  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """Where a session connects and how it authenticates, from `endpoint_for`: the WebSocket URL with its
    `?model=`, and the auth header (OpenAI's bearer token or Azure's `api-key`). The headers hold the secret,
    and so does the default repr: log `host`, never the endpoint itself."""

    url: str
    headers: dict[str, str] = field(repr=False)

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or "?"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def endpoint_for(settings: RealtimeSettings, api_key: str) -> Endpoint:
    """The URL (with `?model=`) and the auth header for the configured provider."""
    parts = urllib.parse.urlsplit(settings.url)
    query = urllib.parse.parse_qsl(parts.query)
    if not any(k == "model" for k, _ in query):
        query.append(("model", settings.model))
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    headers = {"api-key": api_key} if settings.provider == "azure" else {"Authorization": f"Bearer {api_key}"}
    return Endpoint(url, headers)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils  # only for an HTTP 429 with a date

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _handshake_error(exc: Exception, endpoint: Endpoint) -> SessionError:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status < 400:
            return SessionError(
                "network",
                f"{endpoint.host} answered HTTP {status} instead of a WebSocket (a captive portal or a proxy?)",
                status=status,
            )
        if status in (401, 403):
            return SessionError(
                "auth",
                f"{endpoint.host} refused the API key (HTTP {status}); check the key "
                "(systemd credential, [realtime] api_key_file or OPENAI_API_KEY) and its access to the model",
                status=status,
            )
        if status == 429:
            wait = _retry_after(exc.response.headers.get("Retry-After"))
            return SessionError(
                "rate_limit", f"{endpoint.host} is rate limiting us (HTTP 429)", status=status, retry_after_s=wait
            )
        if status >= 500:
            return SessionError("server", f"{endpoint.host} failed the handshake (HTTP {status})", status=status)
        return SessionError(
            "protocol",
            f"{endpoint.host} refused the handshake (HTTP {status}): check [realtime] url, provider and model",
            status=status,
        )
    if isinstance(exc, InvalidURI):
        return SessionError("protocol", f"[realtime] url is not a WebSocket URL: {exc}")
    if isinstance(exc, TimeoutError):
        return SessionError("network", f"{endpoint.host} did not answer in time")
    if isinstance(exc, OSError):
        return SessionError("network", f"cannot reach {endpoint.host}: {exc.strerror or exc}")
    return SessionError("network", f"handshake with {endpoint.host} failed: {exc}")


class RealtimeSession:
    """A single Realtime API session over one WebSocket connection."""

    def __init__(
        self,
        settings: RealtimeSettings,
        api_key: str,
        on_event: Callable[[server_events.ServerEvent], None],
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.tools = tools
        self.endpoint = endpoint_for(settings, api_key)
        self._on_event = on_event
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed: asyncio.Future[SessionError] = asyncio.get_running_loop().create_future()
        self._closing: asyncio.Future[None] | None = None
        self.session_id = ""
        self.dropped_events = 0
        self.queued_bytes = 0  # encoded events waiting for the writer
        self.malformed_events = 0
        # Microphone audio held back to be sent as one append (see `append_audio`).
        self._audio: list[np.ndarray] = []
        self._audio_samples = 0

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and configure; raises SessionError."""
        timeout = self.settings.connect_timeout_s
        try:
            self._ws = await connect(
                self.endpoint.url,
                additional_headers=self.endpoint.headers,
                user_agent_header=f"edgevoice/{__version__}",
                compression=None,  # base64 audio does not compress; deflate would only cost CPU
                max_size=MAX_FRAME_BYTES,
                open_timeout=timeout,
                # a dead link (no pong) is noticed within interval + timeout, not at the next TCP timeout
                ping_interval=self.settings.reconnect.ping_interval_s,
                ping_timeout=self.settings.reconnect.ping_timeout_s,
                close_timeout=1,  # SIGTERM must finish within 2 s even if the server ignores our close
                proxy=None if self.endpoint.is_loopback else True,
            )
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise _handshake_error(exc, self.endpoint) from None
        try:
            async with asyncio.timeout(timeout):
                await self._expect(server_events.SessionStarted)
                await self._ws.send(events.encode(events.session_update(self.settings, self.tools)))
                await self._expect(server_events.SessionConfigured)
        except TimeoutError:
            await self._abort()
            raise SessionError(
                "network", f"{self.endpoint.host} did not confirm the session in {timeout:.0f} s"
            ) from None
        except ConnectionClosed:
            await self._abort()
            raise self._close_error() from None
        except SessionError:
            await self._abort()
            raise
        self._tasks = [
            asyncio.create_task(self._read(), name="realtime-reader"),
            asyncio.create_task(self._write(), name="realtime-writer"),
        ]
        log.info("realtime session %s open (%s)", self.session_id or "?", self.settings.model)

    async def _expect(self, kind: type) -> None:
        """Read frames until one of `kind`; an error event during set-up fails the session (ToolRefused when it
        blames tools our session.update declared)."""
        assert self._ws is not None
        while True:
            event = self._parse(await self._ws.recv())
            if isinstance(event, server_events.SessionStarted):
                self.session_id = event.session_id
            if isinstance(event, server_events.ServerError):
                blamed = refused_tools(event.message, event.param, self.tools or [])
                if blamed and kind is server_events.SessionConfigured:  # our session.update declared them
                    raise ToolRefused(blamed, event.message)
                kind_: ErrorKind = FATAL_ERROR_KINDS.get(event.code or "", "protocol")  # type: ignore[assignment]
                raise SessionError(kind_, f"the server refused the session: {event.message} ({event.code})")
            if isinstance(event, kind):
                return

    async def wait_closed(self) -> SessionError:
        """Wait until the session ends; returns why."""
        return await asyncio.shield(self._closed)

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._closed.done()

    async def close(self, flush_s: float = 0.5) -> None:
        """Close cleanly (code 1000), after sending what is queued (a last cancel, say) for up to `flush_s`."""
        self.flush_audio()
        if not self._closed.done() and self._tasks:
            deadline = time.monotonic() + flush_s
            while not self._outbox.empty() and time.monotonic() < deadline and not self._tasks[-1].done():
                await asyncio.sleep(0.01)
        self._finish(SessionError("closed", "closed by edgevoice", close_code=1000))
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def fail(self, error: SessionError) -> None:
        """End the session because of something it said (no quota, say): `wait_closed()` returns `error`."""
        self._finish(error)
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._abort())

    async def _abort(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    def _finish(self, error: SessionError) -> None:
        if not self._closed.done():
            self._closed.set_result(error)

    # ---- the two I/O tasks ---------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                event = self._parse(frame)
                if event is not None:
                    try:
                        self._on_event(event)
                    except Exception:  # a bug in a handler must not take the connection down
                        log.exception("handling %s failed", type(event).__name__)
            self._finish(self._close_error())
        except ConnectionClosed:
            self._finish(self._close_error())
        except Exception as exc:  # pragma: no cover - defensive: report instead of dying silently
            log.exception("realtime reader failed")
            self._finish(SessionError("network", f"reading from the server failed: {exc}"))
        finally:
            for task in self._tasks:
                if task is not asyncio.current_task():
                    task.cancel()

    async def _write(self) -> None:
        assert self._ws is not None
        try:
            while True:
                text = await self._outbox.get()
                await self._ws.send(text)
                self.queued_bytes -= len(text)
        except ConnectionClosed:
            self._finish(self._close_error())
        except Exception as exc:  # e.g. a socket error mid-write: end the session, never die silently
            log.warning("sending to %s failed: %s", self.endpoint.host, exc)
            self._finish(SessionError("network", f"sending to {self.endpoint.host} failed: {exc}"))
            await self._abort()

    def _close_error(self) -> SessionError:
        protocol = self._ws.protocol if self._ws is not None else None
        sent = protocol.close_sent if protocol is not None else None
        if sent is not None and sent.code in _OUR_REASONS:  # we closed it, because of what the server sent
            return SessionError(
                "network",
                f"{self.endpoint.host} sent {_OUR_REASONS[sent.code]}: edgevoice closed the connection "
                f"(code {sent.code})",
                close_code=sent.code,
            )
        rcvd = protocol.close_rcvd if protocol is not None else None
        if rcvd is None:
            return SessionError("network", f"the connection to {self.endpoint.host} was lost")
        return classify_close(rcvd.code, rcvd.reason)

    def _parse(self, frame: str | bytes) -> server_events.ServerEvent | None:
        try:
            return server_events.parse_server_event(frame)
        except server_events.ProtocolError as exc:
            self.malformed_events += 1
            log.warning("ignoring a malformed server event: %s", exc)
            return None

    # ---- sending (never waits: the writer task does) --------------------------------------------------

    def send(self, event: dict[str, Any]) -> bool:
        """Queue `event` for the writer; False if it was dropped (the queue is full in events or bytes: the
        link is not keeping up) or the session is over. Audio held back for a batch goes first."""
        self.flush_audio()
        return self._queue(event)

    def _queue(self, event: dict[str, Any]) -> bool:
        if self._closed.done():
            return False
        text = events.encode(event)
        if self._outbox.qsize() >= MAX_QUEUED_EVENTS or self.queued_bytes + len(text) > MAX_QUEUED_BYTES:
            self.dropped_events += 1
            if self.dropped_events % 50 == 1:
                log.warning("the link is not keeping up; %d events dropped so far", self.dropped_events)
            return False
        self.queued_bytes += len(text)
        self._outbox.put_nowait(text)
        return True

    def append_audio(self, frame: np.ndarray, batch: int = 0) -> None:
        """A microphone frame, sent at once, or held until `batch` samples are together. Fewer, larger appends
        cost less CPU (each is a TLS record and a system call) and delay the audio by up to a batch; whatever
        else is sent goes after the audio held back, so the order of events never changes."""
        self._audio.append(frame)
        self._audio_samples += len(frame)
        if self._audio_samples >= batch:
            self.flush_audio()

    def flush_audio(self) -> None:
        """Send the audio held back for a batch now."""
        if self._audio:
            frames, self._audio, self._audio_samples = self._audio, [], 0
            self._queue(events.audio_append(frames[0] if len(frames) == 1 else np.concatenate(frames)))

    def commit_input(self) -> None:
        self.send(events.audio_commit())

    def clear_input(self) -> None:
        self.send(events.audio_clear())

    def create_response(self, instructions: str | None = None) -> None:
        self.send(events.response_create(instructions))

    def cancel_response(self) -> None:
        self.send(events.response_cancel())

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.send(events.item_truncate(item_id, audio_end_ms))
