"""Benchmark of the control socket: request round trip and events per second while the "audio path" runs.

    .venv/bin/python bench/control.py        (after scripts/dev-setup --test)

The server (the real ControlServer with the tests' fake device) runs in its own process beside a stand-in
for the audio path: a 20 ms tick on the same event loop that publishes a `level` event (the lip-sync
envelope) and, in the heavier runs, a burst of `transcript` events per tick. Clients are other processes.
Every figure is printed beside its anchor, measured in the same run:
- `status` round trip beside a bare asyncio Unix-socket echo of the same line (socket + asyncio, no protocol);
- events per second to a subscriber beside the same reader fed by a bare asyncio server writing the same
  line as fast as it can (what the socket and the reader alone can carry);
- the server's CPU while it serves lip-sync to a subscriber beside the same server with nobody subscribed;
- the longest interval between the audio path's 20 ms ticks (its anchor is the 20 ms itself).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "tests" / "control_serve.py"
PEERS = Path(__file__).with_name("_control_peers.py")
STATUS = b'{"id": 1, "cmd": "status"}\n'
EVENT = json.dumps({"event": "transcript", "role": "assistant", "item_id": "i", "text": "word " * 8, "n": 1})
SECONDS = 2.0
TICKS = os.sysconf("SC_CLK_TCK")


class Peer:
    """A helper process that prints "ready" when it can be used."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n", argv

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def finish(self) -> dict[str, Any]:
        """Close its stdin (control_serve and count stop then) and read its last line, if any."""
        out, _ = self.process.communicate("", timeout=30)
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def terminate(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def round_trips(path: str, seconds: float) -> list[float]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    file = sock.makefile("rb")
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        sock.sendall(STATUS)
        file.readline()
        times.append(time.perf_counter() - start)
    sock.close()
    return times


def describe(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[int(len(ordered) * 0.99)]
    return f"median {statistics.median(ordered) * 1e6:6.0f} us, p99 {p99 * 1e6:6.0f} us ({len(ordered)} requests)"


def control_server(directory: str, burst: int, **settings: Any) -> tuple[Peer, str]:
    path = os.path.join(directory, f"control-{burst}.sock")
    limits = {"requests_per_s": 100000.0, "request_burst": 100000, **settings}
    return Peer(str(SERVE), path, json.dumps(limits), str(burst)), path


def main() -> None:
    directory = tempfile.mkdtemp(prefix="ev-bench-")
    try:
        run(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cpu_while(server: Peer, seconds: float) -> float:
    """The server's CPU share over `seconds` of whatever is flowing now."""
    before = server.cpu_s()
    time.sleep(seconds)
    return (server.cpu_s() - before) / seconds


def run(directory: str) -> None:
    print("control socket: `status` round trips and events to subscribers while a 20 ms audio path runs\n")
    echo_path = os.path.join(directory, "echo.sock")
    echo = Peer(str(PEERS), "echo", echo_path)
    round_trips(echo_path, 0.3)
    anchor_rtt = round_trips(echo_path, SECONDS)
    echo.terminate()
    print(f"  anchor: bare asyncio echo of the same line   {describe(anchor_rtt)}")

    server, path = control_server(directory, burst=0)
    round_trips(path, 0.3)
    idle_rtt = round_trips(path, SECONDS)
    cpu_idle = cpu_while(server, SECONDS)
    lips = Peer(str(PEERS), "count", path, str(2 * SECONDS + 0.5), '["level"]')
    cpu_lips = cpu_while(server, SECONDS)
    lips_rtt = round_trips(path, SECONDS)
    lip_figures = lips.finish()
    figures = server.finish()
    print(f"  status, no subscriber                        {describe(idle_rtt)}")
    print(f"  status, a lip-sync subscriber (level, 20/s)  {describe(lips_rtt)}")
    print(
        f"  server CPU serving lip-sync {cpu_lips * 100:5.2f} % (anchor: the same server, no subscriber "
        f"{cpu_idle * 100:5.2f} %; both +-{100 / TICKS / SECONDS:.1f} %: /proc counts in clock ticks)"
    )
    print(f"  level events received {lip_figures['events'] / lip_figures['seconds']:.1f}/s")
    print(f"  audio path: longest tick interval {figures['max_gap_s'] * 1000:5.1f} ms (anchor: 20 ms)\n")

    blast_path = os.path.join(directory, "blast.sock")
    blast = Peer(str(PEERS), "blast", blast_path, EVENT)
    anchor_rate = Peer(str(PEERS), "count", blast_path, str(SECONDS)).finish()
    blast.terminate()
    raw = anchor_rate["lines"] / anchor_rate["seconds"]
    print(f"  anchor: the same reader fed by a bare socket: {raw:7.0f} lines/s ({len(EVENT) + 1} bytes each)")
    for burst in (5, 100, 1000):
        server, path = control_server(directory, burst=burst, event_queue=1024)
        sub = Peer(str(PEERS), "count", path, str(2 * SECONDS + 0.5), "null")
        cpu = cpu_while(server, SECONDS)
        busy_rtt = round_trips(path, SECONDS)
        got = sub.finish()
        figures = server.finish()
        print(
            f"  transcript bursts of {burst:4d} per tick: subscriber got {got['events'] / got['seconds']:6.0f} "
            f"events/s, dropped {got['dropped']}; server CPU {cpu * 100:5.1f} %; longest tick "
            f"{figures['max_gap_s'] * 1000:5.1f} ms"
        )
        print(f"      status meanwhile                         {describe(busy_rtt)}")


if __name__ == "__main__":
    main()
