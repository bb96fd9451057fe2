"""A real Mosquitto broker in a directory of its own, on free ports (never the system broker on :1883), for the
fleet tests and bench/fleet.py.

    broker = Broker(tmp_path, users={"kiosk": "secret"}, tls=True).start()
    broker.url            # mqtt://127.0.0.1:PORT (anonymous refused when users are given)
    broker.tls_url        # mqtts://localhost:PORT2, its certificate signed by broker.ca_file
    broker.stop(); broker.start()   # a restart on the same ports

The password file is made with `mosquitto_passwd -b` (the test's throwaway passwords on its command line), the
TLS certificates with the `openssl` command in the broker's directory.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_problem() -> str | None:
    """Why no test broker can run here (None if it can)."""
    if not Path(MOSQUITTO).exists() or shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        return "needs Debian's mosquitto and openssl (scripts/dev-setup --test installs them)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `localhost` signed by it: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / f"{name}.key", directory / f"{name}.crt"
    key, csr, cert = (
        directory / f"{name}-server.key",
        directory / f"{name}-server.csr",
        directory / f"{name}-server.crt",
    )
    san = directory / f"{name}-san.ext"
    san.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=edgevoice test {name}",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(san), "-out", str(cert))  # fmt: skip
    for path in (ca_key, key, ca, cert):
        path.chmod(0o644)  # mosquitto drops to `nobody` when started as root
    return ca, cert, key


class Broker:
    """Mosquitto on free ports in `directory` (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        tls: bool = False,
        unix: bool = False,
        more: tuple[str, ...] = (),
    ) -> None:
        self.dir = directory / "broker"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.socket_path = self.dir / "mqtt.sock" if unix else None
        self.ca_file: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        lines = ["persistence false", "log_dest stderr", "log_type error", "log_type warning", "user root"]
        auth = ["allow_anonymous true"]
        if users:
            passwd = self.dir / "passwd"
            for i, (user, password) in enumerate(users.items()):
                flags = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, password], check=True)
            auth = ["allow_anonymous false", f"password_file {passwd}"]
        lines += ["per_listener_settings false", *auth, f"listener {self.port} 127.0.0.1"]
        if tls:
            self.ca_file, cert, key = make_ca(self.dir)
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca_file}", f"certfile {cert}",
                      f"keyfile {key}"]  # fmt: skip
        if self.socket_path is not None:
            lines += [f"listener 0 {self.socket_path}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join([*lines, *more]) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self.tls_port}"

    def start(self) -> Broker:
        log = (self.dir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()}")
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
