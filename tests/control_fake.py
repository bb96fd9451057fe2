"""A stand-in for the daemon behind the control socket: records every call, publishes events on demand,
and runs tool calls the way the device does (its timeout, an error output when the handler fails)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from typing import Any

from edgevoice.control.api import ControlError, ToolCallHandler
from edgevoice.control.args import DeviceCommand
from edgevoice.control.commands import Listen, Mute, Unmute, Volume
from edgevoice.control.errors import BUSY, INVALID_STATE
from edgevoice.control.server import ControlServer
from edgevoice.control.settings import ControlSettings


@dataclass
class FakeTool:
    """A tool as the fake device holds it."""

    owner: str
    description: str
    parameters: dict[str, Any]
    handler: ToolCallHandler
    timeout_s: float


class FakeDevice:
    """The device behind the control socket, for tests: `calls` records every command as (name, *fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.state = "idle"
        self.muted = False
        self.level = 0.5
        self.tools: dict[str, FakeTool] = {"config_tool": FakeTool("config", "", {}, self._never, 1.0)}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.refuse: dict[str, ControlError] = {}  # command -> the error it raises
        self.published = 0
        self.released: list[str] = []  # owners whose connection closed

    @staticmethod
    async def _never(call_id: str, arguments: str) -> str:
        return "config"

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.refuse:
            raise self.refuse[call[0]]

    # ---- DeviceControl ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "muted": self.muted, "volume": self.level, "tools": sorted(self.tools)}

    def execute(self, command: DeviceCommand, owner: str | None = None) -> dict[str, Any]:
        """Any device command: recorded as (name, *its fields); mute, unmute and volume keep their state."""
        self._record(command.name, *(getattr(command, f.name) for f in fields(command)))
        match command:
            case Listen() if self.state == "error":
                raise ControlError(INVALID_STATE, "the device needs a person: see its status")
            case Mute() | Unmute():
                self.muted = isinstance(command, Mute)
                return {"muted": self.muted}
            case Volume(level=level):
                if level is not None:
                    self.level = level
                return {"volume": self.level}
        return {}

    def register_tool(
        self,
        owner: str,
        name: str,
        description: str,
        parameters: dict[str, Any],
        handler: ToolCallHandler,
        timeout_s: float,
    ) -> None:
        self._record("register_tool", owner, name)
        current = self.tools.get(name)
        if current is not None and current.owner != owner:
            raise ControlError(BUSY, f"the tool {name!r} is already served by {current.owner}")
        self.tools[name] = FakeTool(owner, description, parameters, handler, timeout_s)

    def unregister_tools(self, owner: str, names: list[str] | None) -> list[str]:
        self._record("unregister_tools", owner, names)
        gone = [n for n, t in self.tools.items() if t.owner == owner and (names is None or n in names)]
        for name in gone:
            del self.tools[name]
        return gone

    def release(self, owner: str) -> None:
        self.released.append(owner)

    def subscribe_events(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    # ---- driving it from a test ---------------------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        self.published += 1
        for listener in list(self.listeners):
            listener(event)

    def set_state(self, state: str) -> None:
        previous, self.state = self.state, state
        self.publish({"event": "state", "state": state, "previous": previous})

    async def call_tool(self, name: str, call_id: str, arguments: dict[str, Any] | str) -> str:
        """What the device does when the model calls a tool: broadcast the call, run it, bound it in time."""
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.publish({"event": "tool_call", "call_id": call_id, "name": name, "arguments": text})
        tool = self.tools.get(name)
        if tool is None:
            return json.dumps({"error": f"there is no tool named {name!r}"})
        try:
            return await asyncio.wait_for(tool.handler(call_id, text), tool.timeout_s)
        except TimeoutError:
            return json.dumps({"error": f"the tool {name} did not answer within {tool.timeout_s:g} s"})


class LineClient:
    """A raw client of the socket: bytes out, JSON lines in (for what a well-behaved client never sends)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: str) -> LineClient:
        reader, writer = await asyncio.open_unix_connection(path, limit=2**20)
        return cls(reader, writer)

    async def send(self, data: bytes | str | dict[str, Any]) -> None:
        if isinstance(data, dict):
            data = json.dumps(data) + "\n"
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        assert raw.endswith(b"\n"), f"connection closed (got {raw!r})"
        return json.loads(raw)

    async def ask(self, message: dict[str, Any] | bytes | str, timeout: float = 5.0) -> dict[str, Any]:
        """Send one request and return its reply (events that arrive first are skipped)."""
        await self.send(message)
        while True:
            line = await self.line(timeout)
            if "event" not in line:
                return line

    async def eof(self, timeout: float = 5.0) -> bool:
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(directory: str, device: FakeDevice | None = None, **settings: Any) -> AsyncIterator[Served]:
    """A control server on a socket in `directory`, with a fake device."""
    device = device or FakeDevice()
    path = os.path.join(directory, "control.sock")
    server = ControlServer(ControlSettings(socket=path, group=settings.pop("group", ""), **settings), device)
    await server.start()
    try:
        yield Served(server, device, path)
    finally:
        await server.close()


@dataclass
class Served:
    """A running control server, its fake device and its socket path."""

    server: ControlServer
    device: FakeDevice
    path: str


def run(coro: Any, timeout: float = 30.0) -> Any:
    """Run a test's coroutine, failing it after `timeout` seconds rather than hanging the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
