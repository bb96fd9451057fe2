"""Tools the model can call: a registry of declarations and handlers, and running a call safely.

A tool comes from config.toml (`[[realtime.tools]]`, served by a local command) or from a controller on the
control socket (it registers handlers that forward the call). Whatever happens (unknown tool, a handler
that raises, hangs or prints megabytes), `run_tool` returns an output string, so the model always gets a
`function_call_output` and is never left waiting on a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edgevoice.realtime import events
from edgevoice.realtime.settings import ToolSettings

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 16_384
ToolHandler = Callable[[str, str], Awaitable[str]]  # (call_id, JSON arguments) -> output text


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its declaration (name, description, JSON-schema `parameters`) and the
    async `handler` that serves a call, given the call id and the arguments as JSON text, and returns the
    output text. `run_tool` bounds it by `timeout_s` and turns any failure into an error output; `owner`
    decides who may replace or remove it in the `ToolRegistry`."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler = field(compare=False)
    timeout_s: float = 10.0
    owner: str = "config"  # who serves it: "config" or a control-socket client id

    def declaration(self) -> dict[str, Any]:
        return events.tool_declaration(self.name, self.description, self.parameters)


class ToolRegistry:
    """The tools declared to the model. Listeners hear about changes (to update a live session)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._listeners: list[Callable[[], None]] = []

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        return [self._tools[name].declaration() for name in sorted(self._tools)]

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def register(self, tool: Tool) -> None:
        """Add a tool; a name already served by another owner is refused (ValueError)."""
        current = self._tools.get(tool.name)
        if current is not None and current.owner != tool.owner:
            raise ValueError(f"the tool {tool.name!r} is already served by {current.owner}")
        self._tools[tool.name] = tool
        self._changed()

    def unregister(self, name: str, owner: str | None = None) -> bool:
        tool = self._tools.get(name)
        if tool is None or (owner is not None and tool.owner != owner):
            return False
        del self._tools[name]
        self._changed()
        return True

    def unregister_owner(self, owner: str) -> list[str]:
        """Remove every tool of `owner` (a controller that went away); returns their names."""
        gone = [name for name, tool in self._tools.items() if tool.owner == owner]
        for name in gone:
            del self._tools[name]
        if gone:
            self._changed()
        return gone

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("tool registry listener failed")


def _error(message: str) -> str:
    return json.dumps({"error": message})


async def run_tool(registry: ToolRegistry, name: str, arguments: str, call_id: str = "") -> str:
    """Run one call; always returns an output for the model (an `{"error": ...}` object when it failed)."""
    tool = registry.get(name)
    if tool is None:
        log.warning("the model called an unknown tool %r", name)
        return _error(f"there is no tool named {name!r}")
    try:
        output = await asyncio.wait_for(tool.handler(call_id, arguments), tool.timeout_s)
    except TimeoutError:
        log.warning("tool %s did not answer within %.1f s", name, tool.timeout_s)
        return _error(f"the tool {name} did not answer within {tool.timeout_s:g} s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("tool %s failed: %s", name, exc)
        return _error(f"the tool {name} failed: {exc}")
    if not isinstance(output, str):
        output = json.dumps(output)
    if len(output) > MAX_OUTPUT_CHARS:
        log.warning("tool %s returned %d characters; cut to %d", name, len(output), MAX_OUTPUT_CHARS)
        output = output[:MAX_OUTPUT_CHARS]
    return output


class CommandFailed(Exception):
    """A command tool's program exited with a non-zero status; the message ends with its stderr, and
    `run_tool` hands it to the model as the call's `{"error": ...}` output."""


def command_tool(settings: ToolSettings) -> Tool:
    """A tool served by a program: the JSON arguments on its stdin, its stdout is the output.

    The program is started directly (no shell), is killed if it outlives the timeout, and a non-zero exit
    status is an error whose message is the end of its stderr.
    """

    async def handler(call_id: str, arguments: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *settings.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate(arguments.encode())
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            tail = err.decode(errors="replace").strip()[-300:]
            raise CommandFailed(f"{settings.command[0]} exited with status {process.returncode}: {tail}")
        return out.decode(errors="replace").strip()

    return Tool(settings.name, settings.description, settings.parameters, handler, settings.timeout_s)
