"""A real NOTIFY_SOCKET for tests: a unix datagram socket that records what the process under test tells systemd."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path


class NotifySocket:
    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ev-notify-"))  # short: unix socket paths are limited to 107 bytes
        self.path = self._dir / "notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []  # (monotonic time, assignments)
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def having(self, key: str, value: str | None = None, since: float = 0.0) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [
                (t, m)
                for t, m in self.messages
                if t >= since and key in m and (value is None or m[key] == value or m[key].startswith(value))
            ]

    def statuses(self, since: float = 0.0) -> list[str]:
        return [m["STATUS"] for _, m in self.having("STATUS", since=since)]

    def wait_for(self, key: str, value: str | None = None, since: float = 0.0, timeout: float = 20.0) -> float:
        """The time of the first message with key (= value, or starting with value) after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.having(key, value, since)
            if found:
                return found[0][0]
            time.sleep(0.01)
        raise AssertionError(f"no {key}={value or ''} within {timeout} s; got {self.messages[-10:]}")

    def close(self) -> None:
        self._running = False
        self._thread.join(1)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
