"""`edgevoice fleet`: every device on a broker, from its retained topics, as a table (or `--json`).

    edgevoice fleet --broker mqtts://broker.example.org --username ops --password-file ~/.mqtt-pass
    edgevoice fleet --json | jq '.[] | select(.availability == "offline") | .id'

Devices are found under `--prefix` (default `edgevoice`: `edgevoice/<id>/availability|state|metrics`). The
retained messages arrive right after subscribing; the listing ends once the broker has been quiet for a moment
(at most `--wait` seconds). Without --broker the broker and credentials of `[mqtt]` in config.toml are used.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from dataclasses import asdict, dataclass

from edgevoice.fleet.settings import broker_address

QUIET_S = 0.3  # no new retained message for this long: the broker has sent them all


@dataclass
class DeviceRow:
    """One device as the broker remembers it."""

    id: str
    availability: str = ""
    state: str = ""
    link: str = ""
    muted: bool | None = None
    latency_p50_ms: float | None = None
    cost_today_usd: float | None = None
    last_seen: float | None = None  # unix time of its latest state or metrics


def collect(messages: list[tuple[str, bytes]], prefix: str) -> list[DeviceRow]:
    """The devices that `messages` (topic, payload) describe, by id."""
    rows: dict[str, DeviceRow] = {}
    for topic, payload in messages:
        parts = topic[len(prefix) + 1 :].split("/") if topic.startswith(prefix + "/") else []
        if len(parts) != 2:
            continue
        row = rows.setdefault(parts[0], DeviceRow(parts[0]))
        if parts[1] == "availability":
            row.availability = payload.decode("utf-8", "replace")[:16]
            continue
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("ts"), int | float):
            row.last_seen = max(row.last_seen or 0.0, float(data["ts"]))
        if parts[1] == "state":
            row.state, row.link, row.muted = str(data.get("state", "")), str(data.get("link", "")), data.get("muted")
        elif parts[1] == "metrics":
            row.latency_p50_ms, row.cost_today_usd = data.get("latency_p50_ms"), data.get("cost_today_usd")
    return sorted(rows.values(), key=lambda r: r.id)


def table(rows: list[DeviceRow], now: float) -> str:
    header = ("ID", "STATE", "LINK", "LATENCY", "COST TODAY", "LAST SEEN")
    lines = [header]
    for r in rows:
        state = r.state if r.availability != "offline" else f"offline ({r.state or '?'})"
        latency = f"{r.latency_p50_ms:.0f} ms" if r.latency_p50_ms is not None else "-"
        cost = f"${r.cost_today_usd:.2f}" if r.cost_today_usd is not None else "-"
        seen = _ago(now - r.last_seen) if r.last_seen else "-"
        lines.append((r.id, state, r.link or "-", latency, cost, seen))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)
    online = sum(r.availability == "online" for r in rows)
    return f"{text}\n\n{len(rows)} devices, {online} online"


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, seconds):.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


async def read_fleet(
    url: str,
    prefix: str = "edgevoice",
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str = "",
    wait_s: float = 5.0,
) -> list[DeviceRow]:
    """Subscribe to every device's retained topics and return the rows once the broker is quiet."""
    import aiomqtt

    address = broker_address(url)
    tls = aiomqtt.TLSParameters(ca_certs=ca_file or None, cert_reqs=ssl.CERT_REQUIRED) if address.tls else None
    messages: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(
        address.host, address.port or 1883, transport=address.transport, username=username, password=password,
        tls_params=tls, identifier=f"edgevoice-fleet-{time.monotonic_ns()}", timeout=wait_s,
    ) as client:  # fmt: skip
        for kind in ("availability", "state", "metrics"):
            await client.subscribe(f"{prefix}/+/{kind}", qos=0)
        deadline = time.monotonic() + wait_s
        iterator = client.messages
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(iterator.__anext__(), min(left, QUIET_S))
            except TimeoutError:
                break
            if message.retain:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                messages.append((str(message.topic), payload))
    return collect(messages, prefix)


def run_fleet(
    url: str, prefix: str, *, username: str | None, password: str | None, ca_file: str, wait_s: float, as_json: bool
) -> int:
    import aiomqtt

    try:
        rows = asyncio.run(
            read_fleet(url, prefix, username=username, password=password, ca_file=ca_file, wait_s=wait_s)
        )
    except (aiomqtt.MqttError, OSError, ValueError) as exc:
        print(f"edgevoice fleet: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(table(rows, time.time()) if rows else f"no device under {prefix}/ on {url}")
    return 0
