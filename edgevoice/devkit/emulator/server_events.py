"""Server-event and item builders for the Realtime emulator, as plain dicts in the GA shape.

Every dict built here must validate against openai's `RealtimeServerEvent` (the tests check every event
the emulator sends), so all fields the SDK types require are always present. Ids imitate the real ones
(`event_…`, `item_…`, `resp_…`, `call_…`, `sess_…`, `conv_…`) so logs read the same.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

Event = dict[str, Any]

SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
BETA_DISABLED_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
DEFAULT_INSTRUCTIONS = (
    "You are the edgevoice emulator. Your answers are scripted tones with a fixed transcript; "
    "nothing you hear is understood."
)


def new_id(prefix: str) -> str:
    """A random id with the real server's prefix convention."""
    return f"{prefix}_{secrets.token_hex(10)}"


def server_event(event_type: str, **fields: Any) -> Event:
    """Any server event: its type, a fresh server `event_id`, then the fields."""
    return {"type": event_type, "event_id": new_id("event"), **fields}


def error_event(
    code: str | None,
    message: str,
    *,
    param: str | None = None,
    client_event_id: str | None = None,
    error_type: str = "invalid_request_error",
) -> Event:
    """An `error` event; `client_event_id` echoes the event_id of the client event at fault (or null)."""
    return server_event(
        "error",
        error={
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    )


def default_session(model: str, session_id: str, expires_at: int) -> dict[str, Any]:
    """The full effective session a new connection starts with (the real defaults, voice `marin`)."""
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": default_turn_detection("server_vad"),
            },
            "output": {"format": dict(pcm), "voice": "marin", "speed": 1.0},
        },
    }


def default_turn_detection(kind: str) -> dict[str, Any]:
    """Turn detection with every field at the server's default; a client's partial object is laid on top."""
    if kind == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
        }
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


# --- conversation items ------------------------------------------------------------------------------
def user_audio_item(item_id: str) -> dict[str, Any]:
    """The user message a commit creates; its transcript arrives later (or never, without transcription)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def assistant_message_item(item_id: str) -> dict[str, Any]:
    """An assistant message as first announced: in progress, no content yet."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }


def function_call_item(item_id: str, call_id: str, name: str) -> dict[str, Any]:
    """A function call as first announced: arguments still empty."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": "in_progress",
        "call_id": call_id,
        "name": name,
        "arguments": "",
    }


# --- responses ---------------------------------------------------------------------------------------
def word_tokens(text: str) -> int:
    """The emulator's text token estimate: about one token per word."""
    return len(text.split())


def audio_tokens(duration_ms: float, ms_per_token: float) -> int:
    """Audio tokens as billed: user audio 1 per 100 ms, assistant audio 1 per 50 ms.

    See docs/realtime.md, "Session limits, audio and billing".
    """
    return math.ceil(duration_ms / ms_per_token - 1e-9) if duration_ms > 0 else 0


def usage(input_text: int, input_audio: int, output_text: int, output_audio: int) -> dict[str, Any]:
    """The `usage` object of `response.done`."""
    input_tokens = input_text + input_audio
    output_tokens = output_text + output_audio
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
    }


def rate_limits_event(reserved_tokens: int) -> Event:
    """`rate_limits.updated`, sent at the start of each response with its output tokens reserved."""
    return server_event(
        "rate_limits.updated",
        rate_limits=[
            {"name": "requests", "limit": 10_000, "remaining": 9_999, "reset_seconds": 0.006},
            {
                "name": "tokens",
                "limit": 200_000,
                "remaining": max(0, 200_000 - reserved_tokens),
                "reset_seconds": 0.6,
            },
        ],
    )
