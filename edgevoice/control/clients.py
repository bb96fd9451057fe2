"""The control socket's connected programs: each one accepted or refused, its requests read and answered, the
device's events sent to it. The server (server.py) hands every connection here; this module holds the command
table and its parsers, so it is loaded once the device is ready (`ControlServer.warm_up`) or at the first
connection, whichever comes first: never on the way to ready.

One task reads each client's requests, one line at a time, and a second task writes its outbox, so the
device's events never wait for a client, and a slow, silent or hostile client holds back only itself:

    device events --> Clients.on_event --> each subscriber's Outbox (bounded, drops oldest) --> writer
    client lines --> reader --> LineSplitter --> parse_line --> run --> reply --> Outbox --> writer

A device command (commands.py) goes to `DeviceControl.execute` as it is; the commands about the connection
itself are run here: hello and status, subscriptions, pictures sent in pieces or as files, and the tools a
client serves (toolcalls.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from typing import Any

from edgevoice import __version__
from edgevoice.control import errors
from edgevoice.control import protocol as p
from edgevoice.control.api import ControlError, DeviceControl
from edgevoice.control.args import Command, DeviceCommand
from edgevoice.control.commands import (
    COMMANDS,
    Hello,
    Status,
    Subscribe,
    ToolResult,
    ToolsRegister,
    ToolsUnregister,
    Unsubscribe,
)
from edgevoice.control.connection import ALL, READ_BYTES, Client, linger
from edgevoice.control.events import EVENTS, SERVER_EVENTS
from edgevoice.control.images import Image, ImageError, Picture, read_image_file
from edgevoice.control.limits import MAX_IMAGE, MAX_LINE, MAX_TEXT, MAX_TOOLS
from edgevoice.control.outbox import FLOOD_WINDOW_S
from edgevoice.control.settings import ControlSettings
from edgevoice.control.socketfile import Peer, peer_credentials
from edgevoice.control.toolcalls import ToolBroker

log = logging.getLogger(__name__)

YIELD_AFTER_S = 0.002  # a client's lines never hold the event loop longer than this without a pause
CLOSE_FLUSH_S = 0.5  # time given to deliver a last line before a connection is closed
RESERVED_SLOTS = 2  # beyond max_clients, for root and the daemon's own user: a full socket never locks them out
REFUSAL_LOG_EVERY_S = 10.0  # refused connections are logged at most this often (with a count), not each one


class Clients:
    """The programs connected to one control server (its `clients`), serving `device` under `settings`."""

    def __init__(self, settings: ControlSettings, device: DeviceControl, clients: dict[int, Client]) -> None:
        self.settings = settings
        self.device = device
        self.clients = clients
        self._numbers = itertools.count(1)
        self._refusal_logged_at = -REFUSAL_LOG_EVERY_S
        self._refused_unlogged = 0
        self.tools = ToolBroker(device)

    def say_goodbye(self, code: str, message: str) -> None:
        """A last line to every client (the server is closing)."""
        for client in list(self.clients.values()):
            client.say_goodbye(code, message)

    # ---- connections -----------------------------------------------------------------------------------

    async def connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: refused (with a line saying why), or served until it closes."""
        try:
            peer = peer_credentials(writer.get_extra_info("socket"))
        except OSError as exc:  # gone before we could look
            log.debug("control: a client left at once: %s", exc)
            writer.transport.abort()
            return
        refusal = self._refusal(peer)
        if refusal is not None:
            code, message = refusal
            self._log_refusal(peer, message)
            writer.write(p.encode(p.error_reply(None, code, message)))
            await linger(reader, writer, asyncio.get_running_loop().time() + CLOSE_FLUSH_S)
            return
        await self._serve(Client(next(self._numbers), peer, writer, self.settings), reader)

    async def _serve(self, client: Client, reader: asyncio.StreamReader) -> None:
        """One task reads the client's requests, another writes its outbox; either ending ends the connection."""
        self.clients[client.number] = client
        log.info("control: client %d connected: %s", client.number, client.peer.describe())
        number = client.number
        reading = asyncio.create_task(self._read(client, reader), name=f"control-reader-{number}")
        writing = client.writer_task = asyncio.create_task(self._write(client), name=f"control-writer-{number}")
        try:
            await asyncio.wait([reading, writing], return_when=asyncio.FIRST_COMPLETED)
            said_goodbye = client.outbox.closing  # else the client stopped sending, or the connection broke
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            self._release(client)
            client.outbox.close()  # the replies queued still go: a goodbye, or the last answers
            if said_goodbye:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writing), CLOSE_FLUSH_S)
            else:
                await writing  # a client that sent its last request gets every answer, at its own pace
            await linger(reader, client.writer, asyncio.get_running_loop().time() + CLOSE_FLUSH_S)
        finally:
            reading.cancel()
            writing.cancel()
            self._release(client)
            if not client.writer.transport.is_closing():
                client.writer.transport.abort()
            log.info("control: client %d disconnected", number)

    def _refusal(self, peer: Peer) -> tuple[str, str] | None:
        settings = self.settings
        privileged = peer.uid in (0, os.geteuid())
        if settings.allowed_uids and peer.uid not in settings.allowed_uids and not privileged:
            return errors.FORBIDDEN, f"uid {peer.uid} is not in [control] allowed_uids of this device"
        if len(self.clients) >= settings.max_clients + (RESERVED_SLOTS if privileged else 0):
            return (
                errors.TOO_MANY_CLIENTS,
                f"{len(self.clients)} clients are connected: the limit ([control] max_clients)",
            )
        mine = sum(1 for client in self.clients.values() if client.peer.uid == peer.uid)
        if not privileged and mine >= settings.max_clients_per_uid:
            return (
                errors.TOO_MANY_CLIENTS,
                f"uid {peer.uid} holds {mine} connections: the limit for one user ([control] max_clients_per_uid)",
            )
        return None

    def _log_refusal(self, peer: Peer, message: str) -> None:
        """A warning for the first refusal, then at most one line every REFUSAL_LOG_EVERY_S with the count:
        a client in a connect loop must not push the device's own lines out of the journal."""
        now = asyncio.get_running_loop().time()
        self._refused_unlogged += 1
        if now - self._refusal_logged_at >= REFUSAL_LOG_EVERY_S:
            more = (
                f" ({self._refused_unlogged - 1} more refused since the last such line)"
                if self._refused_unlogged > 1
                else ""
            )
            log.warning("control: refused %s: %s%s", peer.describe(), message, more)
            self._refusal_logged_at, self._refused_unlogged = now, 0

    async def _read(self, client: Client, reader: asyncio.StreamReader) -> None:
        """Requests, one line at a time, until the client closes or the connection is being closed."""
        loop = asyncio.get_running_loop()
        splitter = p.LineSplitter()
        paused_at = loop.time()
        spoke = False  # a connection must say something within first_request_s
        try:
            while not client.outbox.closing:
                try:
                    async with asyncio.timeout(None if spoke else self.settings.first_request_s):
                        data = await reader.read(READ_BYTES)
                except TimeoutError:  # connected and silent: it must not hold a slot
                    wait = self.settings.first_request_s
                    client.say_goodbye(errors.IDLE, f"no request within {wait:g} s of connecting: closing")
                    return
                if not data:
                    return
                spoke = True
                for line in splitter.feed(data):
                    await client.outbox.wait_room()
                    if client.outbox.closing:
                        return
                    await self._handle_line(client, line)
                    if loop.time() - paused_at > YIELD_AFTER_S:  # let the audio path and other clients run
                        await asyncio.sleep(0)
                        paused_at = loop.time()
        except (ConnectionError, OSError) as exc:
            log.debug("control: client %d: %s", client.number, exc)

    async def _write(self, client: Client) -> None:
        """Write the outbox until it is closed and empty (or the client is gone)."""
        writer = client.writer
        try:
            while data := await client.outbox.next_batch():
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("control: client %d: %s", client.number, exc)

    def _release(self, client: Client) -> None:
        """The client is gone: forget it, release its tools and calls, drop the answers it still waits for."""
        if client.gone:
            return
        client.gone = True
        self.clients.pop(client.number, None)
        self.tools.release(client)
        try:
            self.device.release(client.owner)
        except Exception:  # a bug in the device must not keep a departed client's slot
            log.exception("control: releasing the requests of client %d failed", client.number)

    # ---- requests ---------------------------------------------------------------------------------------

    async def _handle_line(self, client: Client, line: bytes | None) -> None:
        if line is not None and not line.strip():
            return  # blank lines are not requests
        if not client.limiter.allow():
            if client.limiter.flooding:
                log.warning(
                    "control: client %d floods requests; disconnecting it (%s)", client.number, client.peer.describe()
                )
                client.say_goodbye(
                    errors.FLOOD,
                    f"more than {self.settings.flood_disconnect} requests over the rate limit in "
                    f"{FLOOD_WINDOW_S:g} s: closing this connection",
                )
            else:
                client.send(p.error_reply(p.request_id_of(line), errors.RATE_LIMITED, self._rate_message()))
            return
        if line is None:
            client.send(
                p.error_reply(
                    None, errors.LINE_TOO_LONG, f"a line is at most {MAX_LINE} bytes; it was skipped to its newline"
                )
            )
            return
        try:
            request = p.parse_line(line)
        except errors.RequestError as exc:
            client.send(p.error_reply(exc.request_id, exc.code, exc.message))
            return
        except Exception:  # a bug in the parser: every line still gets its one reply
            log.exception("control: a line from client %d could not be parsed", client.number)
            client.send(p.error_reply(p.request_id_of(line), errors.INTERNAL, "this line could not be read (a bug)"))
            return
        name = request.command.name
        try:
            result = await self._run(client, request.command)
        except ControlError as exc:
            client.send(p.error_reply(request.id, exc.code, exc.message))
            return
        except Exception as exc:
            log.exception("control: %s from client %d failed", name, client.number)
            client.send(p.error_reply(request.id, errors.INTERNAL, f"{name} failed inside edgevoice: {exc}"))
            return
        try:
            client.send(p.reply(request.id, result))
        except (TypeError, ValueError) as exc:  # a device result that is not JSON: a bug, never a crash
            log.error("control: the result of %s is not JSON: %s", name, exc)
            client.send(p.error_reply(request.id, errors.INTERNAL, f"{name}: the device's answer is not JSON"))

    def _rate_message(self) -> str:
        s = self.settings
        return f"too many requests: at most {s.requests_per_s:g} per second (bursts of {s.request_burst}); slow down"

    async def _run(self, client: Client, command: Command) -> dict[str, Any]:
        """A device command goes to the device as it is; the others concern the connection."""
        if isinstance(command, DeviceCommand):
            return self.device.execute(command, client.owner)
        match command:
            case Hello():
                return self._hello(client)
            case Status():
                status = dict(self.device.status())
                status["control"] = {"clients": len(self.clients), "you": client.number}
                return status
            case Image():
                return await self._image(client, command)
            case Subscribe(events=names):
                return self._subscribe(client, names)
            case Unsubscribe():
                client.subscribed = False
                client.outbox.clear_events()
                return {}
            case ToolsRegister(tools=tools):
                return self.tools.register(client, tools)
            case ToolsUnregister(names=names):
                return self.tools.unregister(client, names)
            case ToolResult(call_id=call_id, output=output):
                self.tools.result(client, call_id, output)
                return {}
        raise NotImplementedError(f"the control server does not run {command.name}")  # a bug: every row is run

    def _hello(self, client: Client) -> dict[str, Any]:
        s = self.settings
        return {
            "protocol": p.PROTOCOL_VERSION,
            "edgevoice": __version__,
            "state": self.device.status().get("state"),
            "commands": list(COMMANDS),
            "events": [*EVENTS, *SERVER_EVENTS],
            "limits": {
                "line_bytes": MAX_LINE,
                "text_chars": MAX_TEXT,
                "image_bytes": MAX_IMAGE,
                "tools": MAX_TOOLS,
                "requests_per_s": s.requests_per_s,
                "request_burst": s.request_burst,
                "event_queue": s.event_queue,
            },
            "client": {"id": client.number, "pid": client.peer.pid, "uid": client.peer.uid, "gid": client.peer.gid},
        }

    async def _image(self, client: Client, image: Image) -> dict[str, Any]:
        """A picture from a file, or inline (in one piece or several): checked, then given to the device."""
        picture: Picture | None
        try:
            if image.path is not None:
                picture = await asyncio.to_thread(
                    read_image_file, image.path, client.peer.uid, image.mime, image.prompt
                )
            else:
                assert image.data is not None
                picture = client.images.add(image.data, image.mime, image.prompt, image.more)
                if picture is None:
                    return {"received": client.images.pending, "complete": False}
        except ImageError as exc:
            raise ControlError(errors.BAD_REQUEST, f"image: {exc}") from None
        self.device.execute(picture, client.owner)
        return {"received": len(picture.data), "complete": True, "mime": picture.mime}

    def _subscribe(self, client: Client, names: tuple[str, ...] | None) -> dict[str, Any]:
        client.outbox.clear_events()  # what was queued belongs to the previous subscription
        client.events = ALL if names is None else frozenset(names)
        client.subscribed = True
        status = self.device.status()
        snapshot = {"event": "state", "state": status.get("state"), "snapshot": True}
        if status.get("reason"):
            snapshot["reason"] = status["reason"]
        client.outbox.put_event(p.encode(snapshot))
        return {"events": "all" if names is None else sorted(names)}

    # ---- events -----------------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Called by the device for every event: queue it for each subscriber (never blocks, never raises)."""
        try:
            name = event.get("event")
            if not isinstance(name, str):
                return
            if name == "tool_refused":
                self.tools.refused(self.clients.values(), event)
                return
            line: bytes | None = None
            for client in self.clients.values():
                if not client.wants(name):
                    continue
                if name == "tool_call" and event.get("name") in client.tools:
                    continue  # the owner gets its own tool_call, the one it must answer
                if line is None:
                    line = p.encode(event)
                client.outbox.put_event(line)
        except (TypeError, ValueError) as exc:
            log.error("control: event %r is not JSON: %s", event.get("event"), exc)
        except Exception:
            log.exception("control: publishing an event failed")
