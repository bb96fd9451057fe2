"""Settings of the fleet bridge (the `[mqtt]` and `[metrics]` sections of config.toml), and what they mean:
the broker's address (`broker_address`), the device id (`device_id`), the topic base (`topic_base`).

The broker password never lives here: `edgevoice.fleet.credentials` reads it from a systemd credential or a
0600 file, as the API key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOPIC_BASE = re.compile(r"[A-Za-z0-9_./-]{1,128}")
MACHINE_ID = Path("/etc/machine-id")
DEFAULT_COMMANDS = ("mute", "unmute", "volume", "status")


@dataclass(frozen=True)
class MqttSettings:
    """`[mqtt]`: the bridge to the operator's broker; off while `url` is empty. Commands arrive on
    `<topic_base>/cmd/<name>` and only those in `commands` are run (nothing here reboots or runs programs)."""

    url: str = ""  # mqtt://host[:1883], mqtts://host[:8883], or unix:///path/to/socket; "" = no bridge
    device_id: str = ""  # "" = the first 12 characters of /etc/machine-id
    client_id: str = ""  # "" = edgevoice-<device id>
    topic_base: str = ""  # "" = edgevoice/<device id>
    ca_file: str = ""  # mqtts://: the CA that signed the broker's certificate ("" = the system's CAs)
    username: str = ""
    password_file: str = ""  # mode 0600; or the systemd credential mqtt_password
    keepalive_s: int = field(default=30, metadata={"min": 5, "max": 3600})
    qos: int = field(default=1, metadata={"min": 0, "max": 1, "doc": "0 at most once, 1 at least once"})
    commands: tuple[str, ...] = DEFAULT_COMMANDS
    transcripts: bool = False  # what visitors say and hear, on <topic_base>/event: off for their privacy
    metrics_interval_s: float = field(default=60.0, metadata={"min": 5.0, "max": 3600.0})
    discovery: bool = True  # Home Assistant discovery under discovery_prefix
    discovery_prefix: str = "homeassistant"
    queue: int = field(default=64, metadata={"min": 8, "max": 4096, "doc": "events held while the broker is away"})
    reconnect_max_s: float = field(default=60.0, metadata={"min": 1.0, "max": 3600.0})

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class MetricsSettings:
    """`[metrics]`: with `textfile`, the device's figures written atomically every `interval_s` for
    node_exporter's textfile collector (e.g. /var/lib/node_exporter/textfile_collector/edgevoice.prom)."""

    textfile: str = ""
    interval_s: float = field(default=60.0, metadata={"min": 5.0, "max": 3600.0})


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: a host and port (TLS or not), or the path of a Unix socket."""

    transport: Literal["tcp", "unix"]
    host: str  # the socket's path for "unix"
    port: int
    tls: bool


def broker_address(url: str) -> BrokerAddress:
    """`url` as an address; ValueError says what is wrong and what to write."""
    if url.startswith("/"):
        return BrokerAddress("unix", url, 0, False)
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path
        if not path.startswith("/") or parts.netloc:
            raise ValueError("a Unix socket is unix:///absolute/path")
        return BrokerAddress("unix", path, 0, False)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("must start with mqtt://, mqtts:// or unix:///")
    if "@" in parts.netloc:
        raise ValueError("put no user or password in the URL: use [mqtt] username and password_file")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("names no host: mqtt://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("a broker URL has no path or query: mqtt://HOST[:PORT]")
    tls = parts.scheme == "mqtts"
    return BrokerAddress("tcp", parts.hostname, port or (8883 if tls else 1883), tls)


def device_id(settings: MqttSettings, machine_id: Path = MACHINE_ID) -> str:
    """The configured device id, else the machine's (the first 12 hex digits of /etc/machine-id)."""
    if settings.device_id:
        return settings.device_id
    try:
        found = machine_id.read_text(encoding="ascii").strip()[:12]
    except (OSError, UnicodeDecodeError):
        found = ""
    if not DEVICE_ID.fullmatch(found):
        raise ValueError(f"{machine_id} gives no machine id: set [mqtt] device_id (letters, digits, _ and -)")
    return found


def topic_base(settings: MqttSettings, device: str) -> str:
    return settings.topic_base or f"edgevoice/{device}"


def settings_problems(settings: MqttSettings, commands_allowed: Callable[[str], str | None]) -> list[str]:
    """What is wrong in `[mqtt]`, each as `key = value: what to write`; `commands_allowed(name)` says why a
    command cannot be run over MQTT (None if it can)."""
    problems = []
    if settings.enabled:
        try:
            broker_address(settings.url)
        except ValueError as exc:
            problems.append(f"url = {settings.url!r}: {exc}")
    if settings.device_id and not DEVICE_ID.fullmatch(settings.device_id):
        problems.append(f"device_id = {settings.device_id!r}: use 1-64 letters, digits, _ or -")
    for key in ("topic_base", "discovery_prefix"):
        value = getattr(settings, key)
        if value and (not TOPIC_BASE.fullmatch(value) or value.startswith("/") or value.endswith("/")):
            problems.append(f"{key} = {value!r}: use letters, digits, _, -, . and / (no + or #, no / at the ends)")
    if settings.ca_file and not settings.url.startswith("mqtts://"):
        problems.append(f"ca_file = {settings.ca_file!r}: a CA is for mqtts:// (the url is {settings.url!r})")
    for name in settings.commands:
        complaint = commands_allowed(name)
        if complaint:
            problems.append(f"commands: {name!r}: {complaint}")
    return problems
