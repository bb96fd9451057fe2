"""sd_notify and the watchdog against a real NOTIFY_SOCKET (a datagram socket receives what the daemon sends)."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
from notify_socket import NotifySocket

from edgevoice.system.notify import Notifier, WatchdogPinger, watchdog_timeout


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> NotifySocket:
    with NotifySocket() as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
        yield sock


def test_ready_status_watchdog_stopping_reach_systemd(notify: NotifySocket) -> None:
    notifier = Notifier()
    assert notifier.ready("idle")
    assert notifier.status("error: audio:\nno input device")
    assert notifier.watchdog()
    assert notifier.extend_start_timeout(15, "waiting for the sound devices")
    assert notifier.reloading()
    assert notifier.stopping()
    notify.wait_for("STOPPING", "1")
    messages = [m for _, m in notify.messages]
    assert messages[0] == {"READY": "1", "STATUS": "idle"}
    assert messages[1] == {"STATUS": "error: audio: no input device"}  # one line: a newline would end STATUS=
    assert messages[2] == {"WATCHDOG": "1"}
    assert messages[3] == {"EXTEND_TIMEOUT_USEC": "15000000", "STATUS": "waiting for the sound devices"}
    assert messages[4]["RELOADING"] == "1" and int(messages[4]["MONOTONIC_USEC"]) > 0
    assert messages[5]["STOPPING"] == "1"


def test_a_notify_socket_nobody_reads_never_blocks_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: libsystemd's sd_notify waited for room in the socket's queue, on the event loop; a reader
    that had stopped reading held the whole device on the next STATUS= (found by bench/soak.py)."""
    directory = Path(tempfile.mkdtemp(prefix="ev-notify-"))
    unread = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unread.bind(str(directory / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(directory / "notify"))
    notifier = Notifier()

    async def flood() -> list[bool]:  # in a thread, so that a blocking send fails the test instead of hanging it
        return await asyncio.wait_for(
            asyncio.to_thread(lambda: [notifier.status(f"state {i}") for i in range(2000)]), 10
        )

    try:
        sent = asyncio.run(flood())
    finally:
        unread.close()
    assert sent[0] and not sent[-1] and notifier.dropped == sent.count(False) > 0


def test_outside_systemd_and_a_vanished_socket_are_harmless(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().ready() and not Notifier().enabled
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/edgevoice-notify")
    notifier = Notifier()
    assert notifier.enabled
    assert not notifier.ready() and not notifier.watchdog() and not notifier.status("x")  # FileNotFoundError inside
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1  # said once, not per ping


def test_watchdog_timeout_is_parsed_and_only_for_the_process_it_is_meant_for() -> None:
    assert watchdog_timeout({}) is None
    assert watchdog_timeout({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_timeout({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": str(os.getpid())}) == 2.5
    assert watchdog_timeout({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "1"}) is None  # our parent's
    assert watchdog_timeout({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_timeout({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_timeout({"WATCHDOG_USEC": "100", "WATCHDOG_PID": "me"}) is None


def pings_between(notify: NotifySocket, start: float, end: float) -> int:
    return sum(start <= t < end for t, _ in notify.having("WATCHDOG", "1"))


def test_a_stalled_check_stops_the_pings_and_says_why(notify: NotifySocket) -> None:
    audio_ok = True

    async def scenario() -> WatchdogPinger:
        nonlocal audio_ok
        pinger = WatchdogPinger(Notifier(), 0.4, {"microphone": lambda: audio_ok})  # a ping every 0.1 s
        task = asyncio.create_task(pinger.run())
        await asyncio.sleep(0.5)
        audio_ok = False
        await asyncio.sleep(0.6)
        audio_ok = True
        await asyncio.sleep(0.5)
        task.cancel()
        return pinger

    t0 = time.monotonic()
    pinger = asyncio.run(scenario())
    time.sleep(0.1)
    assert pings_between(notify, t0, t0 + 0.45) >= 3
    assert pings_between(notify, t0 + 0.65, t0 + 1.05) == 0  # withheld while the microphone is stalled
    assert pings_between(notify, t0 + 1.25, t0 + 1.6) >= 2  # and back once it recovers
    assert pinger.withheld >= 4
    assert any("microphone stalled" in s for s in notify.statuses())


def test_a_blocked_event_loop_stops_the_pings(notify: NotifySocket) -> None:
    async def scenario() -> tuple[float, float]:
        pinger = WatchdogPinger(Notifier(), 0.4, {"always": lambda: True})
        task = asyncio.create_task(pinger.run())
        await asyncio.sleep(0.4)
        blocked_at = time.monotonic()
        time.sleep(1.0)  # a blocking call on the loop: the pinger cannot run, so nothing pings
        unblocked_at = time.monotonic()
        await asyncio.sleep(0.4)
        task.cancel()
        return blocked_at, unblocked_at

    blocked_at, unblocked_at = asyncio.run(scenario())
    time.sleep(0.1)
    assert pings_between(notify, blocked_at - 0.4, blocked_at) >= 2
    assert pings_between(notify, blocked_at + 0.01, unblocked_at) == 0
    assert pings_between(notify, unblocked_at, unblocked_at + 0.4) >= 2
