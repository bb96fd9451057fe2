"""A fleet on one broker: the real bridge code (edgevoice/fleet/bridge.py, without audio) N times on one Mosquitto.

    .venv/bin/python bench/fleet.py [--devices 500] [--idle 60] [--busy 60] [--lag 10] [--json]

1. What the broker carries per device, idle (metrics every 60 s, keepalive 30 s: the defaults) and in use (one
   turn a minute: the state changes, latency and usage events a turn makes), from the broker's own byte
   counters ($SYS/broker/bytes/received, every second) over a window; as bytes per device per hour, beside the
   application payload the bridges counted (topic + payload, no MQTT framing).
2. `edgevoice fleet --json` listing every device, wall time, beside the anchor of `edgevoice --version` (the
   interpreter and CLI start-up every run of the command pays).
3. Broker restart: Mosquitto stopped for --down seconds and started again; when each device is back (its
   `online` published), p50/p95/max after the broker came up, and the most connections in any 100 ms (a herd
   would be all N at once), beside the jitter window the backoff policy allows.
4. A dead broker must not delay one audio frame: the event loop's lateness on a 20 ms tick (the microphone's
   frame) with one bridge, beside the same loop without a bridge (anchor): broker up with events flowing,
   broker refusing connections, and a black-hole broker (accepts TCP, never answers MQTT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from edgevoice.devkit.broker import Broker, mosquitto_problem
from edgevoice.fleet.bridge import FleetBridge
from edgevoice.fleet.discovery import DeviceInfo
from edgevoice.fleet.settings import MqttSettings
from edgevoice.fleet.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
USAGE = {  # shaped as the daemon's `usage` event for one answer
    "event": "usage", "response_id": "resp_Cx0123456789abcdefABCD", "model": "gpt-realtime-2",
    "tokens": {"text_in": 812, "text_in_cached": 640, "audio_in": 96, "audio_in_cached": 0, "image_in": 0,
               "text_out": 38, "audio_out": 190},
    "usd": 0.01731, "input_audio_s": 2.1, "speech_s": 1.9,
    "session": {"tokens": 2310, "usd": 0.0412}, "today": {"tokens": 51200, "usd": 0.884, "responses": 37},
}  # fmt: skip


class FakeDevice:
    """What a bridge needs of a device: its state (changed by the simulated turns), commands refused."""

    def __init__(self) -> None:
        self.current = "idle"

    def state(self) -> dict[str, Any]:
        return {"state": self.current, "muted": False, "volume": 0.8, "link": "up"}

    def execute(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"state": self.current}


def metrics(device: FakeDevice, i: int) -> dict[str, Any]:
    return {
        "ts": round(time.time(), 1), "uptime_s": 86400 + i, "state": device.current, "link": "up", "turns": 412,
        "link_reconnects": 1, "mqtt_reconnects": 0, "latency_p50_ms": 720, "latency_p95_ms": 1340, "overflows": 0,
        "underflows": 2, "cpu_temp_c": 51.2, "throttled": 0, "model": "gpt-realtime-2", "tokens_today": 51200,
        "cost_today_usd": 0.884, "budget_left_usd": 4.116,
    }  # fmt: skip


class Member:
    """One simulated device: its bridge, its metrics timer and its turns."""

    def __init__(self, url: str, i: int, settings: dict[str, Any]) -> None:
        self.i = i
        self.device = FakeDevice()
        name = f"dev{i:05d}"
        self.bridge = FleetBridge(
            MqttSettings(url=url, device_id=name, **settings),
            Topics(f"edgevoice/{name}"),
            DeviceInfo(name, "0.1.0", "Raspberry Pi 4 Model B", "respeaker-2mic"),
            execute=self.device.execute,
            state=self.device.state,
            rng=random.Random(i),
        )
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.bridge.run()), asyncio.create_task(self._metrics())]

    async def _metrics(self) -> None:
        await asyncio.sleep(random.uniform(0, 60))  # devices started at different times
        while True:
            self.bridge.set_metrics(metrics(self.device, self.i))
            await asyncio.sleep(self.bridge.settings.metrics_interval_s)

    async def turn(self, at_s: float) -> None:
        await asyncio.sleep(at_s)
        for state, pause, extra in (
            ("listening", 3.0, None),
            ("thinking", 0.7, {"event": "latency", "what": "end of speech to first answer audio", "ms": 712}),
            ("speaking", 4.0, USAGE),
            ("idle", 0.0, None),
        ):
            self.device.current = state
            self.bridge.on_event({"event": "state", "state": state, "previous": ""})
            if extra is not None:
                self.bridge.on_event(extra)
            await asyncio.sleep(pause)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class SysCounters:
    """The broker's $SYS byte and message counters, as it publishes them (sys_interval 1)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.values: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="bench-sys") as client:
            await client.subscribe("$SYS/broker/bytes/received")
            await client.subscribe("$SYS/broker/messages/received")
            async for message in client.messages:
                with contextlib.suppress(ValueError):
                    self.values[str(message.topic).removeprefix("$SYS/broker/")] = float(str(message.payload.decode()))  # type: ignore[union-attr]

    async def fresh(self) -> dict[str, float]:
        """The counters as the broker last published them (retained, republished every second when they change)."""
        await asyncio.sleep(1.1)
        while len(self.values) < 2:
            await asyncio.sleep(0.05)
        return dict(self.values)


async def wait_for(condition: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def traffic(
    counters: SysCounters, members: list[Member], window_s: float, turns: bool
) -> tuple[float, float, float]:
    """(broker bytes received, messages received, payload bytes counted by the bridges) per device per hour."""
    before, sent_before = await counters.fresh(), sum(m.bridge.sent_bytes for m in members)
    started = time.monotonic()
    busy = [asyncio.create_task(m.turn(random.uniform(0, window_s - 9))) for m in members] if turns else []
    await asyncio.sleep(window_s)
    after, sent_after = await counters.fresh(), sum(m.bridge.sent_bytes for m in members)
    elapsed = time.monotonic() - started
    await asyncio.gather(*busy)
    scale = 3600 / elapsed / len(members)
    return (
        (after["bytes/received"] - before["bytes/received"]) * scale,
        (after["messages/received"] - before["messages/received"]) * scale,
        (sent_after - sent_before) * scale,
    )


def listing(url: str, expected: int) -> tuple[float, float, int]:
    """(seconds for `edgevoice fleet --json`, seconds for `edgevoice --version`, devices listed)."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "edgevoice", "--version"], capture_output=True, check=True, cwd=ROOT)
    anchor = time.monotonic() - start
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "edgevoice", "fleet", "--broker", url, "--json", "--wait", "30"],
                         capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    took = time.monotonic() - start
    rows = json.loads(out.stdout)
    return took, anchor, sum(r["availability"] == "online" for r in rows)


async def restart(broker: Broker, members: list[Member], down_s: float) -> dict[str, float]:
    before = {id(m): m.bridge.connections for m in members}
    broker.stop()
    await wait_for(lambda: not any(m.bridge.connected for m in members), 60, "every bridge to see the broker gone")
    await asyncio.sleep(down_s)
    broker.start()
    up = time.monotonic()
    back: dict[int, float] = {}
    while len(back) < len(members):
        for m in members:
            if id(m) not in back and m.bridge.connections > before[id(m)]:
                back[id(m)] = time.monotonic() - up
        if time.monotonic() - up > 300:
            raise RuntimeError(f"only {len(back)} of {len(members)} back after 300 s")
        await asyncio.sleep(0.005)
    times = sorted(back.values())
    herd = max(sum(1 for t in times if s <= t < s + 0.1) for s in times)
    return {"p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))], "max": times[-1],
            "herd_100ms": herd, "first": times[0]}  # fmt: skip


async def loop_lag(seconds: float, bridge: FleetBridge | None) -> tuple[float, float, float]:
    """(p50, p99, max) ms a 20 ms tick is late, with `bridge` running (and an event every tick) or without."""
    task = asyncio.create_task(bridge.run()) if bridge is not None else None
    late: list[float] = []
    try:
        deadline = time.monotonic() + seconds
        next_tick = time.monotonic()
        while time.monotonic() < deadline:
            next_tick += 0.02
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            late.append(max(0.0, time.monotonic() - next_tick) * 1000)
            if bridge is not None:
                bridge.on_event({"event": "notice", "message": "a frame's worth of news"})
                bridge.on_event({"event": "state", "state": "listening", "previous": "idle"})
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    late.sort()
    return statistics.median(late), late[int(0.99 * (len(late) - 1))], late[-1]


class BlackHole:
    """A TCP port that accepts connections and never says a word (a broker hung, a firewall's tarpit)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"devices": args.devices}
    workdir = Path(tempfile.mkdtemp(prefix="ev-fleet-bench-"))
    settings = {"reconnect_max_s": 30.0}
    broker = Broker(workdir, more=("sys_interval 1", "max_queued_messages 1000"))
    broker.start()
    counters = SysCounters(broker.port)
    counters.task = asyncio.create_task(counters.run())
    members = [Member(broker.url, i, settings) for i in range(args.devices)]
    try:
        started = time.monotonic()
        for m in members:
            m.start()
        await wait_for(lambda: all(m.bridge.connected for m in members), 300, "every device to connect")
        results["connect_all_s"] = time.monotonic() - started
        print(f"{args.devices} bridges connected in {results['connect_all_s']:.1f} s", flush=True)
        await asyncio.sleep(5)  # the retained state, discovery and first metrics go out
        idle = await traffic(counters, members, args.idle, turns=False)
        busy = await traffic(counters, members, args.busy, turns=True)
        results["idle"] = dict(zip(("broker_bytes_h", "messages_h", "payload_bytes_h"), idle, strict=True))
        results["busy"] = dict(zip(("broker_bytes_h", "messages_h", "payload_bytes_h"), busy, strict=True))
        took, anchor, listed = await asyncio.to_thread(listing, broker.url, args.devices)
        results["listing"] = {"seconds": took, "anchor_version_s": anchor, "online_listed": listed}
        results["restart"] = await restart(broker, members, args.down)
        results["restart"]["cap_s"] = settings["reconnect_max_s"]
    finally:
        for m in members:
            await m.stop()
        if counters.task is not None:
            counters.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await counters.task
        broker.stop()
    # 4. the event loop's lateness with one bridge
    lag: dict[str, tuple[float, float, float]] = {}
    lag["no bridge (anchor)"] = await loop_lag(args.lag, None)
    with Broker(workdir / "lag") as up:
        lag["broker up, 100 events/s"] = await loop_lag(args.lag, Member(up.url, 0, {}).bridge)
    refused = Broker(workdir / "refused")  # never started: its port refuses
    lag["broker refusing"] = await loop_lag(args.lag, Member(refused.url, 1, {"reconnect_max_s": 1.0}).bridge)
    url = f"mqtt://127.0.0.1:{args.hole.port}"  # closed after the loop: aiomqtt minds a cancelled connect's close
    lag["black-hole broker"] = await loop_lag(args.lag, Member(url, 2, {"reconnect_max_s": 1.0}).bridge)
    results["lag_ms"] = lag
    return results


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    n = r["devices"]
    print(f"\nFleet of {n} device bridges on one Mosquitto (one process, one event loop; broker on this machine)")
    print("\n1. Broker traffic per device (bytes the broker received, from $SYS; payload = topic + payload counted)")
    busy = f"in use, {3600 / args.busy:.0f} turns/h"
    for name, key, window in (("idle", "idle", args.idle), (busy, "busy", args.busy)):
        t = r[key]
        print(f"   {name:<20} {t['broker_bytes_h'] / 1000:7.1f} kB/device/hour   {t['messages_h']:6.0f} messages/h"
              f"   payload {t['payload_bytes_h'] / 1000:6.1f} kB/h   (window {window:g} s)")  # fmt: skip
    print("   anchor: one 20 ms frame of 24 kHz PCM16 audio is 960 bytes; an hour of the mic streamed is 172800 kB")
    li = r["listing"]
    print(f"\n2. edgevoice fleet --json: {li['seconds']:.2f} s for {li['online_listed']} of {n} devices online"
          f"   (anchor: edgevoice --version {li['anchor_version_s']:.2f} s)")  # fmt: skip
    rs = r["restart"]
    print(f"\n3. Broker restart (down {args.down:g} s): every device back within {rs['max']:.2f} s of the broker "
          f"(p50 {rs['p50']:.2f}, p95 {rs['p95']:.2f}, first {rs['first']:.2f})")  # fmt: skip
    print(f"   most connections in any 100 ms: {rs['herd_100ms']} of {n}   (a herd: {n}); bound: the backoff window "
          f"pending then (1, 2, 4, 8... s after each failed attempt, at most {rs['cap_s']:g} s)")  # fmt: skip
    print("\n4. Event-loop lateness on a 20 ms tick (ms: p50 / p99 / max), one bridge")
    for name, (p50, p99, worst) in r["lag_ms"].items():
        print(f"   {name:<26} {p50:6.2f} {p99:7.2f} {worst:7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window")
    parser.add_argument("--busy", type=float, default=60.0, help="seconds of the in-use window (1 turn per device)")
    parser.add_argument("--down", type=float, default=3.0, help="seconds the broker stays down in the restart")
    parser.add_argument("--lag", type=float, default=10.0, help="seconds of each event-loop lateness measurement")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if (problem := mosquitto_problem()) is not None:
        sys.exit(f"bench/fleet.py {problem}")
    logging.basicConfig(level=logging.ERROR)  # a fleet of bridges losing their broker says so 500 times
    options.hole = BlackHole()
    try:
        figures = asyncio.run(main(options))
    finally:
        options.hole.close()
    print(json.dumps(figures, indent=1) if options.json else "", end="")
    if not options.json:
        report(figures, options)
