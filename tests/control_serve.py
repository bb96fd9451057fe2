"""A control server with the fake device in a process of its own, beside a stand-in for the audio path.

    python tests/control_serve.py SOCKET [SETTINGS_JSON] [BURST]

Every 20 ms the "audio path" ticks, publishes BURST `transcript` events (0 by default) and, 20 times a
second, a `level` event. Prints "ready" once the socket accepts; when stdin closes it prints one JSON line
of figures (ticks, the longest interval between ticks, level events, all events published) and exits.
Used by the fuzz test (so that the test's own Python work cannot hold up the server's loop) and by
bench/control.py.
"""

from __future__ import annotations

import asyncio
import json
import sys

from control_fake import FakeDevice

from edgevoice.control.server import ControlServer
from edgevoice.control.settings import ControlSettings

TICK_S = 0.02


async def main(path: str, settings: dict[str, object], burst: int) -> None:
    loop = asyncio.get_running_loop()
    device = FakeDevice()
    server = ControlServer(ControlSettings(socket=path, group="", **settings), device)  # type: ignore[arg-type]
    await server.start()
    figures = {"ticks": 0, "max_gap_s": 0.0, "levels": 0, "published": 0}
    text = "word " * 8

    async def audio_path() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            figures["max_gap_s"] = max(figures["max_gap_s"], now - last)
            last = now
            figures["ticks"] += 1
            if figures["ticks"] % 5 in (0, 3):  # the lip-sync envelope: 20 per second
                device.publish({"event": "level", "level": (figures["ticks"] % 10) / 10})
                figures["levels"] += 1
            for i in range(burst):
                device.publish({"event": "transcript", "role": "assistant", "item_id": "i", "text": text, "n": i})

    ticker = asyncio.create_task(audio_path())
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    ticker.cancel()
    await server.close()
    figures["published"] = device.published
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    asyncio.run(main(sys.argv[1], options, int(sys.argv[3]) if len(sys.argv) > 3 else 0))
