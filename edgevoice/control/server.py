"""The control socket's server: local programs drive the device (`DeviceControl`) over JSON Lines.

One task reads each client's requests, one line at a time, and a second task writes its outbox, so the
device's events never wait for a client, and a slow, silent or hostile client holds back only itself:

    device events --> ControlServer._on_event --> each subscriber's Outbox (bounded, drops oldest) --> writer
    client lines --> reader --> LineSplitter --> parse_line --> DeviceControl --> reply --> Outbox --> writer

Tools a client registers are declared to the model through `DeviceControl.register_tool` with a handler
that sends the client a `tool_call` event and waits for its `tool.result`; the device applies the timeout.
When a client goes away its tools are unregistered and its unanswered calls get an error output at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from edgevoice import __version__
from edgevoice.control import protocol as p
from edgevoice.control.api import EVENTS, NOT_FOUND, ControlError, DeviceControl, ToolCallHandler
from edgevoice.control.images import MAX_IMAGE, ImageAssembler, ImageError, read_image_file
from edgevoice.control.outbox import FLOOD_WINDOW_S, Outbox, RateLimiter
from edgevoice.control.settings import ControlSettings
from edgevoice.control.socketfile import (
    Peer,
    bind_control_socket,
    identity,
    peer_credentials,
    remove_if_ours,
    resolve_group,
)

log = logging.getLogger(__name__)

READ_BYTES = 16 * 1024
YIELD_AFTER_S = 0.002  # a client's lines never hold the event loop longer than this without a pause
CLOSE_FLUSH_S = 0.5  # time given to deliver a last line before a connection is closed
ALL = None  # a subscription to every event


class Client:
    """One connected program."""

    def __init__(self, number: int, peer: Peer, writer: asyncio.StreamWriter, settings: ControlSettings) -> None:
        self.number = number
        self.peer = peer
        self.writer = writer
        self.outbox = Outbox(settings.event_queue)
        self.limiter = RateLimiter(settings.requests_per_s, settings.request_burst, settings.flood_disconnect)
        self.subscribed = False
        self.events: frozenset[str] | None = ALL
        self.tools: set[str] = set()
        self.calls: dict[str, asyncio.Future[str]] = {}  # tool calls waiting for this client's tool.result
        self.images = ImageAssembler()
        self.gone = False
        self.writer_task: asyncio.Task[None] | None = None

    @property
    def owner(self) -> str:
        """Who serves this client's tools, as the device's tool registry shows it."""
        return f"control client {self.number} (pid {self.peer.pid}, uid {self.peer.uid})"

    def wants(self, name: str) -> bool:
        return self.subscribed and not self.outbox.closing and (self.events is ALL or name in self.events)

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put_reply(p.encode(message))


class ControlServer:
    """Serves `device` on the Unix socket of `settings` until `close()`."""

    def __init__(self, settings: ControlSettings, device: DeviceControl) -> None:
        self.settings = settings
        self.device = device
        self.clients: dict[int, Client] = {}
        self._numbers = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
        self._socket_id: tuple[int, int] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the socket and accept clients; SocketFileError says why it cannot."""
        settings = self.settings
        gid = resolve_group(settings.group)
        sock, warnings = await asyncio.to_thread(bind_control_socket, settings.socket, settings.mode, gid)
        self._socket_id = identity(settings.socket)
        for warning in warnings:
            log.warning("control: %s", warning)
        self._server = await asyncio.start_unix_server(self._on_connect, sock=sock, limit=p.MAX_LINE)
        self._unsubscribe = self.device.subscribe_events(self._on_event)
        log.info("control socket at %s (mode %04o, group %s)", settings.socket, settings.mode, settings.group or gid)

    async def close(self) -> None:
        """Stop accepting, tell every client, release their tools and calls, remove the socket file."""
        if self._server is not None:
            self._server.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for client in list(self.clients.values()):
            self._say_goodbye(client, p.SHUTTING_DOWN, "edgevoice is stopping")
        if self._connections:
            await asyncio.wait(self._connections, timeout=2 * CLOSE_FLUSH_S)
        for task in self._connections:
            task.cancel()
        remove_if_ours(self.settings.socket, self._socket_id)
        self._server = None

    # ---- connections -----------------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                peer = peer_credentials(writer.get_extra_info("socket"))
            except OSError as exc:  # gone before we could look
                log.debug("control: a client left at once: %s", exc)
                writer.transport.abort()
                return
            refusal = self._refusal(peer)
            if refusal is not None:
                code, message = refusal
                log.warning("control: refused %s: %s", peer.describe(), message)
                writer.write(p.encode(p.error_reply(None, code, message)))
                await _linger(reader, writer, asyncio.get_running_loop().time() + CLOSE_FLUSH_S)
                return
            await self._serve(Client(next(self._numbers), peer, writer, self.settings), reader)
        finally:
            self._connections.discard(task)

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
            await _linger(reader, client.writer, asyncio.get_running_loop().time() + CLOSE_FLUSH_S)
        finally:
            reading.cancel()
            writing.cancel()
            self._release(client)
            if not client.writer.transport.is_closing():
                client.writer.transport.abort()
            log.info("control: client %d disconnected", number)

    def _refusal(self, peer: Peer) -> tuple[str, str] | None:
        allowed = self.settings.allowed_uids
        if allowed and peer.uid not in allowed and peer.uid not in (0, os.geteuid()):
            return p.FORBIDDEN, f"uid {peer.uid} is not in [control] allowed_uids of this device"
        if len(self.clients) >= self.settings.max_clients:
            return p.TOO_MANY_CLIENTS, f"{len(self.clients)} clients are connected: the limit ([control] max_clients)"
        return None

    async def _read(self, client: Client, reader: asyncio.StreamReader) -> None:
        """Requests, one line at a time, until the client closes or the connection is being closed."""
        loop = asyncio.get_running_loop()
        splitter = p.LineSplitter()
        paused_at = loop.time()
        try:
            while not client.outbox.closing:
                data = await reader.read(READ_BYTES)
                if not data:
                    return
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

    def _say_goodbye(self, client: Client, code: str, message: str) -> None:
        """A last line saying why, then the connection closes."""
        if client.outbox.closing:
            return
        client.send(p.error_reply(None, code, message))
        client.outbox.close()

    def _release(self, client: Client) -> None:
        """The client is gone: its tools go away and the model gets an answer for every call it had."""
        if client.gone:
            return
        client.gone = True
        self.clients.pop(client.number, None)
        if client.tools:
            try:
                self.device.unregister_tools(client.owner, None)
            except Exception:
                log.exception("control: unregistering the tools of client %d failed", client.number)
            log.info("control: client %d left; its tools are gone: %s", client.number, ", ".join(sorted(client.tools)))
        for call_id, future in client.calls.items():
            if not future.done():
                future.set_result(
                    _tool_error(f"the controller serving this tool disconnected before answering ({call_id})")
                )
        client.calls.clear()

    # ---- requests ---------------------------------------------------------------------------------------

    async def _handle_line(self, client: Client, line: bytes | None) -> None:
        if line is not None and not line.strip():
            return  # blank lines are not requests
        if not client.limiter.allow():
            if client.limiter.flooding:
                log.warning(
                    "control: client %d floods requests; disconnecting it (%s)", client.number, client.peer.describe()
                )
                self._say_goodbye(
                    client,
                    p.FLOOD,
                    f"more than {self.settings.flood_disconnect} requests over the rate limit in "
                    f"{FLOOD_WINDOW_S:g} s: closing this connection",
                )
            else:
                client.send(p.error_reply(p.request_id_of(line), p.RATE_LIMITED, self._rate_message()))
            return
        if line is None:
            client.send(
                p.error_reply(
                    None, p.LINE_TOO_LONG, f"a line is at most {p.MAX_LINE} bytes; it was skipped to its newline"
                )
            )
            return
        try:
            request = p.parse_line(line)
        except p.RequestError as exc:
            client.send(p.error_reply(exc.request_id, exc.code, exc.message))
            return
        except Exception:  # a bug in the parser: every line still gets its one reply
            log.exception("control: a line from client %d could not be parsed", client.number)
            client.send(p.error_reply(p.request_id_of(line), p.INTERNAL, "this line could not be read (a bug)"))
            return
        try:
            result = await self._execute(client, request)
        except ControlError as exc:
            client.send(p.error_reply(request.id, exc.code, exc.message))
            return
        except Exception as exc:
            log.exception("control: %s from client %d failed", request.cmd, client.number)
            client.send(p.error_reply(request.id, p.INTERNAL, f"{request.cmd} failed inside edgevoice: {exc}"))
            return
        try:
            client.send(p.reply(request.id, result))
        except (TypeError, ValueError) as exc:  # a device result that is not JSON: a bug, never a crash
            log.error("control: the result of %s is not JSON: %s", request.cmd, exc)
            client.send(p.error_reply(request.id, p.INTERNAL, f"{request.cmd}: the device's answer is not JSON"))

    def _rate_message(self) -> str:
        s = self.settings
        return f"too many requests: at most {s.requests_per_s:g} per second (bursts of {s.request_burst}); slow down"

    async def _execute(self, client: Client, request: p.Request) -> dict[str, Any]:
        device, args = self.device, request.args
        match request.cmd:
            case "hello":
                return self._hello(client)
            case "status":
                status = dict(device.status())
                status["control"] = {"clients": len(self.clients), "you": client.number}
                return status
            case "listen":
                device.listen()
            case "stop":
                device.stop()
            case "cancel":
                device.cancel()
            case "end":
                device.end()
            case "say":
                device.say(args["text"])
            case "speak":
                device.speak(args["text"])
            case "image":
                return await self._image(client, args)
            case "mute" | "unmute":
                return {"muted": device.mute(request.cmd == "mute")}
            case "volume":
                return {"volume": device.volume(args["level"])}
            case "subscribe":
                return self._subscribe(client, args["events"])
            case "unsubscribe":
                client.subscribed = False
                client.outbox.clear_events()
            case "tools.register":
                return self._register(client, args["tools"])
            case "tools.unregister":
                return self._unregister(client, args["names"])
            case "tool.result":
                self._tool_result(client, args["call_id"], args["output"])
        return {}

    def _hello(self, client: Client) -> dict[str, Any]:
        s = self.settings
        return {
            "protocol": p.PROTOCOL_VERSION,
            "edgevoice": __version__,
            "state": self.device.status().get("state"),
            "commands": list(p.COMMANDS),
            "events": [*EVENTS, *p.SERVER_EVENTS],
            "limits": {
                "line_bytes": p.MAX_LINE,
                "text_chars": p.MAX_TEXT,
                "image_bytes": MAX_IMAGE,
                "tools": p.MAX_TOOLS,
                "requests_per_s": s.requests_per_s,
                "request_burst": s.request_burst,
                "event_queue": s.event_queue,
            },
            "client": {"id": client.number, "pid": client.peer.pid, "uid": client.peer.uid, "gid": client.peer.gid},
        }

    async def _image(self, client: Client, args: dict[str, Any]) -> dict[str, Any]:
        try:
            if "path" in args:
                image = await asyncio.to_thread(
                    read_image_file, args["path"], client.peer.uid, args["mime"], args["prompt"]
                )
            else:
                image = client.images.add(args["data"], args["mime"], args["prompt"], args["more"])
                if image is None:
                    return {"received": client.images.pending, "complete": False}
        except ImageError as exc:
            raise ControlError(p.BAD_REQUEST, f"image: {exc}") from None
        self.device.image(image.data, image.mime, image.prompt)
        return {"received": len(image.data), "complete": True, "mime": image.mime}

    def _subscribe(self, client: Client, names: list[str] | None) -> dict[str, Any]:
        client.outbox.clear_events()  # what was queued belongs to the previous subscription
        client.events = ALL if names is None else frozenset(names)
        client.subscribed = True
        status = self.device.status()
        snapshot = {"event": "state", "state": status.get("state"), "snapshot": True}
        if status.get("reason"):
            snapshot["reason"] = status["reason"]
        client.outbox.put_event(p.encode(snapshot))
        return {"events": "all" if names is None else sorted(names)}

    # ---- tools ------------------------------------------------------------------------------------------

    def _register(self, client: Client, tools: list[p.ToolSpec]) -> dict[str, Any]:
        if len(client.tools | {t.name for t in tools}) > p.MAX_TOOLS:
            raise ControlError(p.BAD_REQUEST, f"tools.register: a client serves at most {p.MAX_TOOLS} tools")
        added: list[str] = []
        try:
            for tool in tools:
                self.device.register_tool(
                    client.owner,
                    tool.name,
                    tool.description,
                    tool.parameters,
                    self._tool_handler(client, tool.name),
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

    def _unregister(self, client: Client, names: list[str] | None) -> dict[str, Any]:
        removed = self.device.unregister_tools(client.owner, names)
        client.tools.difference_update(removed if names is None else names)
        return {"unregistered": sorted(removed)}

    def _tool_handler(self, client: Client, name: str) -> ToolCallHandler:
        async def handle(call_id: str, arguments: str) -> str:
            if client.gone:
                return _tool_error(f"the controller serving {name} has disconnected")
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            previous = client.calls.pop(call_id, None)
            if previous is not None and not previous.done():
                previous.set_result(_tool_error("the same call was made again"))
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

    def _tool_result(self, client: Client, call_id: str, output: str) -> None:
        future = client.calls.pop(call_id, None)
        if future is None or future.done():
            raise ControlError(
                NOT_FOUND,
                f"tool.result: no call {call_id!r} is waiting for you (answered already, timed out, or never made)",
            )
        future.set_result(output)

    # ---- events -----------------------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        """Called by the device for every event: queue it for each subscriber (never blocks, never raises)."""
        try:
            name = event.get("event")
            if not isinstance(name, str):
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


def _tool_error(message: str) -> str:
    return json.dumps({"error": message})


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
    """Close so that the client can still read our last lines: send EOF after them, discard what the client
    is still sending (closing a Unix socket with unread data resets it, and the lines are lost), then close
    once everything is written; all by `deadline`, after which the connection is cut."""
    loop = asyncio.get_running_loop()

    async def discard() -> None:
        while await reader.read(READ_BYTES):
            pass

    with contextlib.suppress(TimeoutError, ConnectionError, OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()  # goes after what is still buffered
        await asyncio.wait_for(discard(), max(0.0, deadline - loop.time()))
    writer.close()  # writes what is buffered, then closes
    try:
        await asyncio.wait_for(writer.wait_closed(), max(0.0, deadline - loop.time()))
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()  # the client does not read: do not wait for it
