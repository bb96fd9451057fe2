"""The fleet bridge on a real Mosquitto (tests/mosquitto.py): availability, state, discovery, commands and
their replies, authentication, TLS, a broker that is down or restarts. The daemon end to end is in
test_fleet_device.py; here the bridge runs alone, with a small command table standing in for the device."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from pathlib import Path
from typing import Any

from conftest import LogCapture
from mosquitto import Broker, Watcher, needs_mosquitto, read_retained

from edgevoice.fleet.bridge import CommandRefused, FleetBridge, backoff_delay
from edgevoice.fleet.discovery import DeviceInfo
from edgevoice.fleet.settings import MqttSettings
from edgevoice.fleet.topics import Topics

pytestmark = needs_mosquitto
SECRET = "broker-" + "pass-5up3r"


class Volume:
    """A device with a volume only: what `execute` runs, refusing like the real table does."""

    def __init__(self) -> None:
        self.level = 1.0
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def execute(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.ran.append((name, args))
        if name == "volume":
            level = args.get("level")
            if level is not None and not (isinstance(level, int | float) and 0 <= level <= 1):
                raise CommandRefused("bad_request", f"volume: level = {level!r}: must be between 0 and 1")
            if level is not None:
                self.level = float(level)
            return {"volume": self.level}
        if name == "status":
            return {"state": "idle"}
        raise CommandRefused("unavailable", f"{name}: not here")

    def state(self) -> dict[str, Any]:
        return {"state": "idle", "muted": False, "volume": self.level, "link": "up"}


@contextlib.asynccontextmanager
async def running(bridge: FleetBridge):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_bridge(url: str, device: Volume, **settings: Any) -> FleetBridge:
    password = settings.pop("password", None)
    mqtt = MqttSettings(url=url, device_id="kiosk1", reconnect_max_s=1.0, **settings)
    return FleetBridge(
        mqtt,
        Topics("edgevoice/kiosk1"),
        DeviceInfo("kiosk1", "0.1.0", model="test board", profile="respeaker-2mic"),
        execute=device.execute,
        state=device.state,
        password=password,
        rng=random.Random(1),
    )


async def wait(condition: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_online_state_discovery_and_commands(tmp_path: Path) -> None:
    asyncio.run(_online_state_discovery_and_commands(tmp_path))


async def _online_state_discovery_and_commands(tmp_path: Path) -> None:
    device = Volume()
    with Broker(tmp_path) as broker:
        async with Watcher(broker.port) as watch, running(make_bridge(broker.url, device)) as bridge:
            await watch.until(lambda: watch.last("edgevoice/kiosk1/availability") == "online", what="online")
            await watch.until(lambda: watch.json("edgevoice/kiosk1/state"), what="state")
            assert watch.json("edgevoice/kiosk1/state")[-1]["volume"] == 1.0

            await watch.publish("edgevoice/kiosk1/cmd/volume", json.dumps({"id": 7, "level": 0.25}))
            await watch.until(lambda: watch.json("edgevoice/kiosk1/reply"), what="a reply")
            assert watch.json("edgevoice/kiosk1/reply")[-1] == {
                "id": 7, "cmd": "volume", "ok": True, "result": {"volume": 0.25}
            }  # fmt: skip
            assert device.ran == [("volume", {"level": 0.25})]  # the id is the request's, not an argument

            bridge.on_event({"event": "volume", "level": 0.25})  # the retained state follows the device
            await watch.until(lambda: watch.json("edgevoice/kiosk1/state")[-1]["volume"] == 0.25, what="state")

            for topic, payload in (
                ("edgevoice/kiosk1/cmd/say", '{"id": "a", "text": "hello"}'),  # not in the allow-list
                ("edgevoice/kiosk1/cmd/volume", '{"id": "b", "level": 7}'),  # refused by the table
                ("edgevoice/kiosk1/cmd/volume", "not json"),
                ("edgevoice/kiosk1/cmd/volume", "[1, 2]"),
                ("edgevoice/kiosk1/ha/muted", "MAYBE"),
            ):
                await watch.publish(topic, payload)
            await watch.until(lambda: len(watch.json("edgevoice/kiosk1/reply")) == 6, what="5 error replies")
            errors = [(r["id"], r["error"]["code"]) for r in watch.json("edgevoice/kiosk1/reply")[1:]]
            assert errors == [("a", "forbidden"), ("b", "bad_request"), (None, "bad_request"),
                              (None, "bad_request"), (None, "bad_request")]  # fmt: skip
            assert [name for name, _ in device.ran] == ["volume", "volume"]  # `say` never reached the device
            assert bridge.connected and bridge.reconnects == 0

        retained = await read_retained(broker.port, "homeassistant/#")
        assert "homeassistant/number/edgevoice_kiosk1/volume/config" in retained
        assert "homeassistant/text/edgevoice_kiosk1/say/config" not in retained  # `say` is not allowed here
        # the bridge stopped cleanly: it said offline itself (a clean disconnect fires no last will)
        assert (await read_retained(broker.port, "edgevoice/kiosk1/availability")) == {
            "edgevoice/kiosk1/availability": "offline"
        }


def test_home_assistant_restart_gets_the_discovery_again(tmp_path: Path) -> None:
    asyncio.run(_home_assistant_restart_gets_the_discovery_again(tmp_path))


async def _home_assistant_restart_gets_the_discovery_again(tmp_path: Path) -> None:
    with Broker(tmp_path) as broker:
        async with (
            Watcher(broker.port, ("homeassistant/+/+/+/config",)) as watch,
            running(make_bridge(broker.url, Volume())),
        ):
            await watch.until(lambda: len(watch.messages) >= 5, what="the discovery")
            first = len(watch.messages)
            await watch.publish("homeassistant/status", "online")
            await watch.until(lambda: len(watch.messages) >= 2 * first, what="the discovery again")
            assert {t for t, _, _ in watch.messages[first:]} == {t for t, _, _ in watch.messages[:first]}


def test_wrong_password_is_explained_and_never_logged(tmp_path: Path) -> None:
    asyncio.run(_wrong_password_is_explained_and_never_logged(tmp_path))


async def _wrong_password_is_explained_and_never_logged(tmp_path: Path) -> None:
    logs = LogCapture()
    logging.getLogger().addHandler(logs)
    try:
        with Broker(tmp_path, users={"kiosk": SECRET, "ops": "ops-pass"}) as broker:
            async with Watcher(broker.port, username="ops", password="ops-pass") as watch:
                bridge = make_bridge(broker.url, Volume(), username="kiosk", password="wrong-" + SECRET)
                async with running(bridge):
                    await wait(lambda: bridge.last_error != "", "a connection error")
                    await asyncio.sleep(1.5)  # a retry or two
                assert "user name or password" in bridge.last_error
                assert not bridge.connected and bridge.connections == 0
                assert watch.messages == []  # it never got in
                good = make_bridge(broker.url, Volume(), username="kiosk", password=SECRET)
                async with running(good):
                    await watch.until(lambda: watch.last("edgevoice/kiosk1/availability") == "online", what="online")
    finally:
        logging.getLogger().removeHandler(logs)
    text = "\n".join(logs.lines)
    assert "cannot connect" in text and "user name or password" in text
    assert SECRET not in text
    assert text.count("cannot connect") == 1  # the same failure again is not logged again


def test_tls_needs_the_right_ca(tmp_path: Path) -> None:
    asyncio.run(_tls_needs_the_right_ca(tmp_path))


async def _tls_needs_the_right_ca(tmp_path: Path) -> None:
    from mosquitto import make_ca

    other_ca, _, _ = make_ca(tmp_path / "other", "other")
    with Broker(tmp_path, tls=True) as broker:
        assert broker.ca_file is not None
        wrong = make_bridge(broker.tls_url, Volume(), ca_file=str(other_ca))
        async with running(wrong):
            await wait(lambda: wrong.last_error != "", "a TLS error")
        assert "certificate is not trusted" in wrong.last_error and not wrong.connected
        right = make_bridge(broker.tls_url, Volume(), ca_file=str(broker.ca_file))
        async with Watcher(broker.port) as watch, running(right):
            await watch.until(lambda: watch.last("edgevoice/kiosk1/availability") == "online", what="online")
            assert right.connected


def test_broker_down_at_start_then_restarted(tmp_path: Path) -> None:
    asyncio.run(_broker_down_at_start_then_restarted(tmp_path))


async def _broker_down_at_start_then_restarted(tmp_path: Path) -> None:
    broker = Broker(tmp_path)  # not started yet
    bridge = make_bridge(broker.url, Volume())
    async with running(bridge):
        await wait(lambda: "refused" in bridge.last_error.lower(), "the refused connection")
        for i in range(200):  # queued while away: bounded, the oldest give way
            bridge.on_event({"event": "notice", "message": f"n{i}"})
        assert bridge.dropped == 200 - bridge.settings.queue
        with broker:
            async with Watcher(broker.port) as watch:
                await watch.until(lambda: watch.last("edgevoice/kiosk1/availability") == "online", what="online")
                await watch.until(lambda: len(watch.json("edgevoice/kiosk1/event")) == bridge.settings.queue, what="q")
                assert watch.json("edgevoice/kiosk1/event")[-1]["message"] == "n199"
        assert not bridge.connected or bridge.connections == 1
        await wait(lambda: not bridge.connected, "the lost connection")
        with broker:  # the same port again
            async with Watcher(broker.port) as watch:
                await watch.until(lambda: watch.last("edgevoice/kiosk1/availability") == "online", what="online")
            assert bridge.reconnects == 1


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(3)
    first = [backoff_delay(0, rng, 60.0) for _ in range(500)]
    assert min(first) >= 0.1 and max(first) <= 1.0 and max(first) - min(first) > 0.5  # spread, not one herd
    assert all(backoff_delay(20, rng, 60.0) <= 60.0 for _ in range(100))
    assert min(backoff_delay(5, rng, 60.0) for _ in range(100)) >= 3.2


def fleet_bridge(url: str, name: str, **settings: Any) -> FleetBridge:
    device = Volume()
    bridge = FleetBridge(
        MqttSettings(url=url, device_id=name, reconnect_max_s=1.0, **settings),
        Topics(f"edgevoice/{name}"),
        DeviceInfo(name, "0.1.0"),
        execute=device.execute,
        state=device.state,
    )
    bridge.set_metrics({"ts": 1.0, "latency_p50_ms": 612, "cost_today_usd": 0.37})
    return bridge


def test_the_fleet_command_lists_every_device(tmp_path: Path) -> None:
    import subprocess
    import sys

    async def scenario(broker: Broker) -> None:
        up, gone = fleet_bridge(broker.url, "lobby"), fleet_bridge(broker.url, "bar")
        async with Watcher(broker.port) as watch, running(up), running(gone):
            await watch.until(
                lambda: len(watch.json("edgevoice/bar/metrics")) and len(watch.json("edgevoice/lobby/metrics"))
            )
        async with running(up):  # `bar` has stopped: its retained availability says offline
            await asyncio.sleep(0.5)
            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "edgevoice", "fleet", "--broker", broker.url, "--json"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            rows = {r["id"]: r for r in json.loads(out.stdout)}
            assert set(rows) == {"lobby", "bar"}
            assert (rows["lobby"]["availability"], rows["lobby"]["state"], rows["lobby"]["link"]) == (
                "online",
                "idle",
                "up",
            )
            assert rows["bar"]["availability"] == "offline"
            assert rows["lobby"]["latency_p50_ms"] == 612 and rows["lobby"]["cost_today_usd"] == 0.37
            text = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "edgevoice", "fleet", "--broker", broker.url],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            lines = text.stdout.splitlines()
            assert lines[0].split() == ["ID", "STATE", "LINK", "LATENCY", "COST", "TODAY", "LAST", "SEEN"]
            assert lines[1].startswith("bar ") and "offline (idle)" in lines[1]
            assert lines[2].split()[:5] == ["lobby", "idle", "up", "612", "ms"] and "$0.37" in lines[2]
            assert lines[-1] == "2 devices, 1 online"

    with Broker(tmp_path) as broker:
        asyncio.run(scenario(broker))
    out = subprocess.run([sys.executable, "-m", "edgevoice", "fleet", "--broker", broker.url, "--wait", "1"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and "cannot read" in out.stderr and "Traceback" not in out.stderr  # broker gone


def test_a_broker_on_a_unix_socket(tmp_path: Path) -> None:
    async def scenario(broker: Broker) -> None:
        assert broker.socket_path is not None
        bridge = make_bridge(f"unix://{broker.socket_path}", Volume())
        async with Watcher(broker.port) as watch, running(bridge):
            await watch.until(lambda: watch.last("edgevoice/kiosk1/availability") == "online", what="online")
            await watch.publish("edgevoice/kiosk1/cmd/status", '{"id": 1}')
            await watch.until(lambda: watch.json("edgevoice/kiosk1/reply"), what="the reply")
        assert watch.json("edgevoice/kiosk1/reply")[0]["result"] == {"state": "idle"}

    with Broker(tmp_path, unix=True) as broker:
        asyncio.run(scenario(broker))


def test_doctor_connects_with_the_devices_credentials(tmp_path: Path) -> None:
    from edgevoice.doctor import Context, diagnose

    password = tmp_path / "pw"
    password.write_text("wrong\n")
    password.chmod(0o600)
    with Broker(tmp_path, users={"kiosk": SECRET}) as broker:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[mqtt]\nurl = "{broker.url}"\ndevice_id = "d1"\nusername = "kiosk"\npassword_file = "{password}"\n'
        )

        def mqtt_finding() -> Any:
            findings = asyncio.run(diagnose(Context(str(config)), only={"config", "mqtt"}))
            return next(f for f in findings if f.check == "mqtt")

        refused = mqtt_finding()
        password.write_text(SECRET + "\n")
        passed = mqtt_finding()
    assert refused.status == "fail" and "user name or password" in refused.detail and SECRET not in refused.detail
    assert passed.status == "pass" and "connected" in passed.detail and "as kiosk" in passed.detail
    config.write_text("")
    assert asyncio.run(diagnose(Context(str(config)), only={"config", "mqtt"}))[-1].status == "skip"


def test_a_failing_state_source_costs_a_reconnect_not_the_bridge(tmp_path: Path) -> None:
    device = Volume()
    calls = []

    def flaky_state() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the device's status")
        return device.state()

    async def scenario(broker: Broker) -> FleetBridge:
        bridge = FleetBridge(
            MqttSettings(url=broker.url, device_id="kiosk1", reconnect_max_s=1.0),
            Topics("edgevoice/kiosk1"),
            DeviceInfo("kiosk1", "0.1.0"),
            execute=device.execute,
            state=flaky_state,
        )
        async with Watcher(broker.port) as watch, running(bridge):
            await watch.until(lambda: watch.json("edgevoice/kiosk1/state"), what="the state, after the failure")
        return bridge

    with Broker(tmp_path) as broker:
        bridge = asyncio.run(scenario(broker))
    assert bridge.connections == 2 and len(calls) >= 2  # the failure ended one connection; the next one worked
