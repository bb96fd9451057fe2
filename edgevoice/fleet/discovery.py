"""Home Assistant MQTT discovery: the config payloads that make a device appear in Home Assistant, retained under
`<prefix>/<component>/<device id>/<object>/config` (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery).

Entities: the state (sensor), mute (switch), volume (number), talk (button), say (text), cost today and latency
(sensors); one for a command only if that command is allowed over MQTT here. Each has the device block and the
availability topic, so Home Assistant greys them out when the device is offline (its last will). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from edgevoice.fleet.topics import OFFLINE, ONLINE, Topics

SUPPORT_URL = "https://github.com/edgevoice/edgevoice"


@dataclass(frozen=True)
class DeviceInfo:
    """Who the device is, for discovery and the fleet table."""

    device_id: str
    sw_version: str
    model: str = "edgevoice"  # the board or product, e.g. "Raspberry Pi 4 Model B"
    profile: str = ""  # the hardware profile in use ("" = none)
    name: str = ""  # what Home Assistant shows ("" = edgevoice <device id>)


def device_block(device: DeviceInfo) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [f"edgevoice_{device.device_id}"],
        "name": device.name or f"edgevoice {device.device_id}",
        "manufacturer": "edgevoice",
        "model": device.model,
        "sw_version": device.sw_version,
    }
    if device.profile:
        block["hw_version"] = device.profile
    return block


def discovery_messages(
    device: DeviceInfo, topics: Topics, allowed: Collection[str], prefix: str = "homeassistant"
) -> dict[str, dict[str, Any]]:
    """Every discovery config topic of the device and its payload."""
    common = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device_block(device),
        "origin": {"name": "edgevoice", "sw_version": device.sw_version, "support_url": SUPPORT_URL},
    }
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            "state",
            {
                "name": "State",
                "state_topic": topics.state,
                "value_template": "{{ value_json.state }}",
                "icon": "mdi:account-voice",
            },
        ),
        (
            "sensor",
            "cost_today",
            {
                "name": "Cost today",
                "state_topic": topics.metrics,
                "value_template": "{{ value_json.cost_today_usd }}",
                "unit_of_measurement": "USD",
                "device_class": "monetary",
                "state_class": "total",
            },
        ),
        (
            "sensor",
            "latency",
            {
                "name": "Answer latency (p50)",
                "state_topic": topics.metrics,
                "value_template": "{{ value_json.latency_p50_ms }}",  # null (no turn yet) renders None: unknown
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
                "entity_category": "diagnostic",
            },
        ),
    ]
    if "mute" in allowed and "unmute" in allowed:
        entities.append(
            (
                "switch",
                "mute",
                {
                    "name": "Mute",
                    "command_topic": topics.ha_muted,
                    "state_topic": topics.state,
                    "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": "mdi:microphone-off",
                },
            )
        )
    if "volume" in allowed:
        entities.append(
            (
                "number",
                "volume",
                {
                    "name": "Volume",
                    "command_topic": topics.command("volume"),
                    "command_template": '{"level": {{ value }}}',
                    "state_topic": topics.state,
                    "value_template": "{{ value_json.volume }}",
                    "min": 0,
                    "max": 1,
                    "step": 0.05,
                    "mode": "slider",
                },
            )
        )
    if "listen" in allowed:
        entities.append(
            ("button", "talk", {"name": "Talk", "command_topic": topics.command("listen"), "payload_press": "{}"})
        )
    if "say" in allowed:
        entities.append(
            (
                "text",
                "say",
                {
                    "name": "Say",
                    "command_topic": topics.command("say"),
                    "command_template": '{"text": {{ value | tojson }}}',
                    "min": 1,
                    "max": 255,
                },
            )
        )
    messages = {}
    for component, object_id, config in entities:
        unique_id = f"edgevoice_{device.device_id}_{object_id}"
        payload = {**config, "unique_id": unique_id, **common}
        messages[f"{prefix}/{component}/edgevoice_{device.device_id}/{object_id}/config"] = payload
    return messages
