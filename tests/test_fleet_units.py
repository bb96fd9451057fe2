"""The fleet's pure parts: [mqtt] and [metrics] in config.toml, broker addresses, the device id, the password
file, command payloads, Home Assistant discovery against its documented schema, metrics and the textfile; and
that a device without [mqtt] never loads the MQTT or Prometheus libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice.config import ConfigError, mqtt_command_problem, parse_config
from edgevoice.fleet.credentials import BrokerCredentialsError, load_password
from edgevoice.fleet.discovery import DeviceInfo, discovery_messages
from edgevoice.fleet.metrics import MetricsCollector, percentile, write_textfile
from edgevoice.fleet.settings import DEFAULT_COMMANDS, BrokerAddress, MqttSettings, broker_address, device_id
from edgevoice.fleet.topics import BadPayload, Topics, decode_command, fleet_event

ROOT = Path(__file__).resolve().parent.parent


def test_mqtt_section_is_read_and_off_by_default() -> None:
    assert not parse_config("").mqtt.enabled and parse_config("").metrics.textfile == ""
    config = parse_config(
        '[mqtt]\nurl = "mqtts://broker.example.org"\nusername = "k17"\ncommands = ["say", "status"]\n'
        'ca_file = "/etc/edgevoice/ca.crt"\n[metrics]\ntextfile = "/var/lib/node_exporter/textfile_collector/e.prom"\n'
    )
    assert config.mqtt.enabled and config.mqtt.commands == ("say", "status") and config.mqtt.qos == 1
    assert config.metrics.textfile.endswith("e.prom")


def test_the_default_mqtt_commands_are_allowed_ones() -> None:
    """Loading a configuration takes them as allowed without the control table: they must stay so."""
    assert DEFAULT_COMMANDS and all(mqtt_command_problem(name) is None for name in DEFAULT_COMMANDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('url = "http://broker"', "[mqtt] url = 'http://broker': must start with mqtt://, mqtts:// or unix:///"),
        ('url = "mqtt://kiosk:pw@broker"', "put no user or password in the URL"),
        ('url = "mqtt://broker:99999"', "the port must be a number"),
        ('url = "mqtt://b"\ncommands = ["reboot"]', "[mqtt] commands: 'reboot': not a command for MQTT"),
        ('url = "mqtt://b"\ncommands = ["tools.register"]', "not a command for MQTT"),
        ('url = "mqtt://b"\ncommands = ["image"]', "not a command for MQTT"),
        ('url = "mqtt://b"\ncommands = ["volum"]', "did you mean 'volume'?"),
        ('url = "mqtt://b"\ndevice_id = "a/b"', "device_id = 'a/b': use 1-64 letters"),
        ('url = "mqtt://b"\ntopic_base = "fleet/#"', "topic_base = 'fleet/#'"),
        ('url = "mqtt://b"\nca_file = "/ca.crt"', "a CA is for mqtts://"),
        ('url = "mqtt://b"\nqos = 2', "[mqtt] qos = 2: must be between 0 and 1"),
        ('url = "mqtt://b"\npassword = "x"', "unknown key [mqtt] password (did you mean 'password_file'?)"),
    ],
)
def test_bad_mqtt_settings_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"[mqtt]\n{text}\n", "config.toml")
    assert message in str(refused.value)


def test_bad_textfile_path_and_the_command_line_exit_code(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absolute path ending in \.prom"):
        parse_config('[metrics]\ntextfile = "metrics.txt"\n')
    config = tmp_path / "config.toml"
    config.write_text('[mqtt]\nurl = "broker:1883"\n')
    out = subprocess.run([sys.executable, "-m", "edgevoice", "run", "--config", str(config)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "[mqtt] url = 'broker:1883'" in out.stderr and "Traceback" not in out.stderr


def test_broker_addresses() -> None:
    assert broker_address("mqtt://b.example") == BrokerAddress("tcp", "b.example", 1883, False)
    assert broker_address("mqtts://b.example") == BrokerAddress("tcp", "b.example", 8883, True)
    assert broker_address("mqtt://10.0.0.2:1884") == BrokerAddress("tcp", "10.0.0.2", 1884, False)
    assert broker_address("unix:///run/mosquitto/m.sock") == BrokerAddress("unix", "/run/mosquitto/m.sock", 0, False)
    assert broker_address("/run/m.sock").transport == "unix"


def test_device_id_from_config_or_machine_id(tmp_path: Path) -> None:
    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    assert device_id(MqttSettings(), machine) == "0123456789ab"
    assert device_id(MqttSettings(device_id="lobby"), machine) == "lobby"
    with pytest.raises(ValueError, match="set \\[mqtt\\] device_id"):
        device_id(MqttSettings(), tmp_path / "missing")


def test_password_from_credential_or_private_file(tmp_path: Path) -> None:
    secret = "s3cret with spaces"
    path = tmp_path / "pw"
    path.write_text(secret + "\n")
    path.chmod(0o644)
    with pytest.raises(BrokerCredentialsError) as refused:
        load_password(str(path), {})
    assert "chmod 600" in str(refused.value) and secret not in str(refused.value)
    path.chmod(0o600)
    found = load_password(str(path), {})
    assert found is not None and found.value == secret and secret not in repr(found)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-systemd")
    found = load_password(str(path), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert found is not None and found.value == "from-systemd" and "systemd" in found.source
    assert load_password("", {}) is None


def test_command_payloads() -> None:
    assert decode_command(b"") == ({}, None)
    assert decode_command(b'{"id": 3, "level": 0.5}') == ({"level": 0.5}, 3)
    for bad, words in ((b"[1]", "JSON object"), (b"\xff", "not UTF-8 JSON"), (b'{"id": true}', "id must be"),
                       (b"x" * 20000, "the limit is")):  # fmt: skip
        with pytest.raises(BadPayload, match=words):
            decode_command(bad)
    topics = Topics("edgevoice/k")
    assert topics.command_name("edgevoice/k/cmd/say") == "say"
    assert topics.command_name("edgevoice/k/cmd/a/b") is None and topics.command_name("other/cmd/say") is None


def test_events_kept_on_the_device() -> None:
    assert fleet_event({"event": "level", "level": 0.3}, transcripts=True) is None  # 20 Hz: never on the broker
    assert fleet_event({"event": "transcript", "text": "my name is"}, transcripts=False) is None  # privacy
    assert fleet_event({"event": "transcript", "text": "hi", "final": True}, transcripts=True) is not None
    assert fleet_event({"event": "transcript", "text": "h", "final": False}, transcripts=True) is None  # partial
    assert fleet_event({"event": "error", "code": "x"}, transcripts=False) is not None


# Home Assistant's documented MQTT discovery options (home-assistant.io/integrations/<platform>.mqtt), for the
# ones the device uses: every key we send must be one of them, and each platform's required keys must be there.
COMMON = {"availability_topic", "payload_available", "payload_not_available", "device", "origin", "name",
          "unique_id", "icon", "entity_category", "qos", "enabled_by_default"}  # fmt: skip
DOCUMENTED = {
    "sensor": COMMON | {"state_topic", "value_template", "unit_of_measurement", "device_class", "state_class"},
    "switch": COMMON | {"command_topic", "state_topic", "value_template", "payload_on", "payload_off"},
    "number": COMMON
    | {
        "command_topic",
        "command_template",
        "state_topic",
        "value_template",
        "min",
        "max",
        "step",
        "mode",
        "unit_of_measurement",
    },
    "button": COMMON | {"command_topic", "command_template", "payload_press"},
    "text": COMMON | {"command_topic", "command_template", "state_topic", "min", "max", "mode", "pattern"},
}
REQUIRED = {"sensor": {"state_topic"}, "switch": {"command_topic"}, "number": {"command_topic"},
            "button": {"command_topic"}, "text": {"command_topic"}}  # fmt: skip
DEVICE_KEYS = {"identifiers", "connections", "name", "manufacturer", "model", "model_id", "sw_version", "hw_version",
               "serial_number", "suggested_area", "configuration_url", "via_device"}  # fmt: skip
SENSOR_DEVICE_CLASSES = {"monetary", "duration"}  # of the documented list, the ones used
UNITS = {"duration": {"d", "h", "min", "s", "ms", "µs"}}


def test_discovery_payloads_follow_home_assistants_schema() -> None:
    topics = Topics("edgevoice/k1")
    device = DeviceInfo("k1", "0.1.0", model="Raspberry Pi 4 Model B", profile="respeaker-2mic")
    every = ("listen", "say", "mute", "unmute", "volume", "status")
    messages = discovery_messages(device, topics, every)
    assert len(messages) == 7  # state, cost, latency, mute, volume, talk, say
    ids = set()
    for topic, config in messages.items():
        prefix, component, node, _object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "edgevoice_k1", "config")
        assert set(config) <= DOCUMENTED[component], set(config) - DOCUMENTED[component]
        assert REQUIRED[component] <= set(config)
        assert set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"] == ["edgevoice_k1"]
        assert config["device"]["sw_version"] == "0.1.0" and config["device"]["hw_version"] == "respeaker-2mic"
        assert config["availability_topic"] == topics.availability
        assert config.get("device_class", "monetary") in SENSOR_DEVICE_CLASSES
        if config.get("device_class") in UNITS:
            assert config["unit_of_measurement"] in UNITS[config["device_class"]]
        if config.get("device_class") == "monetary":
            assert config.get("state_class") != "measurement"  # HA refuses a monetary measurement
        ids.add(config["unique_id"])
        json.dumps(config, allow_nan=False)
    assert len(ids) == 7
    by_name = {c["name"]: c for c in messages.values()}
    assert by_name["Talk"]["command_topic"] == "edgevoice/k1/cmd/listen"
    assert by_name["Volume"]["command_template"] == '{"level": {{ value }}}'
    assert by_name["Mute"]["command_topic"] == topics.ha_muted
    # only what is allowed appears: the default allow-list has no talk button and no say text
    default = {c["name"] for c in discovery_messages(device, topics, ("mute", "unmute", "volume", "status")).values()}
    assert default == {"State", "Cost today", "Answer latency (p50)", "Mute", "Volume"}


def test_metrics_snapshot_and_textfile(tmp_path: Path) -> None:
    assert percentile([], 0.5) is None
    assert percentile([float(v) for v in range(1, 101)], 0.5) == 50 and percentile([1.0, 9.0], 0.95) == 9
    collector = MetricsCollector(started_at=0.0)
    for ms in (400, 500, 900):
        collector.on_event({"event": "latency", "what": "end of speech to first answer audio", "ms": ms})
    collector.on_event({"event": "session", "status": "open"})
    collector.on_event({"event": "session", "status": "open"})
    status = {
        "state": "idle",
        "session": {"up": True},
        "usage": {"model": "gpt-realtime-2", "today": {"usd": 0.42, "budget_usd": 2.0, "tokens": {"text_in": 10}}},
        "audio": {"capture_overflows": 1, "capture_dropped": 2, "playback_underflows": 3, "playback_gaps": 0},
    }
    snap = collector.snapshot(status, mqtt_reconnects=2, temperature=48.3, throttling=0, now=1000.0)
    assert (snap["turns"], snap["latency_p50_ms"], snap["latency_p95_ms"]) == (3, 500, 900)
    assert (snap["link_reconnects"], snap["overflows"], snap["underflows"]) == (1, 3, 3)
    assert (snap["cost_today_usd"], snap["budget_left_usd"], snap["tokens_today"]) == (0.42, 1.58, 10)
    path = tmp_path / "tf" / "edgevoice.prom"
    write_textfile(snap, str(path), "k1")
    from prometheus_client.parser import text_string_to_metric_families

    samples = {s.name: s for f in text_string_to_metric_families(path.read_text()) for s in f.samples}
    assert samples["edgevoice_turns_total"].value == 3
    assert samples["edgevoice_latency_p95_milliseconds"].value == 900
    assert samples["edgevoice_budget_left_usd"].labels == {"device": "k1", "model": "gpt-realtime-2"}
    assert samples["edgevoice_state"].labels["state"] == "idle"
    assert not any(name.endswith("_created") for name in samples)
    assert list(path.parent.iterdir()) == [path]  # written atomically: no temporary file left


def test_a_device_without_mqtt_never_loads_the_libraries() -> None:
    code = (
        "import sys, edgevoice.cli, edgevoice.daemon, edgevoice.config\n"
        "edgevoice.config.parse_config('')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiomqtt', 'paho', 'prometheus_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
