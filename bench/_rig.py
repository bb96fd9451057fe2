"""A rig that runs edgevoice as a user runs it: on the virtual sound card, beside an emulated network.

    with contextlib.ExitStack() as stack:
        card = stack.enter_context(sound_card(workdir / "card", mic=room_noise(48000, 120)))
        emulator = stack.enter_context(Emulator(reply_s=30.0))
        daemon = stack.enter_context(
            Process.edgevoice(ROOT, workdir / "now", card, kiosk_config(emulator.url, workdir / "ctl.sock"), quota=10)
        )
        started_s = daemon.wait_ready(timeout_s=60)      # spawn -> READY=1 on the rig's NOTIFY_SOCKET
        ... measure it with bench/_probe.py (CPU, memory, threads; its control socket) ...

The processes under test, their CPU quota and their configuration are edgevoice/devkit/rig.py's (the tests on a
slow CPU use them too); this file adds what only the benchmarks need. Each piece cleans up after itself, also on
Ctrl-C: use them as context managers.
- `sound_card`: a VirtualSoundCard (PulseAudio-paced ALSA `file` PCMs) with a scripted microphone;
- `Emulator`: the Realtime emulator in its own process (so that its CPU is not counted): the CLI
  `python -m edgevoice emulator`, or, with `reply_s`, this file's scripted one that answers every response
  with `reply_s` of speech-like audio at real-time pace;
- `Process`: devkit's, with the anchors of bench/_floor.py (a bare PyAudio program, a bare `import numpy`);
- `CpuQuota`, `kiosk_config`, `daemon_environment`, `RigError`: devkit's.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgevoice.devkit import rig
from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator, SpokenReply
from edgevoice.devkit.rig import (
    FRAME_MS,
    RATE,
    CpuQuota,
    RigError,
    compile_tree,
    daemon_environment,
    die_with_parent,
    kiosk_config,
    room_noise,
    speech_like,
    stop_process,
)
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent

__all__ = [
    "FRAME_MS", "RATE", "ROOT", "CpuQuota", "Emulator", "Process", "RigError", "compile_tree", "daemon_environment",
    "kiosk_config", "room_noise", "sound_card", "speech_like",
]  # fmt: skip


# ---- the sound card and the network -------------------------------------------------------------------


@contextlib.contextmanager
def sound_card(workdir: Path, mic: np.ndarray, rate: int = RATE) -> Iterator[VirtualSoundCard]:
    """A private virtual sound card whose (paced) microphone plays `mic` from each open on."""
    card = VirtualSoundCard(workdir, rate=rate)
    card.start()
    try:
        card.write_mic(mic)
        yield card
    finally:
        card.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """The Realtime emulator in a process of its own, for the current tree's code."""

    def __init__(self, reply_s: float | None = None) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/v1/realtime"
        if reply_s is None:
            argv = ["-m", "edgevoice", "emulator", "--port", str(self.port)]
        else:
            argv = [str(Path(__file__)), "emulator", str(self.port), str(reply_s)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, cwd=BENCH, start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RigError(f"the emulator did not start listening on port {self.port}")
            time.sleep(0.05)

    def appends(self) -> tuple[int, float]:
        """input_audio_buffer.append events received so far, and the seconds of audio they carried (the
        scripted emulator only)."""
        assert self._process.stdout is not None
        self._process.send_signal(signal.SIGUSR1)
        fields = self._process.stdout.readline().split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise RigError(f"the emulator stopped (exit status {self._process.poll()})")
        return int(fields[0]), float(fields[1])

    def stop(self) -> None:
        stop_process(self._process)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _scripted_emulator(port: int, reply_s: float) -> None:
    """Every response speaks `reply_s` of speech-like audio, streamed at real-time pace; SIGUSR1 prints
    how many input_audio_buffer.append events came in."""
    import asyncio

    settings = EmulatorSettings(port=port, realtime_factor=1.0, response_delay_s=0.2, record_events=False)
    reply = SpokenReply("A long answer.", pcm=speech_like(24000, reply_s).astype("<i2").tobytes())
    appends, audio_s = 0, 0.0

    async def count() -> None:
        nonlocal appends, audio_s
        while True:
            event = await emulator.wait_for("input_audio_buffer.append", timeout=86400, count=appends + 1)
            appends += 1
            audio_s += len(base64.b64decode(event["audio"])) / 2 / 24000

    async with RealtimeEmulator(settings) as emulator:
        for _ in range(1000):
            emulator.queue_reply(reply)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(appends, audio_s, flush=True))
        counter = asyncio.create_task(count())
        await stop.wait()
        counter.cancel()


# ---- processes under test ---------------------------------------------------------------------------


class Process(rig.Process):
    """devkit's process under test, with the benchmarks' anchors."""

    @classmethod
    def floor(cls, workdir: Path, card: VirtualSoundCard, **kw: Any) -> Process:
        """The bare PyAudio program holding the same two streams (bench/_floor.py streams)."""
        frames = str(RATE * FRAME_MS // 1000)
        argv = [sys.executable, str(BENCH / "_floor.py"), "streams", MIC, SPEAKER, str(RATE), frames]
        return cls(argv, workdir, daemon_environment(ROOT, card), name=kw.pop("name", "floor"), **kw)

    @classmethod
    def numpy_import(cls, workdir: Path, **kw: Any) -> Process:
        """A bare interpreter importing numpy (bench/_floor.py numpy)."""
        argv = [sys.executable, str(BENCH / "_floor.py"), "numpy"]
        return cls(argv, workdir, dict(os.environ), name=kw.pop("name", "import numpy"), **kw)


if __name__ == "__main__":  # python bench/_rig.py emulator PORT REPLY_SECONDS
    import asyncio

    if sys.argv[1:2] != ["emulator"] or len(sys.argv) != 4:
        raise SystemExit("usage: python bench/_rig.py emulator PORT REPLY_SECONDS")
    asyncio.run(_scripted_emulator(int(sys.argv[2]), float(sys.argv[3])))
