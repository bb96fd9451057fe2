"""A Realtime emulator in its own process, so that a benchmark's CPU figures count only edgevoice's side.

python bench/_peer.py PORT REPLY_SECONDS    (prints "ready" when listening; stops on SIGTERM)
"""

from __future__ import annotations

import asyncio
import signal
import sys

from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator, SpokenReply, Tone


async def main(port: int, reply_s: float) -> None:
    settings = EmulatorSettings(port=port, realtime_factor=0, response_delay_s=0, record_events=False)
    async with RealtimeEmulator(settings) as emulator:
        for _ in range(100):
            emulator.queue_reply(SpokenReply("benchmark", (Tone(440.0, reply_s),)))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
