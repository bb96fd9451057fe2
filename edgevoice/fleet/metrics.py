"""The device's figures for a fleet: one snapshot, sent as `<base>/metrics` and written as a Prometheus textfile.

`MetricsCollector` hears the device's events (turns, latencies, sessions) and, with the device's status (what
`status` on the control socket reports), makes a flat `snapshot()`. `write_textfile` renders the same snapshot
for node_exporter's textfile collector with a private registry (atomic: `write_to_textfile` renames into place).
`prometheus_client` is imported only there: a device without `[metrics] textfile` never loads it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LATENCY_WINDOW = 200  # turns the p50/p95 are taken over
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")  # a Pi's firmware flags (vcgencmd's)


def percentile(values: list[float], fraction: float) -> float | None:
    """The `fraction` quantile (nearest rank) of `values`, None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_temperature(path: Path = THERMAL) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def throttled(path: Path = THROTTLED) -> int | None:
    """The firmware's throttling flags (0 = never throttled), None where the board does not say."""
    try:
        return int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return None


class MetricsCollector:
    """Counts what the events tell (turns, the latency of each, Realtime sessions opened) and makes snapshots."""

    def __init__(self, started_at: float | None = None) -> None:
        self.started_at = time.monotonic() if started_at is None else started_at
        self.turns = 0
        self.sessions_opened = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def on_event(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        if name == "latency" and isinstance(event.get("ms"), int | float):
            self.turns += 1
            self._latencies.append(float(event["ms"]))
        elif name == "session" and event.get("status") == "open":
            self.sessions_opened += 1

    def snapshot(
        self,
        status: Mapping[str, Any],
        *,
        mqtt_reconnects: int = 0,
        temperature: float | None = None,
        throttling: int | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The figures, flat, JSON-ready; `status` is the device's (state, usage, audio)."""
        latencies = list(self._latencies)
        usage = status.get("usage", {})
        today = usage.get("today", {})
        cost = float(today.get("usd", 0.0))
        budget = float(today.get("budget_usd", 0.0) or 0.0)
        audio = status.get("audio", {})
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        return {
            "ts": round(time.time() if now is None else now, 1),
            "uptime_s": round(time.monotonic() - self.started_at),
            "state": status.get("state", ""),
            "link": "up" if status.get("session", {}).get("up") else "down",
            "turns": self.turns,
            "link_reconnects": max(0, self.sessions_opened - 1),
            "mqtt_reconnects": mqtt_reconnects,
            "latency_p50_ms": None if p50 is None else round(p50),
            "latency_p95_ms": None if p95 is None else round(p95),
            "overflows": int(audio.get("capture_overflows", 0)) + int(audio.get("capture_dropped", 0)),
            "underflows": int(audio.get("playback_underflows", 0)) + int(audio.get("playback_gaps", 0)),
            "cpu_temp_c": temperature,
            "throttled": throttling,
            "model": usage.get("model", ""),
            "tokens_today": sum(int(v) for v in today.get("tokens", {}).values()),
            "cost_today_usd": round(cost, 4),
            "budget_left_usd": round(max(0.0, budget - cost), 4) if budget > 0 else None,
        }


# name in the snapshot -> (Prometheus metric, help, kind)
_PROMETHEUS = {
    "uptime_s": ("edgevoice_uptime_seconds", "Seconds since the daemon started", "gauge"),
    "turns": ("edgevoice_turns", "Answered turns since start", "counter"),
    "link_reconnects": ("edgevoice_link_reconnects", "Realtime sessions reopened since start", "counter"),
    "mqtt_reconnects": ("edgevoice_mqtt_reconnects", "Broker connections after the first", "counter"),
    "latency_p50_ms": ("edgevoice_latency_p50_milliseconds", "End of speech to first answer audio, median", "gauge"),
    "latency_p95_ms": ("edgevoice_latency_p95_milliseconds", "End of speech to first answer audio, p95", "gauge"),
    "overflows": ("edgevoice_audio_overflows", "Microphone audio lost (overflows and drops)", "counter"),
    "underflows": ("edgevoice_audio_underflows", "Speaker underflows and gaps", "counter"),
    "cpu_temp_c": ("edgevoice_cpu_temperature_celsius", "CPU temperature", "gauge"),
    "throttled": ("edgevoice_throttled_flags", "Firmware throttling flags (0: never throttled)", "gauge"),
    "tokens_today": ("edgevoice_tokens_today", "Tokens used today", "gauge"),
    "cost_today_usd": ("edgevoice_cost_today_usd", "Cost today in US dollars", "gauge"),
    "budget_left_usd": ("edgevoice_budget_left_usd", "Daily budget left in US dollars", "gauge"),
}


def write_textfile(snapshot: Mapping[str, Any], path: str, device: str) -> None:
    """Write `snapshot` for node_exporter's textfile collector (blocking file I/O: call it off the event loop)."""
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    labels = ["device", "model"]
    values = [device, str(snapshot.get("model", ""))]
    families: list[CounterMetricFamily | GaugeMetricFamily] = []
    for key, (name, help_text, kind) in _PROMETHEUS.items():
        value = snapshot.get(key)
        if value is None:
            continue  # unknown here (no turn yet, no thermal sensor): absent, not 0
        family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text, labels=labels)
        family.add_metric(values, float(value))
        families.append(family)
    state = GaugeMetricFamily("edgevoice_state", "The current state (1)", labels=["device", "state"])
    state.add_metric([device, str(snapshot.get("state", ""))], 1.0)
    families.append(state)

    class Snapshot(Collector):
        """The one snapshot, as metric families (a private registry: nothing global, no _created samples)."""

        def collect(self) -> Any:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(path, registry)
