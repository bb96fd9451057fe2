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
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edgevoice.realtime import events
from edgevoice.realtime.settings import ToolSettings
from edgevoice.realtime.tool_schema import schema_problem

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


class NameTaken(ValueError):
    """A tool of that name is already served by another owner."""


class BadSchema(ValueError):
    """A tool's parameters are not a schema the Realtime API takes (see tool_schema.py)."""


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
        """Add a tool; a name already served by another owner is refused (NameTaken), and so is a schema the
        server would refuse (BadSchema: it would fail the whole session)."""
        problem = schema_problem(tool.parameters)
        if problem is not None:
            raise BadSchema(f"the tool {tool.name!r}: {problem}")
        current = self._tools.get(tool.name)
        if current is not None and current.owner != tool.owner:
            raise NameTaken(f"the tool {tool.name!r} is already served by {current.owner}")
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

    def drop(self, names: tuple[str, ...]) -> list[Tool]:
        """Remove these tools whoever serves them (the server refused them); returns the ones removed."""
        gone = [tool for name in dict.fromkeys(names) if (tool := self._tools.pop(name, None)) is not None]
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


MAX_STDERR_BYTES = 4096  # the end of a failing program's stderr goes into the error output
PIPE_GRACE_S = 0.5  # after the program exits, how long a child it left may keep its output open
TOOL_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")  # a tool's environment: nothing else of the daemon's


def tool_environment(name: str, call_id: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """What a tool program runs with: the daemon's locale and PATH, the call, and no secret (no API key, no
    credentials directory, no notify socket)."""
    source = os.environ if environ is None else environ
    env = {key: source[key] for key in TOOL_ENV_KEEP if key in source}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(EDGEVOICE_TOOL=name, EDGEVOICE_CALL_ID=call_id)
    return env


async def _read_capped(stream: asyncio.StreamReader | None, cap: int, into: bytearray, *, tail: bool) -> None:
    """Read `stream` to its end, keeping at most `cap` bytes (the first, or with `tail` the last)."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        into += chunk
        if len(into) > cap:
            if tail:
                del into[: len(into) - cap]
            else:
                del into[cap:]


async def _exited(process: asyncio.subprocess.Process) -> None:
    """Until the program itself has exited. (Not `process.wait()`: on Python 3.11 that also waits for its
    pipes to close, which a child it left in the background may hold for as long as it likes.)"""
    while process.returncode is None:
        await asyncio.sleep(0.02)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """The program and every child it left in its process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def command_tool(settings: ToolSettings) -> Tool:
    """A tool served by a program: the JSON arguments on its stdin, its stdout is the output.

    The program is started directly (no shell) in a process group of its own, with a clean environment
    (`tool_environment`). Its output is read as it comes and capped (the first `MAX_OUTPUT_CHARS` bytes are
    kept, the rest is read and dropped). On a timeout the whole group is killed and nothing waits for its pipes;
    once the program itself has exited, a child it left holding them gets `PIPE_GRACE_S`, then is killed too.
    A non-zero exit status is an error whose message is the end of its stderr.
    """

    async def handler(call_id: str, arguments: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *settings.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=tool_environment(settings.name, call_id),
        )
        out, err = bytearray(), bytearray()
        readers = [
            asyncio.create_task(_read_capped(process.stdout, MAX_OUTPUT_CHARS, out, tail=False)),
            asyncio.create_task(_read_capped(process.stderr, MAX_STDERR_BYTES, err, tail=True)),
        ]
        try:
            if process.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    process.stdin.write(arguments.encode())
                    await process.stdin.drain()
                process.stdin.close()
            await _exited(process)
            _, lingering = await asyncio.wait(readers, timeout=PIPE_GRACE_S)
            if lingering:  # a child it left still holds the pipes: the call is over
                _kill_group(process)
        except BaseException:  # the timeout (cancelled by run_tool), or the device stopping
            _kill_group(process)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(_exited(process), 1.0)  # reaped (SIGKILL is immediate)
            raise
        finally:
            with contextlib.suppress(BaseException):  # once the group is dead its pipes end at once
                await asyncio.wait(readers, timeout=1.0)
            for reader in readers:
                reader.cancel()
        if process.returncode != 0:
            tail = err.decode(errors="replace").strip()[-300:]
            raise CommandFailed(f"{settings.command[0]} exited with status {process.returncode}: {tail}")
        return out.decode(errors="replace").strip()

    return Tool(settings.name, settings.description, settings.parameters, handler, settings.timeout_s)
