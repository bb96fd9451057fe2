"""A rig that runs edgevoice as a user runs it: on the virtual sound card, beside an emulated network.

    with contextlib.ExitStack() as stack:
        card = stack.enter_context(sound_card(workdir / "card", mic=room_noise(48000, 120)))
        emulator = stack.enter_context(Emulator(reply_s=30.0))
        daemon = stack.enter_context(
            Process.edgevoice(ROOT, workdir / "now", card, kiosk_config(emulator.url, workdir / "ctl.sock"), quota=10)
        )
        started_s = daemon.wait_ready(timeout_s=60)      # spawn -> READY=1 on the rig's NOTIFY_SOCKET
        ... measure it with bench/_probe.py (CPU, memory, threads; its control socket) ...

Pieces (each cleans up after itself, also on Ctrl-C: use them as context managers):
- `sound_card`: a VirtualSoundCard (PulseAudio-paced ALSA `file` PCMs) with a scripted microphone;
- `Emulator`: the Realtime emulator in its own process (so that its CPU is not counted): the CLI
  `python -m edgevoice emulator`, or, with `reply_s`, this file's scripted one that answers every response
  with `reply_s` of speech-like audio at real-time pace;
- `CpuQuota`: a cgroup v1 CPU group (cpu.cfs_period_us 10 ms) holding a process from its exec on: an
  emulated Pi-class core;
- `Process`: a process under test that tells READY=1 on its own NOTIFY_SOCKET (`edgevoice run`, or an
  anchor from bench/_floor.py), stderr kept in a file for when it fails;
- `kiosk_config`, `daemon_environment`: what the daemon is run with.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator, SpokenReply
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
RATE = 48000
FRAME_MS = 20
_PR_SET_PDEATHSIG = 1
_sequence = iter(range(1, 1_000_000))


class RigError(Exception):
    """A process under test did not come up, or the machine lacks what the rig needs; the message says which."""


# ---- signals ------------------------------------------------------------------------------------------


def room_noise(rate: int, seconds: float, dbfs: float = -55.0, seed: int = 0) -> np.ndarray:
    """White noise at `dbfs` RMS (int16): a quiet room, under both VADs' thresholds, never digital silence."""
    rms = 32768 * 10 ** (dbfs / 20)
    noise = np.random.default_rng(seed).standard_normal(int(rate * seconds)) * rms
    return np.clip(np.rint(noise), -32768, 32767).astype(np.int16)


def speech_like(rate: int, seconds: float) -> np.ndarray:
    """Harmonics of a wandering pitch with a syllable envelope (int16): broadband like a voice."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.2 + 0.8 * np.clip(np.sin(2 * np.pi * 3 * t), 0, 1)
    return np.clip(6000 * voice * envelope, -32768, 32767).astype(np.int16)


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
            text=True, env=env, cwd=BENCH, start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RigError(f"the emulator did not start listening on port {self.port}")
            time.sleep(0.05)

    def appends(self) -> int:
        """input_audio_buffer.append events received so far (the scripted emulator only)."""
        assert self._process.stdout is not None
        self._process.send_signal(signal.SIGUSR1)
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            raise RigError(f"the emulator stopped (exit status {self._process.poll()})")
        return int(line)

    def stop(self) -> None:
        _stop(self._process)

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
    appends = 0

    async def count() -> None:
        nonlocal appends
        while True:
            await emulator.wait_for("input_audio_buffer.append", timeout=86400, count=appends + 1)
            appends += 1

    async with RealtimeEmulator(settings) as emulator:
        for _ in range(1000):
            emulator.queue_reply(reply)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(appends, flush=True))
        counter = asyncio.create_task(count())
        await stop.wait()
        counter.cancel()


# ---- CPU quota ----------------------------------------------------------------------------------------


class CpuQuota:
    """A cgroup v1 CPU group allowing `percent` of one core (an emulated Pi-class core); removed on exit.

    `add_self` is meant for a child's preexec_fn: the process is throttled from its exec on, and the
    threads it starts inherit the group.
    """

    def __init__(self, percent: float, period_us: int = 10_000) -> None:
        if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
            raise RigError(f"no cgroup v1 CPU controller at {CGROUP_CPU}: CPU quotas need it (and root)")
        self.percent = percent
        self.path = CGROUP_CPU / f"evbench-{os.getpid()}-{next(_sequence)}"
        self.path.mkdir()
        try:
            (self.path / "cpu.cfs_period_us").write_text(str(period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(max(1000, round(period_us * percent / 100))))
            self._tasks = os.open(self.path / "tasks", os.O_WRONLY)  # opened here: preexec_fn stays minimal
        except OSError:
            self.path.rmdir()
            raise

    def add_self(self) -> None:
        os.write(self._tasks, str(os.getpid()).encode())

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._tasks)
        for _ in range(50):  # the group empties once its last thread has been reaped
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        print(f"warning: could not remove {self.path}", file=sys.stderr)


# ---- processes under test -----------------------------------------------------------------------------


class Process:
    """A process under test that sends READY=1 to a NOTIFY_SOCKET of its own when it is up.

    Its stderr goes to `workdir/stderr.log`; `stop()` sends SIGTERM (SIGKILL after 10 s) and removes its
    CPU group. It runs in a session of its own (Ctrl-C reaches only the bench, which stops it) and gets
    SIGTERM if the bench dies.
    """

    def __init__(
        self, argv: list[str], workdir: Path, env: dict[str, str], *, quota: float = 0, name: str = ""
    ) -> None:
        self.name = name or Path(argv[0]).name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "stderr.log"
        self.quota = CpuQuota(quota) if quota else None
        self._notify_dir = Path(tempfile.mkdtemp(prefix="evb-"))  # short: unix socket paths are limited
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        env = {**env, "NOTIFY_SOCKET": str(self._notify_dir / "notify")}
        try:
            self._notify.bind(env["NOTIFY_SOCKET"])
            with self.stderr_path.open("wb") as stderr:
                self.started = time.monotonic()
                self.process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env, cwd=workdir,
                    start_new_session=True, preexec_fn=self._preexec,
                )  # fmt: skip
        except BaseException:
            self._release()
            raise
        self.pid = self.process.pid

    @classmethod
    def edgevoice(cls, code: Path, workdir: Path, card: VirtualSoundCard, config: str, **kw: Any) -> Process:
        """`python -m edgevoice run --config FILE` with the package from `code` (a source tree)."""
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.toml").write_text(config)
        compile_tree(code)
        argv = [sys.executable, "-m", "edgevoice", "run", "--config", str(workdir / "config.toml")]
        return cls(argv, workdir, daemon_environment(code, card), name=kw.pop("name", "edgevoice"), **kw)

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

    def _preexec(self) -> None:
        _die_with_parent()
        if self.quota is not None:
            self.quota.add_self()

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds from the spawn to READY=1; RigError (with the end of stderr) if it dies or takes too long."""
        deadline = self.started + timeout_s
        self._notify.settimeout(0.1)
        while True:
            try:
                message = self._notify.recv(4096).decode(errors="replace")
            except TimeoutError:
                message = ""
            if "READY=1" in message.splitlines():
                ready_s = time.monotonic() - self.started
                self._check_log()
                return ready_s
            if self.process.poll() is not None:
                raise RigError(f"{self.name} exited ({self.process.returncode}) before READY=1:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RigError(f"{self.name} was not ready within {timeout_s:g} s:\n{self.stderr_tail()}")

    def _check_log(self) -> None:
        # A device name is matched as a part of a name: were "ev_mic" missing, "ev_mic_fast" (not paced, a
        # callback loop spinning at full speed) would be taken instead, and every figure would be wrong.
        log = self.stderr_tail(100_000)
        if f"'{MIC}_fast'" in log or f"'{SPEAKER}_fast'" in log:
            raise RigError(
                f"{self.name} opened the unpaced devices of the card (is its PulseAudio up?):\n{log[-3000:]}"
            )

    def check(self) -> None:
        """RigError (with the end of its stderr) if the process has exited."""
        if self.process.poll() is not None:
            raise RigError(f"{self.name} exited ({self.process.returncode}):\n{self.stderr_tail()}")

    def stderr_tail(self, chars: int = 3000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        _stop(self.process)
        self._release()

    def _release(self) -> None:
        self._notify.close()
        with contextlib.suppress(OSError):
            (self._notify_dir / "notify").unlink()
            self._notify_dir.rmdir()
        if self.quota is not None:
            self.quota.remove()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM when the bench dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


_COMPILED: set[Path] = set()


def compile_tree(code: Path) -> None:
    """Byte-compile the package in `code` once, as `pip install` does on a device: start-up is measured as an
    installed daemon starts, not as a checkout that compiles every module on each start (as it does wherever
    PYTHONDONTWRITEBYTECODE is set, which this machine sets)."""
    if code not in _COMPILED:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(code / "edgevoice")], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        _COMPILED.add(code)


def daemon_environment(code: Path, card: VirtualSoundCard) -> dict[str, str]:
    """The environment of a process on the card, importing edgevoice from `code`, with a throwaway API key
    (the emulator takes any) and nothing of the caller's edgevoice, systemd or credentials settings."""
    drop = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY", "OPENAI_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("EDGEVOICE_", "PULSE_"))}
    env.update(card.environment, PYTHONPATH=str(code), OPENAI_API_KEY="-".join(("sk", "bench", "not", "a", "key")))
    return env


def kiosk_config(url: str, control_socket: Path, *, vad: bool = False, echo: str = "aec") -> str:
    """The configuration of a kiosk on the card: both streams at 48 kHz, echo cancelled, mock GPIO,
    push-to-talk (or server VAD), a private control socket."""
    return f"""
[realtime]
url = "{url}"
[realtime.turn_detection]
type = "{"server_vad" if vad else "none"}"
[audio]
input_device = "{MIC}"
output_device = "{SPEAKER}"
input_rate = {RATE}
output_rate = {RATE}
frame_ms = {FRAME_MS}
echo = "{echo}"
[hardware]
pin_factory = "mock"
[control]
socket = "{control_socket}"
group = ""
"""


if __name__ == "__main__":  # python bench/_rig.py emulator PORT REPLY_SECONDS
    import asyncio

    if sys.argv[1:2] != ["emulator"] or len(sys.argv) != 4:
        raise SystemExit("usage: python bench/_rig.py emulator PORT REPLY_SECONDS")
    asyncio.run(_scripted_emulator(int(sys.argv[2]), float(sys.argv[3])))
