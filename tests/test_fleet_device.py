"""The daemon on a real Mosquitto: a command over MQTT drives a turn against the emulator, the retained state
follows it, refusals come back as the control socket's error codes, the metrics reach the broker and the
Prometheus textfile; and a daemon killed with SIGKILL is `offline` on the broker (its last will)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from conftest import silence
from device import Device
from mosquitto import Broker, Watcher, needs_mosquitto, read_retained

from edgevoice.config import Config, ConversationSettings
from edgevoice.devkit.rig import Process, kiosk_config
from edgevoice.devkit.sound_card import VirtualSoundCard
from edgevoice.fleet.settings import MetricsSettings, MqttSettings

pytestmark = needs_mosquitto
ROOT = Path(__file__).resolve().parent.parent
BASE = "edgevoice/kiosk7"


def fleet_config(broker: Broker, textfile: Path) -> Config:
    mqtt = MqttSettings(
        url=broker.url,
        device_id="kiosk7",
        commands=("say", "mute", "unmute", "volume", "status"),
        metrics_interval_s=5.0,
        reconnect_max_s=1.0,
    )
    return Config(
        conversation=ConversationSettings(follow_up_s=1.0),
        mqtt=mqtt,
        metrics=MetricsSettings(textfile=str(textfile), interval_s=5.0),
    )


def prometheus_turns(textfile: Path) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(textfile.read_text()):
        if family.name == "edgevoice_turns":
            return float(family.samples[0].value)
    return 0.0


def test_a_command_over_mqtt_drives_a_turn(sound_card: VirtualSoundCard, tmp_path: Path) -> None:
    textfile = tmp_path / "node" / "edgevoice.prom"

    async def scenario() -> tuple[Device, list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        with Broker(tmp_path) as broker:
            async with (
                Watcher(broker.port, (f"{BASE}/#",)) as watch,
                Device(sound_card, mic=silence(30), config=fleet_config(broker, textfile)) as device,
            ):
                await watch.until(lambda: watch.last(f"{BASE}/availability") == "online", what="online")
                await watch.publish(f"{BASE}/cmd/say", json.dumps({"id": "turn-1", "text": "Tell me a joke."}))
                await watch.until(lambda: watch.json(f"{BASE}/reply"), what="the reply")
                await device.wait_state("idle", after="speaking")
                await watch.until(
                    lambda: (
                        [s["state"] for s in watch.json(f"{BASE}/state")][-1:] == ["idle"]
                        and "speaking" in [s["state"] for s in watch.json(f"{BASE}/state")]
                    ),
                    what="the state topic following the turn",
                )
                requests = [
                    ("volume", {"id": 2, "level": "loud"}),  # the control table refuses it, in its words
                    ("image", {"id": 3, "data": "AAAA"}),  # not allowed over MQTT at all
                    ("listen", {"id": 4}),  # a device command, but not in this device's allow-list
                    ("status", {"id": 5}),
                    ("volume", {"id": 6, "level": 0.5, "loud": True}),  # an unknown field
                ]
                for name, payload in requests:
                    await watch.publish(f"{BASE}/cmd/{name}", json.dumps(payload))
                await watch.publish(f"{BASE}/ha/muted", "ON")  # Home Assistant's mute switch
                await watch.until(lambda: len(watch.json(f"{BASE}/reply")) == 7, what="7 replies")
                await watch.until(lambda: watch.json(f"{BASE}/state")[-1]["muted"] is True, what="muted state")
                await watch.until(lambda: watch.json(f"{BASE}/metrics")[-1]["turns"] >= 1, 15, "metrics")
                await watch.until(lambda: textfile.exists() and "edgevoice_turns_total{" in textfile.read_text())
                await watch.until(lambda: prometheus_turns(textfile) >= 1, 15, "the textfile after the turn")
                metrics = watch.json(f"{BASE}/metrics")[-1]
                replies, states = watch.json(f"{BASE}/reply"), watch.json(f"{BASE}/state")
        return device, replies, states, metrics

    device, replies, states, metrics = asyncio.run(scenario())
    assert replies[0] == {"id": "turn-1", "cmd": "say", "ok": True, "result": {}}
    items = [e["item"] for e in device.sent("conversation.item.create")]
    assert items[0]["content"] == [{"type": "input_text", "text": "Tell me a joke."}]  # the turn reached the model
    codes = {r["id"]: (r["ok"], r.get("error", {}).get("code")) for r in replies[1:]}
    assert codes == {
        2: (False, "bad_request"), 3: (False, "forbidden"), 4: (False, "forbidden"), 5: (True, None),
        6: (False, "bad_request"), None: (True, None),  # the switch's mute
    }  # fmt: skip
    by_id = {r["id"]: r for r in replies}
    assert by_id[2]["error"]["message"] == "volume: level must be a number, not a string"  # the table's words
    assert "did you mean" in by_id[6]["error"]["message"] or "unknown field" in by_id[6]["error"]["message"]
    assert by_id[5]["result"]["state"] in ("idle", "connecting", "listening") and "usage" in by_id[5]["result"]
    assert by_id[5]["result"]["mqtt"] == {"connected": True, "reconnects": 0, "dropped": 0, "error": ""}
    assert {"idle", "thinking", "speaking"} <= {s["state"] for s in states}
    assert metrics["turns"] >= 1 and metrics["latency_p50_ms"] is not None and metrics["link"] in ("up", "down")

    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    turns = families["edgevoice_turns"].samples[0]
    assert turns.value >= 1 and turns.labels["device"] == "kiosk7"
    assert families["edgevoice_latency_p50_milliseconds"].samples[0].value > 0
    assert "edgevoice_cost_today_usd" in families and "edgevoice_state" in families


def test_sigkill_leaves_the_device_offline_on_the_broker(sound_card: VirtualSoundCard, tmp_path: Path) -> None:
    from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator

    async def scenario() -> tuple[str | None, dict[str, str]]:
        emulator = RealtimeEmulator(EmulatorSettings())
        await emulator.start()
        try:
            with Broker(tmp_path) as broker:
                more = f'[mqtt]\nurl = "{broker.url}"\ndevice_id = "killed"\n'
                config = kiosk_config(emulator.url, tmp_path / "ctl.sock", more=more)
                async with Watcher(broker.port, ("edgevoice/killed/#",)) as watch:
                    with Process.edgevoice(ROOT, tmp_path / "daemon", sound_card, config) as daemon:
                        await asyncio.to_thread(daemon.wait_ready, 60)
                        await watch.until(lambda: watch.last("edgevoice/killed/availability") == "online")
                        await watch.until(lambda: watch.last("edgevoice/killed/state") is not None)
                        online = watch.last("edgevoice/killed/availability")
                        daemon.process.send_signal(signal.SIGKILL)
                        await asyncio.to_thread(daemon.process.wait)
                        await watch.until(lambda: watch.last("edgevoice/killed/availability") == "offline")
                retained = await read_retained(broker.port, "edgevoice/killed/#")
        finally:
            await emulator.stop()
        return online, retained

    online, retained = asyncio.run(scenario())
    assert online == "online"
    assert retained["edgevoice/killed/availability"] == "offline"  # what a dashboard that looks now sees
    assert json.loads(retained["edgevoice/killed/state"])["state"] in ("idle", "connecting")


def test_a_device_whose_broker_is_down_talks_and_joins_when_it_appears(
    sound_card: VirtualSoundCard, tmp_path: Path
) -> None:
    from conftest import speak

    async def scenario() -> tuple[Device, list[str], list[dict[str, Any]]]:
        broker = Broker(tmp_path)  # down at the device's start
        config = fleet_config(broker, tmp_path / "m.prom")
        async with Device(sound_card, mic=speak("Hello there, what can you do?"), config=config) as device:
            await device.wait_capture(0.3)
            device.press()
            await device.wait_capture(3.0)
            device.release()
            await device.wait_state("idle", after="speaking")  # a whole turn while the broker is away
            assert device.daemon is not None and device.daemon.fleet is not None
            bridge = device.daemon.fleet.bridge
            assert bridge is not None and not bridge.connected and "refused" in bridge.last_error.lower()
            with broker:
                async with Watcher(broker.port, (f"{BASE}/#",)) as watch:
                    await watch.until(lambda: watch.last(f"{BASE}/availability") == "online", what="online")
                    await watch.until(lambda: watch.json(f"{BASE}/state") and watch.json(f"{BASE}/metrics"))
                    await watch.until(
                        lambda: "usage" in [e["event"] for e in watch.json(f"{BASE}/event")], what="the queued events"
                    )
                    events = watch.json(f"{BASE}/event")
                    state = watch.json(f"{BASE}/state")[-1]
                    metrics = watch.json(f"{BASE}/metrics")[-1]
        return device, [e["event"] for e in events], [state, metrics]

    device, events, (state, metrics) = asyncio.run(scenario())
    assert "speaking" in device.states
    assert state["state"] == "idle"
    assert "latency" in events and "usage" in events  # the turn's news waited in the queue for the broker
    assert "transcript" not in events  # transcripts stay on the device unless the operator allows them
    assert metrics["turns"] == 1
