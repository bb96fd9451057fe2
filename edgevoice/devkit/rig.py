"""Running `edgevoice run` as a user runs it, in a process of its own, optionally on an emulated Pi-class CPU.

    card = VirtualSoundCard(workdir / "card"); card.start()
    config = kiosk_config(emulator_url, workdir / "ctl.sock", vad=True)
    with Process.edgevoice(source_tree, workdir / "daemon", card, config, quota=10) as daemon:
        started_s = daemon.wait_ready(timeout_s=60)      # spawn -> READY=1 on the rig's NOTIFY_SOCKET
        ... drive it through its control socket, read the card's speaker recording ...

Used by the benchmarks (bench/_rig.py adds their anchors) and by the tests on a slow CPU (tests/test_slow_cpu.py).
- `CpuQuota`: a cgroup v1 CPU group (cpu.cfs_period_us 10 ms) holding a process from its exec on: an emulated
  Pi-class core (10 % of one core here ~ a Pi Zero 2 W, 25 % ~ a Pi 4; see TESTING.md section 8). Only the process
  under test is in it: the emulator, the card's sound server and the test itself run at full speed.
- `Process`: a process under test that tells READY=1 on its own NOTIFY_SOCKET, stderr kept in a file for when it
  fails, stopped with SIGTERM (and SIGKILL after 10 s) and given SIGTERM if its parent dies;
- `kiosk_config`, `daemon_environment`: what the daemon is run with;
- `room_noise`, `speech_like`: what a microphone or a speaker can be given to hear.
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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
RATE = 48000
FRAME_MS = 20
_PR_SET_PDEATHSIG = 1
_sequence = iter(range(1, 1_000_000))


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


def read_position(pid: int, path: Path) -> int:
    """How far process `pid` has read the file `path` it holds open, in bytes (/proc/PID/fdinfo): for the virtual
    card's microphone script, how much of it the capture stream has taken. RigError unless it holds one descriptor
    of it."""
    fds = [fd for fd in Path(f"/proc/{pid}/fd").iterdir() if _points_to(fd, path)]
    if len(fds) != 1:
        raise RigError(f"process {pid} holds {len(fds)} descriptors of {path}, not one")
    info = Path(f"/proc/{pid}/fdinfo/{fds[0].name}").read_text()
    return int(info.split("pos:")[1].split()[0])


def _points_to(fd: Path, path: Path) -> bool:
    try:
        return os.readlink(fd) == str(path)
    except OSError:  # closed meanwhile
        return False


def write_at(path: Path, sample: int, samples: np.ndarray) -> None:
    """Overwrite int16 samples of a raw script from sample index `sample` on (e.g. just ahead of the reader)."""
    with path.open("r+b") as script:
        script.seek(sample * 2)
        script.write(np.asarray(samples).astype("<i2").tobytes())


class RigError(Exception):
    """A process under test did not come up, or the machine lacks what the rig needs; the message says which."""


def cpu_quota_problem() -> str | None:
    """Why CPU quotas cannot be used here (None if they can): they need cgroup v1's CPU controller, writable."""
    if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 CPU controller at {CGROUP_CPU}: CPU quotas need it"
    if not os.access(CGROUP_CPU, os.W_OK):
        return f"{CGROUP_CPU} is not writable: CPU quotas need root"
    return None


class CpuQuota:
    """A cgroup v1 CPU group allowing `percent` of one core (an emulated Pi-class core); removed on exit.

    `add_self` is meant for a child's preexec_fn: the process is throttled from its exec on, and the
    threads it starts inherit the group.
    """

    def __init__(self, percent: float, period_us: int = 10_000) -> None:
        if (problem := cpu_quota_problem()) is not None:
            raise RigError(problem)
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


class Process:
    """A process under test that sends READY=1 to a NOTIFY_SOCKET of its own when it is up.

    Its stderr goes to `workdir/stderr.log`; `stop()` sends SIGTERM (SIGKILL after 10 s) and removes its
    CPU group. It runs in a session of its own (Ctrl-C reaches only the caller, which stops it) and gets
    SIGTERM if the caller dies.
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

    def _preexec(self) -> None:
        die_with_parent()
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
                threading.Thread(target=self._drain_notify, name="rig-notify", daemon=True).start()
                return ready_s
            if self.process.poll() is not None:
                raise RigError(f"{self.name} exited ({self.process.returncode}) before READY=1:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RigError(f"{self.name} was not ready within {timeout_s:g} s:\n{self.stderr_tail()}")

    def _drain_notify(self) -> None:
        """Read what the process tells its NOTIFY_SOCKET from now on (STATUS= per state...), as systemd does: a
        datagram socket nobody reads fills after a few messages (net.unix.max_dgram_qlen, 10 by default), and then
        the process's sd_notify blocks, its event loop with it."""
        self._notify.settimeout(None)
        with contextlib.suppress(OSError):  # closed by _release
            while self._notify.recv(4096):
                pass

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
        stop_process(self.process)
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


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the parent dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, SIGKILL if it is still there 10 s later; then its pipes are closed."""
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


def kiosk_config(
    url: str, control_socket: Path, *, vad: bool = False, echo: str = "aec", frame_ms: int = FRAME_MS, more: str = ""
) -> str:
    """The configuration of a kiosk on the card: both streams at 48 kHz, echo cancelled, mock GPIO,
    push-to-talk (or server VAD), a private control socket; `more` is appended (TOML sections of its own)."""
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
frame_ms = {frame_ms}
echo = "{echo}"
[hardware]
pin_factory = "mock"
[control]
socket = "{control_socket}"
group = ""
{more}"""
