"""How the session manager meets the rest of the device (`ManagerHooks`) and time and connections
(`Clockwork`, which benchmarks and tests replace with a virtual clock or a fake session), and `warm_up`, which
loads the connections' code before the first one is needed."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgevoice.realtime.link import LinkStatus

if TYPE_CHECKING:
    from edgevoice.realtime import server_events as se
    from edgevoice.realtime.session import RealtimeSession


def _ignore(_: Any) -> None:
    pass


@dataclass(frozen=True)
class ManagerHooks:
    """How the manager talks to the device: server events and link news out, one question in."""

    on_event: Callable[[se.ServerEvent], None] = _ignore
    on_link: Callable[[LinkStatus], None] = _ignore
    emit: Callable[[dict[str, Any]], None] = _ignore  # device events (usage, session, notices)
    between_turns: Callable[[], bool] = lambda: True  # may the session be swapped now?


def _realtime_session(*args: Any, **kwargs: Any) -> RealtimeSession:
    # The WebSocket stack (websockets, http) is loaded by `warm_up` once the device is ready, or at the first
    # connection if that comes first: never on the way to ready.
    from edgevoice.realtime.session import RealtimeSession

    return RealtimeSession(*args, **kwargs)


async def warm_up() -> None:
    """Load the WebSocket stack in a worker thread, so that the first visitor does not wait for it (about 40 ms
    here, 0.4 s on a Pi Zero 2 W's budget, 3 MB); the event loop keeps running meanwhile."""
    await asyncio.to_thread(importlib.import_module, "edgevoice.realtime.session")


@dataclass(frozen=True)
class Clockwork:
    """Time and connections, replaceable by a virtual clock in benchmarks or a fake session in tests."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    session_factory: Callable[..., RealtimeSession] = field(
        default=lambda *args, **kwargs: _realtime_session(*args, **kwargs)
    )
