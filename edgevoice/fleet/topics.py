"""The device's topics under its base (`edgevoice/<device id>` by default) and what each carries.

    <base>/availability  retained  "online" after each connect, "offline" (the last will, or a clean stop)
    <base>/state         retained  {"state", "muted", "volume", "link", "reason"?, "ts"}
    <base>/metrics       retained  the metrics snapshot (metrics.py), every [mqtt] metrics_interval_s
    <base>/event         -         device events worth a fleet's attention (transcripts only if allowed)
    <base>/cmd/<name>    in        a command: a JSON object of its arguments (and an optional "id")
    <base>/ha/muted      in        Home Assistant's mute switch: "ON" or "OFF" (mute / unmute)
    <base>/reply         -         {"id", "cmd", "ok": true, "result"} or {"id", "cmd", "ok": false, "error"}

Payloads are compact JSON (UTF-8); pure functions here, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ONLINE = "online"
OFFLINE = "offline"
HA_STATUS = "status"  # under the discovery prefix: Home Assistant says "online" when it (re)starts
MAX_COMMAND_BYTES = 16384  # a `say` holds at most a few thousand characters; anything larger is refused unread

# Events the fleet hears (others, e.g. the 20 Hz `level` and the LEDs' `led`, stay on the device: a fleet's
# broker carries at most a few messages a minute per idle device).
FLEET_EVENTS = ("error", "notice", "session", "conversation_ended", "latency", "usage", "button", "interrupted")
TRANSCRIPT_EVENTS = ("transcript",)


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, from its base."""

    base: str
    discovery_prefix: str = "homeassistant"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def commands(self) -> str:
        """The subscription for every command."""
        return f"{self.base}/cmd/+"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def ha_muted(self) -> str:
        return f"{self.base}/ha/muted"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/{HA_STATUS}"

    def command_name(self, topic: str) -> str | None:
        """The command a `<base>/cmd/<name>` topic names (None for any other topic)."""
        prefix = f"{self.base}/cmd/"
        if topic.startswith(prefix) and "/" not in topic[len(prefix) :]:
            return topic[len(prefix) :]
        return None


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


class CommandRefused(Exception):
    """A command was not run: `code` is the control protocol's error code, `message` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class BadPayload(Exception):
    """A command's payload is not a JSON object; the message says what it is instead."""


def decode_command(payload: bytes) -> tuple[dict[str, Any], int | str | None]:
    """A command's arguments and its request id (`id`, taken out); an empty payload is no arguments."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise BadPayload(f"the payload is {len(payload)} bytes; the limit is {MAX_COMMAND_BYTES}")
    if not payload.strip():
        return {}, None
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadPayload('the payload is not UTF-8 JSON: send an object such as {"level": 0.5}') from None
    if not isinstance(value, dict):
        raise BadPayload(f"the payload must be a JSON object of arguments, not {type(value).__name__}")
    request_id = value.pop("id", None)
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, int | str)):
        raise BadPayload("id must be a string or a whole number")
    if isinstance(request_id, str) and len(request_id) > 128:
        raise BadPayload("id is longer than 128 characters")
    return value, request_id


def reply_ok(request_id: int | str | None, command: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "cmd": command, "ok": True, "result": result}


def reply_error(request_id: int | str | None, command: str, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "cmd": command, "ok": False, "error": {"code": code, "message": message}}


def fleet_event(event: dict[str, Any], transcripts: bool) -> dict[str, Any] | None:
    """The event as the fleet sees it, or None if it stays on the device."""
    name = event.get("event")
    if name in FLEET_EVENTS:
        return event
    if transcripts and name in TRANSCRIPT_EVENTS and event.get("final", True):  # not every partial: a few a turn
        return event
    return None
