"""Settings of the control socket (the `[control]` section of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_SOCKET = "/run/edgevoice/control.sock"


@dataclass(frozen=True)
class ControlSettings:
    """Who may reach the socket is decided by its file mode and group, then by `allowed_uids` (SO_PEERCRED)."""

    enabled: bool = True
    socket: str = DEFAULT_SOCKET
    group: str = "edgevoice"  # "" = the daemon's own group
    mode: int = field(default=0o660, metadata={"min": 0o600, "max": 0o666, "doc": "octal, e.g. 0o660"})
    allowed_uids: tuple[int, ...] = ()  # empty = anyone who can open the socket; root and the daemon always may
    max_clients: int = field(default=16, metadata={"min": 1, "max": 256})
    max_clients_per_uid: int = field(
        default=8,
        metadata={"min": 1, "max": 256, "doc": "connections one user may hold (root and the daemon's own user: any)"},
    )
    first_request_s: float = field(
        default=10.0, metadata={"min": 0.5, "max": 3600.0, "doc": "a connection that sends nothing this long is closed"}
    )
    event_queue: int = field(default=256, metadata={"min": 8, "max": 65536, "doc": "events held per slow client"})
    requests_per_s: float = field(default=50.0, metadata={"min": 1.0, "max": 10000.0})
    request_burst: int = field(default=100, metadata={"min": 1, "max": 10000})
    flood_disconnect: int = field(
        default=500, metadata={"min": 10, "max": 1000000, "doc": "refused requests in 10 s that close a connection"}
    )
