"""`edgevoice ctl`: drive a running edgevoice from a shell, through its control socket.

Each command prints its result as JSON (nothing when there is none). Exit status: 0 done, 1 the device
refused (the message says why), 2 bad usage, 3 the socket cannot be reached (the message says what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import json
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from edgevoice.control.api import ControlError
from edgevoice.control.client import ControlClient
from edgevoice.control.commands import COMMANDS, CommandSpec, parse_command
from edgevoice.control.errors import RequestError
from edgevoice.control.events import SUBSCRIBABLE
from edgevoice.control.limits import MAX_IMAGE

REFUSED, UNREACHABLE = 1, 3
ONE_SHOT = ("hello", "status")  # the server's own commands that mean something outside a connection


def table_commands() -> list[CommandSpec]:
    """The commands `ctl` offers as they are: every device command, and hello and status. (`image` takes a
    file name, `events` subscribes and `tool` serves a tool: those are written out below.)"""
    return [spec for spec in COMMANDS.values() if spec.handled_by == "device" or spec.name in ONE_SHOT]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ctl` subcommands (cli.py adds `--socket` and `--config`)."""
    sub = parser.add_subparsers(dest="ctl_command", required=True, metavar="CMD")
    for spec in table_commands():
        command = sub.add_parser(spec.name, help=spec.summary)
        hints = get_type_hints(spec.arguments)
        for field in fields(spec.arguments):
            _add_field(command, spec.name, field.name, hints[field.name])
    image = sub.add_parser("image", help=f"attach a picture (JPEG or PNG, up to {MAX_IMAGE // 2**20} MiB)")
    image.add_argument("file")
    image.add_argument("--prompt", help="ask about it (the model answers)")
    events = sub.add_parser("events", help="print events as JSON lines until Ctrl-C (all but level by default)")
    events.add_argument("names", nargs="*", metavar="NAME", help=", ".join(SUBSCRIBABLE))
    tool = sub.add_parser("tool", help="serve a tool from a shell command until Ctrl-C")
    tool.add_argument("name")
    tool.add_argument("--command", required=True, help="run with sh -c: the arguments JSON on stdin, stdout = output")
    tool.add_argument("--description", default="", help="what the tool does, for the model")
    tool.add_argument("--parameters", help='its JSON Schema, e.g. \'{"type":"object","properties":{...}}\'')
    tool.add_argument("--timeout", type=float, default=10.0, help="seconds the device waits for an answer")


def _add_field(parser: argparse.ArgumentParser, command: str, name: str, hint: Any) -> None:
    """A command's field as a shell argument: a string or number is positional (optional if it may be
    None), a boolean is a --flag."""
    kinds = [kind for kind in get_args(hint) or (hint,) if kind is not type(None)]
    optional = len(kinds) < len(get_args(hint) or (hint,))
    if kinds == [bool]:
        parser.add_argument(f"--{name}", action="store_true")
    elif len(kinds) == 1 and kinds[0] in (str, int, float):
        parser.add_argument(name, type=kinds[0], nargs="?" if optional else None)
    else:  # a command whose arguments a shell cannot give as they are: write its own form, like `image`
        raise TypeError(f"ctl: {command}: the field {name!r} ({hint}) has no shell form")


def run_ctl(args: argparse.Namespace, socket_path: str) -> int:
    try:
        return asyncio.run(_run(args, socket_path))
    except KeyboardInterrupt:  # during a one-shot command (`events` and `tool` stop cleanly on Ctrl-C)
        return 130


async def _run(args: argparse.Namespace, path: str) -> int:
    command = args.ctl_command
    request = _request_for(args)
    if isinstance(request, int):
        return request
    client = ControlClient(path)
    try:
        await client.connect()
    except OSError as exc:
        return _unreachable(path, exc)
    try:
        if command == "events":
            return await _print_events(client, args.names)
        if command == "tool":
            return await _serve_command(client, args)
        if command == "image":
            result = await client.send_image(request["data"], prompt=args.prompt)
        else:
            result = await client.request(command, **request)
    except ControlError as exc:
        print(f"edgevoice ctl: {command}: {exc.message} ({exc.code})", file=sys.stderr)
        return REFUSED
    finally:
        await client.close()
    if result:
        print(json.dumps(result, indent=2 if command in ("status", "hello") else None))
    return 0


def _request_for(args: argparse.Namespace) -> dict[str, Any] | int:
    """The request's arguments, or an exit status for arguments that cannot be sent."""
    command = args.ctl_command
    if command == "image":
        try:
            return {"data": Path(args.file).read_bytes()}
        except OSError as exc:
            return _usage(f"image: cannot read {args.file}: {exc.strerror}")
    if command == "tool":
        if args.parameters:
            try:
                args.parameters = json.loads(args.parameters)
            except ValueError as exc:
                return _usage(f"tool --parameters is not JSON: {exc}")
        return {}
    if command == "events":
        unknown = [n for n in args.names if n not in SUBSCRIBABLE]
        if unknown:
            return _usage(f"events: unknown event {unknown[0]!r}; events: {', '.join(SUBSCRIBABLE)}")
        return {}
    spec = COMMANDS[command]
    request = {f.name: getattr(args, f.name) for f in fields(spec.arguments)}
    request = {name: value for name, value in request.items() if value is not None and value is not False}
    try:
        parse_command(command, request)  # what the device would refuse, refused here with the same words
    except RequestError as exc:
        return _usage(exc.message)
    return request


def _usage(message: str) -> int:
    print(f"edgevoice ctl: {message}", file=sys.stderr)
    return 2


def _unreachable(path: str, exc: OSError) -> int:
    if isinstance(exc, FileNotFoundError):
        why = (
            f"no control socket at {path}: is edgevoice running (systemctl status edgevoice) with [control] "
            "enabled? Use --socket PATH if it is elsewhere"
        )
    elif isinstance(exc, PermissionError):
        group = _group_of(path)
        why = f"permission denied on {path}: only members of the group {group!r} may use it; " + (
            f"join it (sudo usermod -aG {group} $USER, then log in again)" if group else "ask the administrator"
        )
    elif isinstance(exc, ConnectionRefusedError):
        why = f"{path} exists but nothing listens on it: edgevoice is not running (it may have crashed)"
    else:
        why = f"cannot connect to {path}: {exc.strerror or exc}"
    print(f"edgevoice ctl: {why}", file=sys.stderr)
    return UNREACHABLE


def _group_of(path: str) -> str:
    """The group that opens the socket (or, if its directory hides it, the directory's)."""
    for candidate in (path, os.path.dirname(path)):
        try:
            gid = os.stat(candidate).st_gid
        except OSError:
            continue
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    return ""


async def _until_interrupted(client: ControlClient, work: Any) -> int:
    """Run `work` until Ctrl-C, SIGTERM or the daemon closing the connection."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0
    task.result()  # a ControlError from subscribing or registering
    reason = client.closed_because
    print(f"edgevoice ctl: the daemon closed the connection{f': {reason.message}' if reason else ''}", file=sys.stderr)
    return REFUSED


async def _print_events(client: ControlClient, names: list[str]) -> int:
    wanted = names or [n for n in SUBSCRIBABLE if n != "level"]

    async def follow() -> None:
        async for event in client.events(*wanted):
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    return await _until_interrupted(client, follow())


async def _serve_command(client: ControlClient, args: argparse.Namespace) -> int:
    name, command = args.name, args.command

    async def run(arguments: dict[str, Any]) -> str:
        process = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "EDGEVOICE_TOOL": name},
            start_new_session=True,
        )
        try:
            out, err = await process.communicate(json.dumps(arguments).encode())
        except asyncio.CancelledError:  # the device stopped waiting: do not leave the command running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            print(f"edgevoice ctl: {name}: the device stopped waiting; the command was killed", file=sys.stderr)
            raise
        if process.returncode != 0:
            tail = err.decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"the command exited with status {process.returncode}: {tail}")
        output = out.decode(errors="replace").strip()
        print(f"edgevoice ctl: {name}({json.dumps(arguments)[:200]}) -> {output[:200]}", file=sys.stderr)
        return output

    async def serve() -> None:
        await client.serve_tool(name, args.description, args.parameters, run, timeout_s=args.timeout)
        print(f"edgevoice ctl: serving the tool {name!r}; Ctrl-C to stop", file=sys.stderr)
        closed = asyncio.ensure_future(client.wait_closed())
        refused = asyncio.ensure_future(client.wait_refused())
        await asyncio.wait([closed, refused], return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if refused.done():
            raise ControlError("tool_refused", f"the Realtime server refused the tool: {refused.result()[1]}")
        refused.cancel()

    return await _until_interrupted(client, serve())
