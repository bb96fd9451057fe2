"""One connected program, as the control server keeps it, and how its connection is closed politely."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from edgevoice.control.images import ImageAssembler
from edgevoice.control.outbox import Outbox, RateLimiter
from edgevoice.control.protocol import encode, error_reply
from edgevoice.control.settings import ControlSettings
from edgevoice.control.socketfile import Peer

READ_BYTES = 16 * 1024
ALL = None  # a subscription to every event


class Client:
    """One connected program: its outbox and rate limit, what it subscribed to, the tools it serves and
    the calls waiting for its answers, and the picture it is sending in pieces."""

    def __init__(self, number: int, peer: Peer, writer: asyncio.StreamWriter, settings: ControlSettings) -> None:
        self.number = number
        self.peer = peer
        self.writer = writer
        self.outbox = Outbox(settings.event_queue)
        self.limiter = RateLimiter(settings.requests_per_s, settings.request_burst, settings.flood_disconnect)
        self.subscribed = False
        self.events: frozenset[str] | None = ALL
        self.tools: set[str] = set()
        self.calls: dict[str, asyncio.Future[str]] = {}  # tool calls waiting for this client's tool.result
        self.images = ImageAssembler()
        self.gone = False
        self.writer_task: asyncio.Task[None] | None = None

    @property
    def owner(self) -> str:
        """Who serves this client's tools, as the device's tool registry shows it."""
        return f"control client {self.number} (pid {self.peer.pid}, uid {self.peer.uid})"

    def wants(self, name: str) -> bool:
        return self.subscribed and not self.outbox.closing and (self.events is ALL or name in self.events)

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put_reply(encode(message))

    def say_goodbye(self, code: str, message: str) -> None:
        """A last line saying why (id null), then the connection closes."""
        if self.outbox.closing:
            return
        self.send(error_reply(None, code, message))
        self.outbox.close()


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
    """Close so that the client can still read our last lines: send EOF after them, discard what the client
    is still sending (closing a Unix socket with unread data resets it, and the lines are lost), then close
    once everything is written; all by `deadline`, after which the connection is cut."""
    loop = asyncio.get_running_loop()

    async def discard() -> None:
        while await reader.read(READ_BYTES):
            pass

    with contextlib.suppress(TimeoutError, ConnectionError, OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()  # goes after what is still buffered
        await asyncio.wait_for(discard(), max(0.0, deadline - loop.time()))
    writer.close()  # writes what is buffered, then closes
    try:
        await asyncio.wait_for(writer.wait_closed(), max(0.0, deadline - loop.time()))
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()  # the client does not read: do not wait for it
