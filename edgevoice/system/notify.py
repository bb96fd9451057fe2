"""Talking to systemd: sd_notify messages and a watchdog that only pings while the device really works.

`Notifier` sends READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1 and EXTEND_TIMEOUT_USEC= as the
sd_notify protocol says: one datagram to $NOTIFY_SOCKET. It sends them itself, never blocking: libsystemd's
sd_notify waits while the socket's queue is full, and it is called from the event loop (a reader that had
stopped reading once held the whole device, audio included, on its first STATUS= too many). A message that
does not fit is dropped and counted. Outside systemd (no NOTIFY_SOCKET) every call is a no-op, and a
NOTIFY_SOCKET that has gone away (FileNotFoundError, ECONNREFUSED) is logged once and never stops the daemon.

`WatchdogPinger` runs on the event loop and sends WATCHDOG=1 every quarter of the watchdog timeout, but only
when every liveness check passes (the daemon supplies one for the microphone path). Because it runs on the
loop, a blocked loop stops the pings by itself: nothing else can ping for it (no thread), so a hung loop and
a stalled capture callback both end in systemd killing and restarting the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


LivenessCheck = Callable[[], bool]


def watchdog_timeout(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd set for this process (seconds), or None when there is none.

    systemd sets WATCHDOG_USEC (and WATCHDOG_PID, the process meant): a child that inherited the variables
    must not ping on its parent's behalf.
    """
    raw = environ.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", raw)
        return None
    if usec <= 0:
        return None
    meant_for = environ.get("WATCHDOG_PID", "").strip()
    if meant_for:
        try:
            if int(meant_for) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            log.warning("ignoring WATCHDOG_PID=%r: not a process id", meant_for)
            return None
    return usec / 1_000_000


class Notifier:
    """sd_notify for this process; silent outside systemd and never raising."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.enabled = bool(path) and hasattr(socket, "AF_UNIX")
        self._address = "\0" + path[1:] if path.startswith("@") else path  # "@..." is the abstract namespace
        self._socket: socket.socket | None = None
        self._failed = False
        self.dropped = 0  # messages the socket's queue had no room for
        self.last_status = ""

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram, never waiting; True if the socket took them."""
        if not self.enabled:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            sent = self._socket.sendto("\n".join(assignments).encode(), self._address) > 0
        except BlockingIOError:  # the queue is full (nobody reads it now): drop it, never wait
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.warning("systemd's notify socket is not read; %d messages dropped so far", self.dropped)
            return False
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd (NOTIFY_SOCKET): %s; carrying on without it", exc)
            self._failed = True
            return False
        if sent and self._failed:
            log.info("systemd notifications work again")
            self._failed = False
        return sent

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *self._status_line(status))

    def status(self, text: str) -> bool:
        return self.send(*self._status_line(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self, status: str = "reloading the configuration") -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) tell this reload from an older one.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                         *self._status_line(status))  # fmt: skip

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", *self._status_line(status))

    def extend_start_timeout(self, seconds: float, status: str = "") -> bool:
        """Still starting, and alive: give us `seconds` more before the start timeout kills us."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}", *self._status_line(status))

    def _status_line(self, text: str) -> list[str]:
        if not text:
            return []
        self.last_status = text
        return ["STATUS=" + " ".join(text.split())]  # one line: a newline would start a new assignment


class WatchdogPinger:
    """WATCHDOG=1 every `timeout_s / 4`, only while the loop runs and every check passes."""

    def __init__(
        self,
        notifier: Notifier,
        timeout_s: float,
        checks: Mapping[str, LivenessCheck],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.timeout_s = timeout_s
        self.period_s = timeout_s / 4
        self.checks = dict(checks)
        self._clock = clock
        self.pings = 0
        self.withheld = 0
        self.failing: list[str] = []

    def check(self) -> list[str]:
        """The names of the checks that fail now (a check that raises fails)."""
        failing = []
        for name, alive in self.checks.items():
            try:
                ok = alive()
            except Exception:
                log.exception("watchdog check %r failed", name)
                ok = False
            if not ok:
                failing.append(name)
        return failing

    def beat(self) -> bool:
        """One watchdog period: ping if everything is alive; say once what is not. True if pinged."""
        failing = self.check()
        if failing != self.failing:
            if failing:
                log.error(
                    "watchdog: %s not alive; withholding WATCHDOG=1 so that systemd restarts edgevoice",
                    ", ".join(failing),
                    extra={"ERROR_CODE": "watchdog_" + failing[0].replace(" ", "_")},
                )
                self.notifier.status(f"error: {', '.join(failing)} stalled; waiting for the watchdog restart")
            else:
                log.info("watchdog: all checks alive again")
            self.failing = failing
        if failing:
            self.withheld += 1
            return False
        self.pings += 1
        self.notifier.watchdog()
        return True

    async def run(self) -> None:
        """Ping until cancelled. The first ping goes out at once."""
        late_warned = False
        while True:
            self.beat()
            due = self._clock() + self.period_s
            await asyncio.sleep(self.period_s)
            lag = self._clock() - due
            if lag > self.period_s and not late_warned:
                # The loop was blocked for longer than a period; one more such stall and systemd restarts us.
                log.warning("watchdog: the event loop was blocked for %.1f s", lag)
                late_warned = True
