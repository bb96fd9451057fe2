"""Property-based fuzzing of the control socket's line protocol (hypothesis).

The server runs in a process of its own (tests/control_serve.py) beside a stand-in for the audio path:
a task that ticks every 20 ms and publishes a `level` event 20 times a second. Whatever bytes arrive on one
connection (random binary, JSON of any shape, requests with random fields, over-long and deeply nested
lines, cut at random places), that connection gets exactly one well-formed reply per line, with the id
the line carried, another client keeps getting correct answers and its events, and the ticks keep coming.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevoice.control.commands import COMMANDS
from edgevoice.control.events import EVENTS
from edgevoice.control.limits import MAX_LINE
from edgevoice.control.protocol import valid_id

TICK_S = 0.02
MAX_TICK_GAP_S = 1.0  # a hang detector, not a figure: the tick's regularity is measured by bench/control.py


class ServerProcess:
    """tests/control_serve.py: the server and a 20 ms "audio path" on one event loop, in another process
    (so that this process's own work, hypothesis included, cannot hold that loop up)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "control.sock")
        limits = {"requests_per_s": 10000.0, "request_burst": 10000, "flood_disconnect": 1000000, "max_clients": 64}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("control_serve.py")), self.path, json.dumps(limits)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n"
        self.figures: dict[str, Any] = {}

    def stop(self) -> dict[str, Any]:
        """Stop the server; its figures: ticks, max_gap_s, published."""
        if not self.figures:
            out, _ = self.process.communicate("", timeout=10)
            self.figures = json.loads(out)
        return self.figures


class Lines:
    """A blocking client: send bytes, read JSON lines."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.seen: Counter[str] = Counter()  # events by name (for `dropped`: the events it counts)

    def line(self) -> dict[str, Any]:
        raw = self.file.readline()
        assert raw.endswith(b"\n"), f"connection closed: {raw!r}"
        message = json.loads(raw)
        if "event" in message:
            self.seen[message["event"]] += message.get("count", 1) if message["event"] == "dropped" else 1
        return message

    def reply(self) -> dict[str, Any]:
        while "event" in (line := self.line()):
            pass
        return line

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerProcess, Lines]]:
    directory = tempfile.mkdtemp(prefix="ev-fuzz-")
    server = ServerProcess(directory)
    observer = Lines(server.path)
    observer.sock.sendall(b'{"id": "watch", "cmd": "subscribe", "events": ["level", "state"]}\n')
    assert observer.reply() == {"id": "watch", "ok": True, "result": {"events": ["level", "state"]}}
    try:
        yield server, observer
    finally:
        observer.close()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# ---- what a client might send ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = st.integers(-(2**60), 2**60) | st.text(max_size=140) | st.booleans() | st.floats() | st.none()
tool = st.fixed_dictionaries(
    {"name": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True) | st.text(max_size=70)},
    optional={"description": st.text(max_size=30), "parameters": json_values, "timeout_s": json_values},
)
requests = st.fixed_dictionaries(
    {"cmd": st.sampled_from([*COMMANDS, "bogus", ""]) | json_values},
    optional={
        "id": ids,
        "text": st.text(max_size=50) | json_values,
        "level": st.floats() | json_values,
        "events": st.lists(st.sampled_from([*EVENTS, "nope"]), max_size=4) | json_values,
        "names": st.lists(st.text(max_size=10), max_size=3) | json_values,
        "tools": st.lists(tool, max_size=3) | json_values,
        "call_id": st.text(max_size=20) | json_values,
        "output": json_values,
        "data": st.text(max_size=40) | st.just("iVBORw0KGgo="),
        "path": st.sampled_from(["/", "/nonexistent/x.png", "/dev/null", "relative.png"]) | st.text(max_size=20),
        "mime": st.sampled_from(["image/png", "image/gif"]) | json_values,
        "more": json_values,
        "extra": json_values,
    },
)
lines = st.one_of(
    requests.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=120),
    st.text(max_size=60).map(str.encode),
    st.integers(MAX_LINE - 2, MAX_LINE + 3).map(lambda n: b'{"cmd":"say","text":"' + b"a" * (n - 23) + b'"}'),
    st.integers(MAX_LINE + 4, 3 * MAX_LINE).map(lambda n: b"x" * n),
    st.integers(1, 100_000).map(lambda n: b"[" * n),
    st.integers(1, 2000).map(lambda n: b"\n".join([b'{"id": 7, "cmd": "status"}', b"{}", b"\xff"] * n)),
    st.integers(1, 6000).map(lambda n: b"\n".join([b"1"] * n)),  # the most lines a read can hold
    st.sampled_from(
        [b"", b"\r", b"   ", b'{"cmd": "status"}\r', b"NaN", b'{"id": 1, "cmd": "volume", "level": -Infinity}']
    ),
)
streams = st.tuples(st.lists(lines, min_size=1, max_size=12), st.lists(st.integers(1, 100_000), max_size=4))


def expected_ids(payload: bytes) -> list[Any]:
    """The id each reply must carry, one per line that is not blank (the oracle for the server's parser)."""
    out: list[Any] = []
    for segment in payload.split(b"\n")[:-1]:
        if len(segment) > MAX_LINE + segment.endswith(b"\r"):
            out.append(None)
            continue
        if not segment.strip():
            continue
        try:
            message = json.loads(segment.decode("utf-8"), parse_constant=lambda c: 1 / 0)
        except (ValueError, RecursionError, ZeroDivisionError):
            message = None
        request_id = message.get("id") if isinstance(message, dict) else None
        out.append(request_id if valid_id(request_id) else None)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=streams)
def test_whatever_arrives_every_line_gets_its_reply_and_nothing_else_suffers(
    served: tuple[ServerProcess, Lines], stream: tuple[list[bytes], list[int]]
) -> None:
    server, observer = served
    parts, cuts = stream
    payload = b"\n".join(parts) + b"\n"
    fuzzed = Lines(server.path)
    try:

        def send() -> None:  # while the replies are read, as a client must (the server reads no further
            at = 0  # while a client leaves more than 64 replies unread)
            for cut in [*sorted(c % len(payload) for c in cuts), len(payload)]:
                fuzzed.sock.sendall(payload[at:cut])
                at = cut
            fuzzed.sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        got = []
        while raw := fuzzed.file.readline():
            message = json.loads(raw)
            if "event" not in message:
                got.append(message)
        sender.join()
    finally:
        fuzzed.close()
    assert [r["id"] for r in got] == expected_ids(payload)
    for reply in got:
        assert set(reply) == {"id", "ok", "result"} if reply["ok"] else set(reply) == {"id", "ok", "error"}
        if not reply["ok"]:
            assert isinstance(reply["error"]["code"], str) and reply["error"]["message"]
            assert reply["error"]["code"] != "internal", reply

    started = time.monotonic()
    observer.sock.sendall(b'{"id": 42, "cmd": "status"}\n')
    while "event" in (line := observer.line()):
        pass
    assert line["id"] == 42 and line["result"]["state"] == "idle"
    assert time.monotonic() - started < 1.0


def test_the_audio_path_kept_ticking_and_the_observer_got_its_events(served: tuple[ServerProcess, Lines]) -> None:
    """Runs after the fuzzing (same module): the stand-in audio path was never held up, and the observer
    got every level event it published (it reads fast enough: nothing dropped)."""
    server, observer = served
    time.sleep(0.1)
    observer.sock.sendall(b'{"id": "end", "cmd": "unsubscribe"}\n')
    while "event" in (line := observer.line()):
        pass
    assert line["id"] == "end"
    figures = server.stop()
    assert figures["ticks"] > 10 and observer.seen["dropped"] == 0
    assert observer.seen["level"] >= figures["levels"] - 3  # the last few are published after the unsubscribe
    gap = figures["max_gap_s"]
    print(f"\n{figures['ticks']} ticks of 20 ms during the fuzzing; the longest interval was {gap * 1000:.1f} ms")
    assert gap < MAX_TICK_GAP_S, f"the event loop was held for {gap * 1000:.0f} ms"
