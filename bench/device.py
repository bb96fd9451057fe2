"""CPU of the running device: the real daemon on the virtual sound card, idle, listening and speaking.

Run by bench/pipeline.py in its own process (alsa-lib reads its configuration once per process).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from gpiozero.pins.mock import MockFactory
from pipeline import PTT, peer, test_signal  # bench/ is on sys.path: this file runs as a script

from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard


async def cpu_percent(seconds: float) -> float:
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.monotonic() - wall) * 100


async def measure(url: str) -> None:
    from edgevoice.audio.settings import AudioSettings
    from edgevoice.config import Config
    from edgevoice.daemon import Daemon
    from edgevoice.hw.settings import HardwareSettings
    from edgevoice.realtime.credentials import LOCAL_PLACEHOLDER, StaticSecret

    config = Config(
        realtime=PTT.__class__(**{**PTT.__dict__, "url": url}),
        audio=AudioSettings(input_device=MIC, output_device=SPEAKER, input_rate=48000, output_rate=48000),
        hardware=HardwareSettings(pin_factory="mock"),
    )
    factory = MockFactory()
    daemon = Daemon(config, pin_factory=factory, secrets=StaticSecret(LOCAL_PLACEHOLDER))  # never a real key
    states: list[str] = []
    daemon.subscribe(lambda e: states.append(e["state"]) if e["event"] == "state" else None)
    task = asyncio.create_task(daemon.run())
    while daemon.capture_seconds < 0.5:
        await asyncio.sleep(0.01)
    idle = await cpu_percent(2.0)
    button = factory.pin(config.button.pin)
    button.drive_low()
    while "listening" not in states:
        await asyncio.sleep(0.01)
    listening = await cpu_percent(10.0)
    button.drive_high()
    while "speaking" not in states:
        await asyncio.sleep(0.01)
    speaking = await cpu_percent(10.0)
    daemon.stop()
    await task
    print(f"   {'idle (both streams open, nothing sent)':<54}{idle:>8.2f} %")
    print(f"   {'listening (streaming the microphone up)':<54}{listening:>8.2f} %   anchor: idle")
    print(f"   {'speaking (playing the answer)':<54}{speaking:>8.2f} %   anchor: idle")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edgevoice-bench-"))
    card = VirtualSoundCard(workdir)
    try:
        card.start()
        card.apply_to_process()
        silence = np.zeros(48000 * 3, np.int16)
        card.write_mic(np.concatenate((silence, test_signal(48000, 12.0), np.zeros(48000 * 60, np.int16))))
        with peer(reply_s=30.0) as url:
            asyncio.run(measure(url))
    finally:
        card.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
