"""Benchmark of session survival, with the real session manager against the emulator.

    .venv/bin/python bench/resilience.py

1. Link loss to detection: an abrupt drop (TCP reset) and a stall (packets stop, the TCP connection stays),
   with the default ping settings. Anchor: websockets' own defaults (ping every 20 s, 20 s timeout).
2. Server back to a usable session with the context replayed (20 items): the handshake, session.update and
   replay, measured; plus the wait for the next attempt after an outage, from the backoff policy.
3. The attempt schedule for a refused key over 10 minutes, and attempts per minute under a long outage:
   the manager runs for real against the emulator, with a virtual clock so 10 minutes take a second.
   Anchor: a naive client that retries every second (600 attempts in 10 minutes).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
from edgevoice.realtime.credentials import StaticSecret
from edgevoice.realtime.failures import SessionError
from edgevoice.realtime.manager import Clockwork, LinkStatus, ManagerHooks, SessionManager
from edgevoice.realtime.retry import RetryPolicy
from edgevoice.realtime.settings import (
    RealtimeSettings,
    ReconnectSettings,
    TranscriptionSettings,
    TurnDetectionSettings,
)

DEFAULTS = ReconnectSettings()


def settings(url: str, reconnect: ReconnectSettings = DEFAULTS) -> RealtimeSettings:
    return RealtimeSettings(
        url=url,
        turn_detection=TurnDetectionSettings(type="none"),
        transcription=TranscriptionSettings(model=""),
        reconnect=reconnect,
    )


class VirtualClock:
    """Time that passes only when the manager sleeps (its pauses between attempts)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def manager_for(url: str, links: list[LinkStatus], key: str = "k", **kwargs: Any) -> SessionManager:
    return SessionManager(
        settings(url, kwargs.pop("reconnect", DEFAULTS)),
        StaticSecret(key),
        ManagerHooks(on_link=links.append),
        **kwargs,
    )


async def until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.005)


# ---- 1 ------------------------------------------------------------------------------------------------


async def detection(fault: str) -> float:
    async with RealtimeEmulator(EmulatorSettings()) as emulator:
        links: list[LinkStatus] = []
        manager = manager_for(emulator.url, links)
        task = asyncio.create_task(manager.run())
        manager.connect()
        await until(lambda: manager.is_up)
        await asyncio.sleep(random.uniform(0, DEFAULTS.ping_interval_s))  # faults do not wait for a ping
        started = time.monotonic()
        if fault == "drop":
            emulator.drop_connections()
        else:
            emulator.stall()
        await until(lambda: any(s.state == "down" for s in links))
        detected = time.monotonic() - started
        emulator.stall(False)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return detected


def bench_detection() -> None:
    print("1. From link loss to detection (default pings: every 5 s, 5 s timeout), 5 runs each")
    for fault in ("drop", "stall"):
        runs = [asyncio.run(detection(fault)) for _ in range(5)]
        print(f"   {fault:<7} median {statistics.median(runs):6.2f} s, max {max(runs):6.2f} s", end="")
        anchor = "   anchor: websockets defaults notice a stall after 20-40 s" if fault == "stall" else ""
        print(anchor)


# ---- 2 ------------------------------------------------------------------------------------------------


async def recovery(items: int) -> float:
    async with RealtimeEmulator(EmulatorSettings()) as emulator:
        links: list[LinkStatus] = []
        manager = manager_for(emulator.url, links, reconnect=ReconnectSettings(backoff_base_s=0.05, backoff_cap_s=0.05))
        for i in range(items):
            role = "user" if i % 2 == 0 else "assistant"
            manager.history.add_text(f"item_{i:04d}", role, f"turn {i}: " + "some words of the conversation " * 4)
        task = asyncio.create_task(manager.run())
        emulator.fail_handshakes(503, count=1)
        manager.connect()
        await until(lambda: len(manager.attempt_log) >= 1)
        back = time.monotonic()  # the server answers again from here
        await until(lambda: manager.is_up)
        await emulator.wait_for("conversation.item.create", count=items)  # the whole context is in the session
        ready = time.monotonic() - back
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return ready


def bench_recovery() -> None:
    print("\n2. From the server being back to a usable session with 20 items of context replayed")
    runs = [asyncio.run(recovery(20)) for _ in range(5)]
    print(
        f"   handshake + session.update + replay, after the retry fires: median {statistics.median(runs) * 1000:.0f} ms"
    )
    policy = RetryPolicy(DEFAULTS, random.Random(1))
    print("   plus the wait for the next attempt (backoff base 0.5 s, cap 30 s, full jitter; 10000 outages):")
    for outage_s in (5, 30, 120, 600):
        waits = []
        for _ in range(10000):
            t, attempt = 0.0, 0
            while t < outage_s:
                t += policy.backoff(attempt)
                attempt += 1
            waits.append(t - outage_s)
        waits.sort()
        print(f"   outage {outage_s:>4} s: median {statistics.median(waits):5.1f} s, p95 {waits[9500]:5.1f} s")


# ---- 3 ------------------------------------------------------------------------------------------------


async def schedule(fault: str, minutes: float = 10.0) -> list[tuple[float, str]]:
    emulator_settings = EmulatorSettings(api_key="the-right-key")
    async with RealtimeEmulator(emulator_settings) as emulator:
        clock = VirtualClock()
        links: list[LinkStatus] = []
        key = "a-revoked-key" if fault == "bad key" else "the-right-key"
        manager = manager_for(emulator.url, links, key=key, clockwork=Clockwork(clock=clock, sleep=clock.sleep))
        if fault == "outage":
            emulator.fail_handshakes(503, count=100000)
        task = asyncio.create_task(manager.run())
        manager.connect()
        await until(lambda: clock.now >= minutes * 60 or task.done())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return [(t, kind) for t, kind in manager.attempt_log if t < minutes * 60]


def bench_schedules() -> None:
    print("\n3. Attempts over 10 minutes (the real manager, a virtual clock), default settings")
    bad_key = asyncio.run(schedule("bad key"))
    times = ", ".join(f"{t:.0f} s" for t, _ in bad_key)
    print(f"   refused key (HTTP 401): {len(bad_key)} attempts, at {times}")
    outage = asyncio.run(schedule("outage"))
    per_minute = [sum(1 for t, _ in outage if m * 60 <= t < (m + 1) * 60) for m in range(10)]
    print(f"   server down (HTTP 503): {len(outage)} attempts; per minute: {per_minute}")
    print("   anchor: a client retrying every second makes 600 attempts in 10 minutes, 60 per minute")
    policy = RetryPolicy(DEFAULTS, random.Random(2))
    steady = [policy.backoff(20) for _ in range(100000)]
    print(
        f"   steady state: mean wait {statistics.mean(steady):.1f} s = {60 / statistics.mean(steady):.1f} attempts/min"
    )
    expired = policy.after(SessionError("expired", "Your session hit the maximum duration of 60 minutes."), 0)
    print(f"   a session at its 60-minute limit reconnects after {expired.delay_s:.0f} s (a rollover, not a failure)")


def main() -> None:
    bench_detection()
    bench_recovery()
    bench_schedules()


if __name__ == "__main__":
    main()
