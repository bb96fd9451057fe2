"""The daemon as the fleet sees it: the MQTT bridge (`[mqtt]`) and the Prometheus textfile (`[metrics]`), wired.

The bridge hears the daemon's event bus, as the LEDs do; its commands go through the control package's one
command table (`parse_command`) and then to `DaemonControl.execute`, exactly as a control socket request does,
so the same validation and the same error codes apply. `edgevoice.fleet` (and aiomqtt, prometheus_client) is
loaded only when one of the two sections is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevoice import __version__
from edgevoice.control.api import ControlError
from edgevoice.control.args import DeviceCommand
from edgevoice.control.commands import Status, parse_command
from edgevoice.control.errors import FORBIDDEN, RequestError
from edgevoice.device_control import DaemonControl
from edgevoice.fleet.credentials import BrokerCredentialsError, load_password
from edgevoice.fleet.discovery import DeviceInfo
from edgevoice.fleet.metrics import MetricsCollector, cpu_temperature, throttled, write_textfile
from edgevoice.fleet.settings import device_id, topic_base
from edgevoice.fleet.topics import CommandRefused, Topics

if TYPE_CHECKING:
    from edgevoice.daemon import Daemon
    from edgevoice.fleet.bridge import FleetBridge

log = logging.getLogger(__name__)
BOARD_MODEL = Path("/proc/device-tree/model")


def board_model(path: Path = BOARD_MODEL) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip("\x00\n ") or "edgevoice"
    except OSError:
        return "edgevoice"


class DeviceFleet:
    """The bridge and the textfile writer of one daemon; `run()` until cancelled."""

    def __init__(self, daemon: Daemon, on_secret: Callable[[str], None] | None = None) -> None:
        self._daemon = daemon
        self._control = DaemonControl(daemon)
        self._on_secret = on_secret
        self.collector = MetricsCollector()
        self.bridge: FleetBridge | None = None
        self.device = ""

    def execute(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a command from the broker as the control socket would: parsed and checked by the one table."""
        try:
            command = parse_command(name, args)
        except RequestError as exc:
            raise CommandRefused(exc.code, exc.message) from None
        if isinstance(command, Status):
            return self._control.status()
        if not isinstance(command, DeviceCommand):  # subscriptions and tools belong to a socket connection
            raise CommandRefused(FORBIDDEN, f"{name}: not a command for MQTT")
        try:
            return self._control.execute(command)
        except ControlError as exc:
            raise CommandRefused(exc.code, exc.message) from None

    def state(self) -> dict[str, Any]:
        """The retained state: the same names as the LEDs and the socket."""
        status = self._control.status()
        state = {
            "state": status["state"],
            "muted": status["muted"],
            "volume": status["volume"],
            "link": "up" if status["session"]["up"] else "down",
        }
        if status.get("reason"):
            state["reason"] = status["reason"]
        return state

    def snapshot(self) -> dict[str, Any]:
        bridge = self.bridge
        return self.collector.snapshot(
            self._control.status(),
            mqtt_reconnects=bridge.reconnects if bridge is not None else 0,
            temperature=cpu_temperature(),
            throttling=throttled(),
        )

    async def run(self) -> None:
        config = self._daemon.config
        try:
            self.device = device_id(config.mqtt)
        except ValueError:
            self.device = "local"  # only the textfile's label; without an id the bridge is not started (logged)
        detach = [self._daemon.subscribe(self.collector.on_event)]
        tasks: list[asyncio.Task[None]] = []
        try:
            bridge = self._make_bridge() if config.mqtt.enabled else None
            if bridge is not None:
                self.bridge = bridge
                detach.append(self._daemon.subscribe(bridge.on_event))
                tasks.append(asyncio.create_task(bridge.run(), name="mqtt"))
                tasks.append(asyncio.create_task(self._every(config.mqtt.metrics_interval_s, self._publish)))
            if config.metrics.textfile:
                tasks.append(asyncio.create_task(self._every(config.metrics.interval_s, self._write), name="metrics"))
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for stop in detach:
                stop()

    def _make_bridge(self) -> FleetBridge | None:
        settings = self._daemon.config.mqtt
        try:
            self.device = device_id(settings)
            password = load_password(settings.password_file)
        except (ValueError, BrokerCredentialsError) as exc:
            log.error("mqtt: %s; the device runs without its broker until it is fixed", exc)
            return None
        if password is not None and self._on_secret is not None:
            self._on_secret(password.value)  # the journal never shows it
        from edgevoice.fleet.bridge import FleetBridge  # aiomqtt: only for a device with [mqtt]

        info = DeviceInfo(self.device, __version__, board_model(), self._daemon.config.hardware.profile)
        topics = Topics(topic_base(settings, self.device), settings.discovery_prefix)
        return FleetBridge(
            settings,
            topics,
            info,
            execute=self.execute,
            state=self.state,
            metrics=self.snapshot,
            password=password.value if password is not None else None,
        )

    async def _every(self, interval_s: float, action: Callable[[], Any]) -> None:
        while True:
            result = action()
            if asyncio.iscoroutine(result):
                await result
            await asyncio.sleep(interval_s)

    def _publish(self) -> None:
        if self.bridge is not None:
            self.bridge.publish_metrics()

    async def _write(self) -> None:
        textfile = self._daemon.config.metrics.textfile
        try:
            await asyncio.to_thread(write_textfile, self.snapshot(), textfile, self.device)
        except OSError as exc:
            log.warning("metrics: cannot write %s: %s", textfile, exc)
