"""A small asyncio client of the control socket, for Python controllers (and `edgevoice ctl`).

    async with ControlClient() as device:
        await device.request("say", text="Hello!")
        await device.serve_tool("battery", "The battery level in percent", {"type": "object"}, read_battery)
        async for event in device.events("state", "transcript"):
            print(event)

`request` raises `ControlError` for a refused command, and for a lost connection (code "disconnected").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from edgevoice.control.api import ControlError
from edgevoice.control.errors import LINE_TOO_LONG
from edgevoice.control.limits import MAX_LINE, MAX_OUT_LINE
from edgevoice.control.protocol import encode
from edgevoice.control.settings import DEFAULT_SOCKET

log = logging.getLogger(__name__)

DISCONNECTED = "disconnected"
IMAGE_CHUNK = 45 * 1024  # raw bytes per `image` request: 60 KiB of base64, under the line limit
ToolFunction = Callable[[dict[str, Any]], Any]  # arguments -> output (str, or JSON-able), or an awaitable of it


class ControlClient:
    """A connection to the control socket: requests with their replies, events, and tools served from Python."""

    def __init__(self, path: str = DEFAULT_SOCKET, *, timeout_s: float = 10.0, event_queue: int = 1024) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=event_queue)
        self._event_ready = asyncio.Event()
        self._dropped = 0
        self._tools: dict[str, ToolFunction] = {}
        self._calls: dict[str, asyncio.Task[None]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed_because: ControlError | None = None
        self.refused_tools: dict[str, str] = {}  # tools of ours the server refused: name -> its message
        self._refusal = asyncio.Event()

    async def __aenter__(self) -> ControlClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (OSError as the system says: FileNotFoundError, PermissionError, ConnectionRefusedError)."""
        self._reader, self._writer = await asyncio.open_unix_connection(self.path, limit=MAX_OUT_LINE + 1)
        self._task = asyncio.create_task(self._read(), name="control-client")

    async def close(self) -> None:
        for task in self._calls.values():
            task.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_closed(self) -> ControlError | None:
        """Until the connection ends; returns why the server closed it (None if it just went away)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        return self.closed_because

    # ---- requests ---------------------------------------------------------------------------------------

    async def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return its result; ControlError if it is refused or the connection is lost."""
        if self._writer is None or self._task is None or self._task.done():
            raise self.closed_because or ControlError(DISCONNECTED, "not connected to the control socket")
        request_id = next(self._ids)
        line = encode({"id": request_id, "cmd": cmd, **args})
        if len(line) > MAX_LINE + 1:
            raise ControlError(LINE_TOO_LONG, f"{cmd}: the request is {len(line)} bytes; the limit is {MAX_LINE}")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            self._writer.write(line)
            await self._writer.drain()
            message = await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise ControlError("timeout", f"{cmd}: no reply within {self.timeout_s:g} s") from None
        except ConnectionError as exc:
            raise ControlError(DISCONNECTED, f"{cmd}: the connection was lost ({exc})") from None
        finally:
            self._replies.pop(request_id, None)
        if message.get("ok"):
            return message.get("result") or {}
        error = message.get("error") or {}
        raise ControlError(error.get("code", "error"), error.get("message", "refused"))

    async def send_image(self, data: bytes, mime: str | None = None, prompt: str | None = None) -> dict[str, Any]:
        """Attach a picture of any size up to the device's limit (sent in pieces that fit a line)."""
        chunks = [data[i : i + IMAGE_CHUNK] for i in range(0, len(data), IMAGE_CHUNK)] or [b""]
        result: dict[str, Any] = {}
        for i, chunk in enumerate(chunks):
            args: dict[str, Any] = {"data": base64.b64encode(chunk).decode("ascii")}
            last = i == len(chunks) - 1
            if not last:
                args["more"] = True
            elif mime:
                args["mime"] = mime
            if last and prompt:
                args["prompt"] = prompt
            result = await self.request("image", **args)
        return result

    # ---- events -----------------------------------------------------------------------------------------

    async def events(self, *names: str) -> AsyncIterator[dict[str, Any]]:
        """Subscribe (to `names`, or to everything) and yield events until the connection ends."""
        await self.request("subscribe", **({"events": list(names)} if names else {}))
        while True:
            while not self._events:
                if self._task is None or self._task.done():
                    return
                self._event_ready.clear()
                waiter = asyncio.ensure_future(self._event_ready.wait())
                await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if self._dropped:
                yield {"event": "dropped", "count": self._dropped, "where": "client"}
                self._dropped = 0
            yield self._events.popleft()

    # ---- tools ------------------------------------------------------------------------------------------

    async def serve_tool(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any] | None,
        handler: ToolFunction,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        """Declare a tool to the model and answer its calls with `handler(arguments)` (sync or async); what
        it returns (a string, or any JSON value) is the output; an exception becomes an error output."""
        self._tools[name] = handler
        tool = {"name": name, "description": description, "timeout_s": timeout_s}
        if parameters is not None:
            tool["parameters"] = parameters
        try:
            await self.request("tools.register", tools=[tool])
        except ControlError:
            del self._tools[name]
            raise

    async def wait_refused(self) -> tuple[str, str]:
        """Until the server refuses a tool this client serves (the device dropped it): its name and the
        server's message (see `refused_tools` for all of them)."""
        await self._refusal.wait()
        name = next(reversed(self.refused_tools))
        return name, self.refused_tools[name]

    async def _answer(self, call_id: str, name: str, arguments: str) -> None:
        handler = self._tools[name]
        try:
            args = json.loads(arguments or "{}")
            output = handler(args if isinstance(args, dict) else {"value": args})
            if inspect.isawaitable(output):
                output = await output
            if not isinstance(output, str):
                output = json.dumps(output)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("tool %s failed: %s", name, exc)
            output = json.dumps({"error": f"{name} failed: {exc}"})
        try:
            await self.request("tool.result", call_id=call_id, output=output)
        except ControlError as exc:
            log.warning("tool %s: the result was not taken: %s", name, exc)
        finally:
            self._calls.pop(call_id, None)

    # ---- the connection ---------------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while line := await self._reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("control: the server sent a line that is not JSON: %r", line[:200])
                    continue
                self._dispatch(message)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("control: connection lost: %s", exc)
        finally:
            if self._writer is not None:
                self._writer.close()  # the server waits for our end before it lets go
            reason = self.closed_because or ControlError(DISCONNECTED, "the daemon closed the control connection")
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(reason)
            self._event_ready.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "event" in message:
            self._on_event(message)
            return
        request_id = message.get("id")
        future = self._replies.get(request_id) if isinstance(request_id, int) else None
        if future is not None and not future.done():
            future.set_result(message)
        elif request_id is None and not message.get("ok", True):
            error = message.get("error") or {}
            self.closed_because = ControlError(error.get("code", "error"), error.get("message", ""))

    def _on_event(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "tool_call" and event.get("name") in self._tools:
            call_id = str(event.get("call_id"))
            task = asyncio.create_task(self._answer(call_id, event["name"], event.get("arguments", "{}")))
            self._calls[call_id] = task
            return
        if name == "tool_cancelled":
            cancelled = self._calls.pop(str(event.get("call_id")), None)
            if cancelled is not None:
                cancelled.cancel()
        if name == "tool_refused" and self._tools.pop(str(event.get("name")), None) is not None:
            log.warning("control: the server refused the tool %s: %s", event.get("name"), event.get("message"))
            self.refused_tools[str(event.get("name"))] = str(event.get("message", ""))
            self._refusal.set()
        if len(self._events) == self._events.maxlen:
            self._dropped += 1
        self._events.append(event)
        self._event_ready.set()
