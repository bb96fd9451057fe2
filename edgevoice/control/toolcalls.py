"""Tools served by control clients: declared to the device, their calls sent to the owner and answered.

A tool a client registers goes to the device (`DeviceControl.register_tool`) with a handler that sends the
client a `tool_call` event and waits for its `tool.result`; the device applies the timeout (and the client
is told with `tool_cancelled`). When a client goes away its tools are unregistered and its unanswered calls
get an error output at once, so the model is never left waiting. A tool the server refuses is dropped by the
device, and its owner is told with `tool_refused`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from edgevoice.control.api import ControlError, DeviceControl, ToolCallHandler
from edgevoice.control.commands import ToolSpec
from edgevoice.control.connection import Client
from edgevoice.control.errors import BAD_REQUEST, NOT_FOUND
from edgevoice.control.limits import MAX_TOOLS

log = logging.getLogger(__name__)


class ToolBroker:
    """Between the device's tool registry and the clients that serve tools (one per control server)."""

    def __init__(self, device: DeviceControl) -> None:
        self.device = device

    def register(self, client: Client, tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
        """`tools.register`: all of them, or none if the device refuses one."""
        if len(client.tools | {t.name for t in tools}) > MAX_TOOLS:
            raise ControlError(BAD_REQUEST, f"tools.register: a client serves at most {MAX_TOOLS} tools")
        added: list[str] = []
        try:
            for tool in tools:
                self.device.register_tool(
                    client.owner,
                    tool.name,
                    tool.description,
                    tool.parameters,
                    self._handler(client, tool.name),
                    tool.timeout_s,
                )
                if tool.name not in client.tools:
                    added.append(tool.name)
                    client.tools.add(tool.name)
        except Exception:
            if added:  # all or nothing: a refused tool takes back the ones this request added
                self.device.unregister_tools(client.owner, added)
                client.tools.difference_update(added)
            raise
        log.info("control: client %d serves %s", client.number, ", ".join(t.name for t in tools))
        return {"registered": [t.name for t in tools]}

    def unregister(self, client: Client, names: tuple[str, ...] | None) -> dict[str, Any]:
        """`tools.unregister`: the client's tools of these names (all of them with None)."""
        removed = self.device.unregister_tools(client.owner, None if names is None else list(names))
        client.tools.difference_update(removed if names is None else names)
        return {"unregistered": sorted(removed)}

    def result(self, client: Client, call_id: str, output: str) -> None:
        """`tool.result`: the answer to a call this client was sent and the device still waits for."""
        future = client.calls.pop(call_id, None)
        if future is None or future.done():
            raise ControlError(
                NOT_FOUND,
                f"tool.result: no call {call_id!r} is waiting for you (answered already, timed out, or never made)",
            )
        future.set_result(output)

    def release(self, client: Client) -> None:
        """The client is gone: its tools go away and the model gets an answer for every call it had."""
        if client.tools:
            try:
                self.device.unregister_tools(client.owner, None)
            except Exception:
                log.exception("control: unregistering the tools of client %d failed", client.number)
            log.info("control: client %d left; its tools are gone: %s", client.number, ", ".join(sorted(client.tools)))
        for call_id, future in client.calls.items():
            if not future.done():
                future.set_result(
                    tool_error(f"the controller serving this tool disconnected before answering ({call_id})")
                )
        client.calls.clear()

    def refused(self, clients: Iterable[Client], event: dict[str, Any]) -> None:
        """The device dropped a tool the server refused (`event`: name, owner, message): its owner no longer
        serves it, and is told why (a `tool_refused` event, subscribed or not)."""
        name, owner = event.get("name"), event.get("owner")
        for client in clients:
            if client.owner == owner and name in client.tools:
                client.tools.discard(name)
                client.send({"event": "tool_refused", "name": name, "message": event.get("message", "")})
                log.warning("control: the server refused the tool %s of client %d", name, client.number)

    def _handler(self, client: Client, name: str) -> ToolCallHandler:
        async def handle(call_id: str, arguments: str) -> str:
            if client.gone:
                return tool_error(f"the controller serving {name} has disconnected")
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            previous = client.calls.pop(call_id, None)
            if previous is not None and not previous.done():
                previous.set_result(tool_error("the same call was made again"))
            client.calls[call_id] = future
            client.send({"event": "tool_call", "call_id": call_id, "name": name, "arguments": arguments})
            try:
                return await future
            except asyncio.CancelledError:  # the device stopped waiting (its timeout, or the answer was cancelled)
                if client.calls.get(call_id) is future:
                    del client.calls[call_id]
                    if not client.gone:
                        client.send({"event": "tool_cancelled", "call_id": call_id, "name": name})
                raise

        return handle


def tool_error(message: str) -> str:
    """An error output for the model (what a tool that could not answer says)."""
    return json.dumps({"error": message})
