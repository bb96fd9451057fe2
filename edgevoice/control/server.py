"""The control socket's server: local programs drive the device (`DeviceControl`) over JSON Lines.

This module owns the socket: it creates it safely (socketfile.py), listens, hands every connection to
`Clients` (clients.py: accepting or refusing it, reading its requests, answering, sending it the device's
events), and removes the socket when it closes. `Clients` holds the command table and its parsers, whose
classes take a Pi a good part of a second to create: it is loaded by `warm_up` once the device is ready (in a
worker thread, the event loop keeps running), or at the first connection if that comes first. Listening
needs none of it: the socket accepts from `start()` on, and a connection that comes early waits for it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgevoice.control.errors import SHUTTING_DOWN
from edgevoice.control.limits import MAX_LINE
from edgevoice.control.settings import ControlSettings
from edgevoice.control.socketfile import bind_control_socket, identity, remove_if_ours, resolve_group

if TYPE_CHECKING:
    from edgevoice.control.api import DeviceControl
    from edgevoice.control.clients import Clients
    from edgevoice.control.connection import Client

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 1.0  # time given to the connections to say goodbye and end when the server closes


class ControlServer:
    """Serves `device` on the Unix socket of `settings` until `close()`."""

    def __init__(self, settings: ControlSettings, device: DeviceControl) -> None:
        self.settings = settings
        self.device = device
        self.clients: dict[int, Client] = {}  # the programs connected now, by number
        self._clients: Clients | None = None  # created with the first connection, or by warm_up
        self._server: asyncio.AbstractServer | None = None
        self._socket_id: tuple[int, int] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the socket and accept clients; SocketFileError says why it cannot."""
        settings = self.settings
        gid = resolve_group(settings.group)
        sock, warnings = await asyncio.to_thread(bind_control_socket, settings.socket, settings.mode, gid)
        self._socket_id = identity(settings.socket)
        for warning in warnings:
            log.warning("control: %s", warning)
        self._server = await asyncio.start_unix_server(self._on_connect, sock=sock, limit=MAX_LINE)
        log.info("control socket at %s (mode %04o, group %s)", settings.socket, settings.mode, settings.group or gid)

    async def warm_up(self) -> None:
        """Load the code that serves connections (the command table) in a worker thread, so that the first
        client does not wait for it; call once the device is ready."""
        await asyncio.to_thread(importlib.import_module, "edgevoice.control.clients")

    async def close(self) -> None:
        """Stop accepting, tell every client, release their tools and calls, remove the socket file."""
        if self._server is not None:
            self._server.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._clients is not None:
            self._clients.say_goodbye(SHUTTING_DOWN, "edgevoice is stopping")
        if self._connections:
            await asyncio.wait(self._connections, timeout=CLOSE_WAIT_S)
        for task in self._connections:
            task.cancel()
        remove_if_ours(self.settings.socket, self._socket_id)
        self._server = None

    # ---- connections -----------------------------------------------------------------------------------

    def _serving(self) -> Clients:
        """The connections' side, created (and, unless warm_up came first, loaded) at the first connection;
        from then on it hears the device's events."""
        if self._clients is None:
            from edgevoice.control.clients import Clients

            self._clients = Clients(self.settings, self.device, self.clients)
            self._unsubscribe = self.device.subscribe_events(self._clients.on_event)
        return self._clients

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serving().connect(reader, writer)
        finally:
            self._connections.discard(task)
