"""What one client is sent, and how fast it may ask: its bounded outbox and its request rate limiter.

The device publishes events without ever waiting for a client. Each client has an outbox with two lanes:
replies (and tool calls, which must not be lost) and events. Events are bounded: when a client reads too
slowly the oldest are dropped and counted, and the client is told how many with a `dropped` event as soon
as it reads again. Replies are never dropped; instead the server stops reading a client's requests while
more than `REPLY_LIMIT` replies wait for it, so a client that sends without reading only fills its own
socket buffer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from edgevoice.control.protocol import encode

REPLY_LIMIT = 64  # replies waiting for a client before its requests are no longer read
BATCH_BYTES = 256 * 1024  # written at once (then drained)
FLOOD_WINDOW_S = 10.0


class Outbox:
    """What waits to be written to one client: replies (never dropped) first, then events (bounded)."""

    def __init__(self, event_limit: int) -> None:
        self.event_limit = event_limit
        self._replies: deque[bytes] = deque()
        self._events: deque[bytes] = deque()
        self._unreported = 0  # dropped events the client has not been told about yet
        self.dropped_total = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closing = False  # no more events; the writer ends once the replies are out

    def put_reply(self, line: bytes) -> None:
        """A reply or another line that must arrive (a tool call): never dropped."""
        self._replies.append(line)
        if len(self._replies) >= REPLY_LIMIT:
            self._room.clear()
        self._ready.set()

    def put_event(self, line: bytes) -> None:
        """An event: never blocks; when the client lags `event_limit` behind, its oldest event goes."""
        if self.closing:
            return
        if len(self._events) >= self.event_limit:
            self._events.popleft()
            self._unreported += 1
            self.dropped_total += 1
        self._events.append(line)
        self._ready.set()

    def clear_events(self) -> None:
        self._events.clear()
        self._unreported = 0

    def close(self) -> None:
        """Send what replies are queued, then stop (events still queued are not sent)."""
        self.closing = True
        self._events.clear()
        self._ready.set()
        self._room.set()  # a reader waiting for room wakes up and sees that the connection is closing

    async def wait_room(self) -> None:
        """Until the client has read enough of its replies for another request to be taken."""
        await self._room.wait()

    async def next_batch(self) -> bytes:
        """The next bytes to write (b"" once closed and empty): replies first, then a `dropped` notice, events."""
        while not (self._replies or self._events or self.closing):
            self._ready.clear()
            await self._ready.wait()
        parts: list[bytes] = []
        size = 0
        while self._replies and size < BATCH_BYTES:
            line = self._replies.popleft()
            parts.append(line)
            size += len(line)
        if len(self._replies) < REPLY_LIMIT:
            self._room.set()
        if self._unreported and self._events and size < BATCH_BYTES:
            parts.append(encode({"event": "dropped", "count": self._unreported}))
            self._unreported = 0
        while self._events and size < BATCH_BYTES:
            line = self._events.popleft()
            parts.append(line)
            size += len(line)
        return b"".join(parts)

    @property
    def queued_events(self) -> int:
        return len(self._events)


class RateLimiter:
    """A token bucket (`rate` per second, `burst` at once), and a count of refusals that marks a flood."""

    def __init__(self, rate: float, burst: int, flood_limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.flood_limit = rate, float(burst), flood_limit
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._window_start = self._last
        self._refused = 0
        self.refused_total = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if now - self._window_start > FLOOD_WINDOW_S:
            self._window_start, self._refused = now, 0
        self._refused += 1
        self.refused_total += 1
        return False

    @property
    def flooding(self) -> bool:
        """More than `flood_limit` requests refused within one window: the client is not slowing down."""
        return self._refused > self.flood_limit
