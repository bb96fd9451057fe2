"""Checks for untrusted client input: the building blocks of the emulator's event validation.

A failed check raises `ClientError` carrying the real server's code and message style
(`unknown_parameter` + "Unknown parameter: 'session.modalities'.", `missing_required_parameter`,
`invalid_type`, `invalid_value`); the session turns it into one `error` event and carries on.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from typing import Any

MAX_ID_LENGTH = 64


class ClientError(Exception):
    """A client event the emulator refuses. The session answers it with one `error` event and carries on."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


# --- primitive checks --------------------------------------------------------------------------------
def json_kind(value: Any) -> str:
    """How the real server names a JSON value's type in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def invalid_type(param: str, expected: str, value: Any) -> ClientError:
    return ClientError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {json_kind(value)} instead.",
        param,
    )


def invalid_value(param: str, value: Any, supported: Iterable[str] | None = None, why: str = "") -> ClientError:
    shown = repr(value) if isinstance(value, str) else str(value)
    message = f"Invalid value: {shown[:100]}."
    if supported is not None:
        message += " Supported values are: " + ", ".join(f"'{choice}'" for choice in supported) + "."
    if why:
        message += f" {why}"
    return ClientError("invalid_value", message, param)


def check_keys(obj: dict[str, Any], allowed: Iterable[str], prefix: str) -> None:
    """Refuse keys outside `allowed`, as the real server does (`unknown_parameter`)."""
    allowed_set = set(allowed)
    for key in obj:
        if key not in allowed_set:
            param = join(prefix, key)
            raise ClientError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def required(obj: dict[str, Any], key: str, prefix: str) -> Any:
    if key not in obj:
        param = join(prefix, key)
        raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)
    return obj[key]


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    return value


def expect_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_type(param, "an array", value)
    return value


def expect_str(value: Any, param: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if max_length is not None and len(value) > max_length:
        raise ClientError(
            "string_above_max_length",
            f"Invalid '{param}': string too long. Expected a string with maximum length {max_length}, "
            f"but got a string with length {len(value)} instead.",
            param,
        )
    return value


def expect_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)
    return value


def expect_int(value: Any, param: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(param, "an integer", value)
    if low is not None and value < low:
        raise invalid_value(param, value, why=f"Expected an integer of at least {low}.")
    if high is not None and value > high:
        raise invalid_value(param, value, why=f"Expected an integer of at most {high}.")
    return value


def expect_number(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(param, "a number", value)
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid_value(param, value, why=f"Expected a number in [{low}, {high}].")
    return float(value)


def expect_choice(value: Any, param: str, choices: Iterable[str]) -> str:
    options = tuple(choices)
    text = expect_str(value, param)
    if text not in options:
        raise invalid_value(param, text, options)
    return text


def optional_id(obj: dict[str, Any], key: str, prefix: str) -> str | None:
    """An optional id field: absent or null -> None, else a non-empty string of sane length."""
    value = obj.get(key)
    if value is None:
        return None
    text = expect_str(value, join(prefix, key), max_length=MAX_ID_LENGTH)
    if not text:
        raise invalid_value(join(prefix, key), text, why="Ids cannot be empty.")
    return text


def decode_base64(value: Any, param: str) -> bytes:
    """Strict base64 (no stray characters), as audio must be."""
    text = expect_str(value, param)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("invalid_value", f"Invalid '{param}': not valid base64-encoded audio.", param) from None


def parse_frame(frame: str | bytes) -> dict[str, Any]:
    """One WebSocket frame -> one event object; anything else (binary, not JSON, not an object) is refused.

    NaN, Infinity and out-of-range floats are refused too: Python's parser accepts them, but they are
    not JSON, and echoing them back would break strict clients.
    """
    if isinstance(frame, bytes):
        raise ClientError(
            "binary_frame_not_supported",
            "Binary WebSocket frames are not supported; send each event as a JSON text frame.",
        )
    try:
        event = json.loads(frame, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ClientError("invalid_json", "The frame is not valid JSON; each frame must be one JSON event.") from None
    if not isinstance(event, dict):
        raise ClientError("invalid_event", f"Each event must be a JSON object, but got {json_kind(event)}.")
    return event


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would become inf
        raise ValueError(f"{text[:20]} is out of range")
    return value
