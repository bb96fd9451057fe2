"""What one member of the control socket's group, one bad tool or one hostile server answer costs the device.

    .venv/bin/python bench/abuse.py [--baseline-rev 80131b3 | --baseline-rev none]

The real daemon (`python -m edgevoice run`) on a private virtual sound card, the Realtime emulator in this process
(it scripts the faults and counts what reaches the "server"), and each attack of issue 15 scripted against a fresh
daemon (so that one attack's damage does not spill into the next):

1. idle connections: another user (uid 65534) opens 20 silent connections; a second user and root then connect;
2. image flood while the link is down (the network path stalls): 40 pictures of 3 MB, by path;
3. speak flood, then leave: 30 `speak` requests on one connection, which then closes;
4. a tool that leaves a grandchild behind (`sh -c "sleep & sleep"`, timeout 2 s);
5. a tool schema the server refuses, registered before the session opens, then a `say`;
6. image requests (no prompt) against a server that answers 429 with Retry-After: 30, five a second for 20 s.

Throughout, a witness client asks `status` every 0.25 s on a connection of its own. Printed for each attack: the
daemon's RSS before and after, handshakes, responses billed (response.create at the server), slots, and the
witness's slowest `status`, each beside its bound and beside the same attack on the revision before the fixes
(`--baseline-rev`, exported with git archive; its waits are capped, so its figures are "at least").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import _rig
from _probe import Controller, ProbeError, memory
from _rig import ROOT, Process, kiosk_config, sound_card
from footprint import export_revision

from edgevoice.control.api import ControlError
from edgevoice.control.client import ControlClient
from edgevoice.devkit import rig
from edgevoice.devkit.emulator import EmulatorSettings, FunctionCallReply, RealtimeEmulator
from edgevoice.devkit.sound_card import VirtualSoundCard

OTHER_UID, SECOND_UID = 65534, 65533  # users in the socket's group (the socket is 0666 here)
FIRST_REQUEST_S = 5.0  # [control] first_request_s, from 10 s: a shorter run
TOOL_TIMEOUT_S = 2.0
SLEEP = "41.5"  # the grandchild's sleep, and a mark to find it by
RETRY_AFTER_S = 30.0
STATUS_BOUND_S = 1.0
CAP_S = 10.0  # the longest any wait for the device lasts (the baseline may never get there)
Figure = tuple[str, str, bool]  # what it says, the bound, within it

HOLDER = """
import json, select, socket, sys, time
path, count, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
socks = [socket.socket(socket.AF_UNIX) for _ in range(count)]
for s in socks: s.connect(path)
start, open_, codes, idle_at = time.monotonic(), set(socks), {}, 0.0
while open_ and time.monotonic() - start < wait:
    for s in select.select(list(open_), [], [], 0.1)[0]:
        data = s.recv(4096)
        code = json.loads(data.split(b"\\n")[0])["error"]["code"] if data.strip() else "closed"
        codes[code] = codes.get(code, 0) + 1
        idle_at = time.monotonic() - start if code == "idle" else idle_at
        open_.discard(s)
print(json.dumps({"codes": codes, "idle_after_s": idle_at, "still_open": len(open_)}))
"""
ASK_STATUS = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'{"id": 1, "cmd": "status"}\\n')
print(json.dumps(json.loads(s.makefile().readline()).get("ok")))
"""


class Witness(threading.Thread):
    """Asks `status` every 0.25 s on a connection of its own; keeps how long each took and the state."""

    def __init__(self, socket_path: Path) -> None:
        super().__init__(name="witness", daemon=True)
        self._ctl = Controller(socket_path)
        self.samples: list[tuple[float, str]] = []
        self.failures = 0
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            asked = time.monotonic()
            try:
                state = str(self._ctl.request("status").get("state"))
                self.samples.append((time.monotonic() - asked, state))
            except (ProbeError, OSError):
                self.failures += 1
            if self._done.wait(0.25):
                return

    def stop(self) -> Figure:
        self._done.set()
        self.join(15)
        self._ctl.close()
        slowest = max((took for took, _ in self.samples), default=0.0)
        states = {state for _, state in self.samples}
        ok = slowest < STATUS_BOUND_S and "error" not in states and not self.failures
        text = f"slowest status {slowest * 1000:.0f} ms, {self.failures} lost; states: {', '.join(sorted(states))}"
        return text, f"< {STATUS_BOUND_S:g} s, none lost, never error", ok


class Rig:
    """One fresh daemon of one source tree, its emulator and its witness, for one attack."""

    def __init__(self, daemon: rig.Process, emulator: RealtimeEmulator, work: Path) -> None:
        self.daemon, self.emulator, self.work, self.socket = daemon, emulator, work, work / "ctl.sock"

    def rss(self) -> float:
        return memory(self.daemon.pid)["VmRSS"]

    def created(self) -> int:
        return sum(1 for e in self.emulator.received if e.get("type") == "response.create")

    def client(self) -> ControlClient:
        return ControlClient(str(self.socket))

    async def ask(self, cmd: str, **args: Any) -> dict[str, Any] | None:
        """A request on a connection of its own; None if refused."""
        try:
            async with self.client() as c:
                return await c.request(cmd, **args)
        except (ControlError, OSError):
            return None

    async def until(self, condition: Callable[[], Awaitable[bool]], timeout_s: float = CAP_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await condition():
                return True
            await asyncio.sleep(0.1)
        return False

    async def idle(self) -> bool:
        async def idle() -> bool:
            return ((await self.ask("status")) or {}).get("state") == "idle"

        return await self.until(idle)


@contextlib.asynccontextmanager
async def fresh(code: Path, card: VirtualSoundCard, work: Path) -> AsyncIterator[Rig]:
    settings = EmulatorSettings(realtime_factor=4.0, response_delay_s=0.2, user_transcript="hi")
    async with RealtimeEmulator(settings) as emulator:
        cfg = config(emulator.url, work / "ctl.sock", (code / "edgevoice/control/settings.py").read_text())
        daemon = await asyncio.to_thread(Process.edgevoice, code, work / "daemon", card, cfg)
        with daemon:
            await asyncio.to_thread(daemon.wait_ready, 60)
            yield Rig(daemon, emulator, work)


def config(url: str, socket_path: Path, control_settings: str) -> str:
    idle_timeout = f"first_request_s = {FIRST_REQUEST_S}\n" if "first_request_s" in control_settings else ""
    command = json.dumps(["sh", "-c", f"sleep {SLEEP} & sleep {SLEEP}; echo late"])
    more = f"""mode = 0o666
{idle_timeout}[[realtime.tools]]
name = "linger"
description = "Takes its time."
command = {command}
timeout_s = {TOOL_TIMEOUT_S}
"""
    return kiosk_config(url, socket_path, more=more)


def run_as(uid: int, code: str, *args: str) -> Any:
    """Run `code` (standard library only) as user `uid`; its line of output, parsed."""
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable  # another user may not reach ours
    out = subprocess.run([python, "-I", "-c", code, *args], user=uid, cwd="/", capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else f"failed: {out.stderr.strip()[-200:]}"


def tally(outcomes: dict[str, int], key: str) -> None:
    outcomes[key] = outcomes.get(key, 0) + 1


# ---- the attacks: each returns its figures --------------------------------------------------------------------


async def idle_connections(r: Rig) -> list[Figure]:
    holder = asyncio.create_task(
        asyncio.to_thread(run_as, OTHER_UID, HOLDER, str(r.socket), "20", str(FIRST_REQUEST_S + 3))
    )
    await asyncio.sleep(1.0)  # its connections are in
    second = await asyncio.to_thread(run_as, SECOND_UID, ASK_STATUS, str(r.socket))
    root = await r.ask("status")
    held = await holder
    refused = held["codes"].get("too_many_clients", 0)
    closed = "never" if held["still_open"] else f"after {held['idle_after_s']:.1f} s"
    return [
        (f"the other user holds {20 - refused} of 20 connections", "<= 8 (max_clients_per_uid)", 20 - refused <= 8),
        (f"a second user gets status: {second is True}; root: {root is not None}", "both", second is True and root),
        (f"silent connections closed {closed}", f"after first_request_s = {FIRST_REQUEST_S:g} s",
         not held["still_open"] and held["idle_after_s"] <= FIRST_REQUEST_S + 1),
    ]  # fmt: skip


async def image_flood(r: Rig) -> list[Figure]:
    picture = r.work / "camera.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(3 * 1024 * 1024))
    rss = [r.rss()]
    r.emulator.stall(True)  # a dead network path: the handshake hangs, the link stays down
    outcomes: dict[str, int] = {}
    async with r.client() as c:
        for i in range(40):
            try:
                await c.request("image", path=str(picture))
                tally(outcomes, "ok")
            except ControlError as exc:
                tally(outcomes, exc.code)
            if i in (19, 39):
                rss.append(r.rss())
    r.emulator.stall(False)
    late = rss[2] - rss[1]  # unbounded, each picture held would add its data URL: 4 MB
    return [(f"{outcomes}; RSS {rss[0]:.0f} -> {rss[1]:.0f} MB after 20 pictures, {rss[2]:.0f} MB after 40 "
             f"({late:+.1f} MB for the last 20)", "12 MB of pictures wait, the rest busy: the last 20 add < 4 MB",
             late < 4)]  # fmt: skip


async def speak_flood(r: Rig) -> list[Figure]:
    await r.ask("speak", text="Hello.")  # a session up, as in use
    await r.idle()
    before = r.created()
    r.emulator.set_delay(1.0)  # the first answer is under way when the client leaves
    outcomes: dict[str, int] = {}
    async with r.client() as c:
        for i in range(30):
            try:
                await c.request("speak", text=f"Announcement number {i}.")
                tally(outcomes, "ok")
            except ControlError as exc:
                tally(outcomes, exc.code)
    left = time.monotonic()
    r.emulator.set_delay(0.2)
    await asyncio.sleep(0.5)
    quiet = await r.idle()
    speaking = f"idle {time.monotonic() - left:.1f} s after it left" if quiet else f"still speaking after {CAP_S:g} s"
    billed = r.created() - before
    return [(f"{outcomes}; responses billed: {billed}; {speaking}", "1 (the one under way)", billed <= 1 and quiet)]


async def grandchild_tool(r: Rig) -> list[Figure]:
    def outputs() -> list[str]:
        items = [e["item"] for e in r.emulator.received if e.get("type") == "conversation.item.create"]
        return [str(item.get("output")) for item in items if item.get("type") == "function_call_output"]

    r.emulator.queue_reply(FunctionCallReply("linger", "{}"))
    await r.ask("say", text="Use the linger tool.")
    asked = time.monotonic()

    async def answered() -> bool:
        return bool(outputs())

    took = f"in {time.monotonic() - asked:.1f} s" if await r.until(answered) else f"not within {CAP_S:g} s"
    await asyncio.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep {SLEEP}"], capture_output=True, text=True).stdout.split()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)
    ok = bool(outputs()) and time.monotonic() - asked < CAP_S and not left
    return [(f"the model answered {took}; processes left behind: {len(left)}",
             f"the timeout ({TOOL_TIMEOUT_S:g} s), none", ok)]  # fmt: skip


async def refused_tool(r: Rig) -> list[Figure]:
    r.emulator.refuse_tools("bad_arm")
    told: list[dict[str, Any]] = []
    async with r.client() as owner:
        schema = {"type": "object", "properties": {"joint": {"type": "string"}}}
        await owner.serve_tool("bad_arm", "Move the arm.", schema, lambda args: "moved")
        await r.ask("say", text="Move the arm.")

        async def answered() -> bool:
            return r.created() > 0

        await r.until(answered)
        await r.idle()
        status = await r.ask("status") or {}
        async for event in owner.events("state"):  # tool_refused came before (sent whether subscribed or not)
            told += [event] if event.get("event") == "tool_refused" else []
            if event.get("snapshot"):
                break
    shakes = len(r.emulator.handshakes)
    figure = (f"owner told: {bool(told)}; the say answered: {r.created() > 0}; state {status.get('state')}; "
              f"handshakes {shakes}")  # fmt: skip
    return [(figure, "told, answered, never error, 2", bool(told) and r.created() > 0 and shakes <= 2)]


async def images_against_429(r: Rig) -> list[Figure]:
    small = b"\x89PNG\r\n\x1a\n" + random.Random(2).randbytes(20 * 1024)
    r.emulator.fail_handshakes(429, 1000, retry_after=RETRY_AFTER_S)
    outcomes: dict[str, int] = {}
    t0 = time.monotonic()
    async with r.client() as c:
        while time.monotonic() - t0 < 20:
            try:
                await c.send_image(small)  # no question: the device stays idle and lets the link go
                tally(outcomes, "ok")
            except ControlError as exc:
                tally(outcomes, exc.code)
            await asyncio.sleep(0.2)
    count, span = len(r.emulator.handshakes), time.monotonic() - t0
    allowed = 1 + span / RETRY_AFTER_S
    return [(f"{outcomes}: {count} handshakes in {span:.0f} s ({count / span * 60:.0f}/min)",
             f"<= {allowed:.1f} (Retry-After {RETRY_AFTER_S:g} s)", count <= allowed)]  # fmt: skip


ATTACKS: list[tuple[str, Callable[[Rig], Awaitable[list[Figure]]]]] = [
    ("1 idle connections", idle_connections),
    ("2 image flood, link down", image_flood),
    ("3 speak flood, then leave", speak_flood),
    ("4 tool leaves a grandchild", grandchild_tool),
    ("5 tool the server refuses", refused_tool),
    ("6 images against 429", images_against_429),
]


async def attack_all(code: Path, card: VirtualSoundCard, work: Path, label: str) -> dict[str, list[Figure]]:
    results: dict[str, list[Figure]] = {}
    for n, (name, attack) in enumerate(ATTACKS):
        here = work / f"{label}{n}"
        here.mkdir(mode=0o755)  # other users reach the socket in it
        async with fresh(code, card, here) as r:
            witness = Witness(r.socket)
            witness.start()
            rss0 = r.rss()
            try:
                figures = await attack(r)
            finally:
                watched = witness.stop()
            r.daemon.check()
            rss = (f"RSS {rss0:.0f} -> {r.rss():.0f} MB (peak {memory(r.daemon.pid)['VmHWM']:.0f})", "-", True)
            results[name] = [*figures, watched, rss]
        print(f"[abuse] {label}: {name}: {[text for text, _, _ in results[name]]}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="80131b3", help="the revision before the fixes ('none': skip)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/abuse.py plays other users (uid 65534, 65533): run it as root", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgevoice-abuse-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        with sound_card(work / "card", _rig.room_noise(_rig.RATE, 60)) as card:
            now = asyncio.run(attack_all(ROOT, card, work, "now"))
            before: dict[str, list[Figure]] = {}
            short = "-"
            if args.baseline_rev != "none":
                code, short = export_revision(args.baseline_rev, work / "baseline")
                before = asyncio.run(attack_all(code, card, work, short))
    print(f"\nedgevoice under attack (issue 15), each attack on a fresh daemon; {time.monotonic() - started:.0f} s")
    missed = 0
    for name, figures in now.items():
        print(f"\n{name}")
        for i, (text, bound, ok) in enumerate(figures):
            missed += not ok
            print(f"  {'ok    ' if ok else 'MISSED'} {text}" + (f"\n         bound: {bound}" if bound != "-" else ""))
            if before:
                print(f"         {short}: {before[name][i][0]}")
    total = sum(len(f) for f in now.values())
    print(f"\n{total - missed} of {total} figures within their bound")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
