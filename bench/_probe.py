"""Looking at a process under test from outside: CPU and memory from /proc, its threads, its control socket.

    before = sample(pid); time.sleep(20); after = sample(pid)
    after.process_percent(before), after.thread_percent(before, pid)    # % of one core; TID == PID: the loop
    memory(pid)                                                          # {"VmRSS": MB, "VmHWM": MB}
    with Controller(socket_path) as ctl:
        ctl.request("subscribe", events=["state"]); ctl.request("say", text="Hello"); ctl.wait_state("speaking")

CPU comes from /proc/PID/task/TID/stat (utime+stime in clock ticks; on kernels with tick-based accounting a
sample of who ran at each tick) and, where the kernel keeps it, /proc/PID/task/TID/schedstat (the exact run
time in ns). Thread names are the OS names (/proc/.../comm); `python_thread_names` adds the Python names
through py-spy when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
LIBRARY_THREADS = {"threaded-ml": "(libpulse: the virtual card's ALSA pulse plugin)"}  # OS names libraries give


class ProbeError(Exception):
    """The control socket refused a request or closed; the message says which."""


# ---- /proc ----------------------------------------------------------------------------------------------


@dataclass
class ThreadCpu:
    name: str
    ticks: int  # utime + stime, in clock ticks (sampled at the scheduler tick on most kernels)
    ns: int  # the scheduler's exact run time (/proc/.../schedstat), 0 where the kernel does not keep it
    runs: int = 0  # times the scheduler put it on a CPU (schedstat's third field): its wakeups, near enough


@dataclass
class CpuSample:
    """CPU used so far by a process and by each of its threads, at monotonic time `at`."""

    pid: int
    at: float
    ticks: int
    threads: dict[int, ThreadCpu] = field(default_factory=dict)

    def process_percent(self, before: CpuSample) -> float:
        """CPU of the whole process between `before` and this sample, in % of one core."""
        return (self.ticks - before.ticks) / TICKS / (self.at - before.at) * 100

    def thread_percent(self, before: CpuSample, tid: int, *, exact: bool = False) -> float:
        now, then = self.threads.get(tid), before.threads.get(tid)
        if now is None:
            return 0.0
        used = (now.ns - (then.ns if then else 0)) / 1e9 if exact else (now.ticks - (then.ticks if then else 0)) / TICKS
        return used / (self.at - before.at) * 100

    def thread_wakeups(self, before: CpuSample, tid: int) -> float:
        """Times per second the thread was put on a CPU between `before` and this sample."""
        now, then = self.threads.get(tid), before.threads.get(tid)
        if now is None:
            return 0.0
        return (now.runs - (then.runs if then else 0)) / (self.at - before.at)


def sample(pid: int) -> CpuSample:
    """utime+stime of the process (dead threads included) and of each live thread, with thread names."""
    at = time.monotonic()
    try:
        cpu = CpuSample(pid, at, _ticks(Path(f"/proc/{pid}/stat")))
    except FileNotFoundError:
        raise ProbeError(f"process {pid} is gone") from None
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread may end while it is read
            ns, _, runs = (int(v) for v in (task / "schedstat").read_text().split()[:3])
            name = (task / "comm").read_text().strip()
            cpu.threads[int(task.name)] = ThreadCpu(name, _ticks(task / "stat"), ns, runs)
    return cpu


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return int(fields[11]) + int(fields[12])


def python_thread_names(pid: int) -> dict[int, str]:
    """TID -> Python thread name (threading.Thread.name), read with py-spy when it is installed ({} if not).

    Threads that py-spy does not list run no Python code: native libraries' threads (PortAudio, BLAS...).
    """
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return {}
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = re.findall(r'^Thread (?:0x[0-9A-Fa-f]+ )?(\d+)? ?\([^)]*\): "(.*)"$', dump, re.MULTILINE)
    return {int(tid): name for tid, name in found if tid}


def thread_table(before: CpuSample, after: CpuSample) -> list[dict[str, Any]]:
    """One row per thread, in creation order: its OS name, its Python name (with py-spy; "(native)" for a
    thread that runs no Python code), what it waits in (/proc/.../wchan) and its CPU between the samples."""
    generic = after.threads[after.pid].name if after.pid in after.threads else "python"
    python_names = python_thread_names(after.pid)
    rows = []
    for tid in sorted(after.threads):
        name = after.threads[tid].name
        try:
            waits = Path(f"/proc/{after.pid}/task/{tid}/wchan").read_text().split(".")[0]
        except OSError:
            waits = "?"
        waits = "(running)" if waits == "0" else waits
        python_name = python_names.get(tid, "(native)" if python_names else "")
        rows.append(
            {
                "tid": tid,
                "name": name,
                "python_name": LIBRARY_THREADS.get(name, python_name),
                "event_loop": tid == after.pid,
                "generic_name": name == generic or name.startswith("python"),
                "waits_in": waits,
                "percent": after.thread_percent(before, tid),
                "exact_percent": after.thread_percent(before, tid, exact=True),
                "wakeups_per_s": after.thread_wakeups(before, tid),
            }
        )
    return rows


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


# ---- the control socket ---------------------------------------------------------------------------------


class Controller:
    """A synchronous control-socket client: requests, and the device's `state` events."""

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        self._sock.connect(str(path))
        self._buffer = b""
        self._ids = iter(range(1, 1_000_000))
        self.states: list[tuple[float, str]] = []  # (monotonic time, state) as the events arrived

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send a command and return its result (events read meanwhile are kept); ProbeError if refused."""
        request_id = next(self._ids)
        self._sock.sendall(json.dumps({"id": request_id, "cmd": cmd, **args}).encode() + b"\n")
        deadline = time.monotonic() + 10
        while True:
            message = self._read(deadline)
            if message is None:
                raise ProbeError(f"control: no reply to {cmd} within 10 s")
            if message.get("id") == request_id:
                if not message.get("ok"):
                    raise ProbeError(f"control: {cmd} refused: {message.get('error')}")
                return dict(message.get("result") or {})

    def wait_state(self, state: str, timeout_s: float = 30.0) -> float:
        """The time the device entered `state` (after `subscribe` to state events)."""
        deadline = time.monotonic() + timeout_s
        while not self.states or self.states[-1][1] != state:
            if self._read(deadline) is None:
                raise ProbeError(f"control: no state {state!r} within {timeout_s:g} s; states: {self.states}")
        return self.states[-1][0]

    def poll(self) -> None:
        """Take in the events that have arrived (without waiting)."""
        while self._read(time.monotonic()) is not None:
            pass

    def _read(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ProbeError("control: the daemon closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if message.get("event") == "state":
            self.states.append((time.monotonic(), str(message["state"])))
        return dict(message)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
