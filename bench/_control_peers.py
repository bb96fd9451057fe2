"""Helper processes for bench/control.py (each prints "ready" once listening or connected).

python bench/_control_peers.py echo SOCKET           a bare asyncio Unix server echoing lines (the RTT anchor)
python bench/_control_peers.py blast SOCKET LINE     a bare asyncio Unix server writing LINE to each client
                                                     as fast as it reads (the events-per-second anchor)
python bench/_control_peers.py count SOCKET SECONDS [EVENTS_JSON]
    a client that subscribes (when EVENTS_JSON is given: it is the control socket), then counts the
    lines it reads for SECONDS and prints {"lines", "events", "dropped", "seconds"}
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time


async def serve(path: str, handler: object) -> None:
    server = await asyncio.start_unix_server(handler, path=path)  # type: ignore[arg-type]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


def blaster(line: bytes) -> object:
    async def blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        batch = line * 64
        try:
            while True:
                writer.write(batch)
                await writer.drain()
        except ConnectionError:
            pass

    return blast


def count(path: str, seconds: float, events: str | None) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    file = sock.makefile("rb")
    if events is not None:
        sock.sendall(json.dumps({"id": 1, "cmd": "subscribe", "events": json.loads(events)}).encode() + b"\n")
        file.readline()
    print("ready", flush=True)
    lines = events_seen = dropped = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        message = json.loads(file.readline())
        lines += 1
        if message.get("event") == "dropped":
            dropped += message["count"]
        elif "event" in message:
            events_seen += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"lines": lines, "events": events_seen, "dropped": dropped, "seconds": elapsed}), flush=True)
    sock.close()


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "echo":
        asyncio.run(serve(path, echo))
    elif mode == "blast":
        asyncio.run(serve(path, blaster(sys.argv[3].encode() + b"\n")))
    else:
        count(path, float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
