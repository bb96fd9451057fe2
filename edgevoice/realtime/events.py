"""The Realtime API's GA wire format, the client's side: builders for the events edgevoice sends.
(What the server sends is parsed in server_events.py.)

Client events are plain dicts: only the fields we mean are present, so nothing unset goes out as `null`
(in `session.update`, a `null` turn_detection turns VAD off; see docs/realtime.md). Every builder's output is
checked against the official `openai` types in the tests.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import numpy as np

from edgevoice.realtime import models
from edgevoice.realtime.settings import RealtimeSettings

PCM_RATE = 24000


# ---------------------------------------------------------------------------------------------------------
# Client events


def session_update(settings: RealtimeSettings, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The GA `session.update` for our settings (model and endpoint are fixed by the URL) and tools."""
    audio_format = {"type": "audio/pcm", "rate": PCM_RATE}
    td = settings.turn_detection
    turn_detection: dict[str, Any] | None
    if td.type == "none":
        turn_detection = None  # push-to-talk: the client commits
    elif td.type == "server_vad":
        turn_detection = {
            "type": "server_vad",
            "threshold": td.threshold,
            "prefix_padding_ms": td.prefix_padding_ms,
            "silence_duration_ms": td.silence_duration_ms,
            "create_response": True,
            "interrupt_response": td.interrupt_response,
        }
    else:
        turn_detection = {
            "type": "semantic_vad",
            "eagerness": td.eagerness,
            "create_response": True,
            "interrupt_response": td.interrupt_response,
        }
    audio_in: dict[str, Any] = {"format": audio_format, "turn_detection": turn_detection}
    audio_in["noise_reduction"] = None if settings.noise_reduction == "off" else {"type": settings.noise_reduction}
    if settings.transcription.model:
        transcription = {"model": settings.transcription.model}
        if settings.transcription.language:
            transcription["language"] = settings.transcription.language
        audio_in["transcription"] = transcription
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": settings.instructions,
        "audio": {"input": audio_in, "output": {"format": audio_format, "voice": settings.voice}},
    }
    # A model the catalogue does not know (an Azure deployment, a newer model) gets the effort as configured.
    if settings.reasoning_effort and models.takes_reasoning(settings.model) is not False:
        session["reasoning"] = {"effort": settings.reasoning_effort}
    if tools is not None:
        session["tools"] = tools
        session["tool_choice"] = "auto"
    return {"type": "session.update", "session": session}


def tools_update(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """A partial `session.update` that only replaces the tool list (an empty list removes them all)."""
    return {"type": "session.update", "session": {"type": "realtime", "tools": tools, "tool_choice": "auto"}}


def tool_declaration(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description, "parameters": parameters}


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def function_call_item(item_id: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A tool call replayed into a new session (so that its output, sent after it, has a call to answer)."""
    return {
        "type": "conversation.item.create",
        "item": {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments},
    }


def history_item(item_id: str, role: Literal["user", "assistant"], text: str) -> dict[str, Any]:
    """A text message replayed into a new session (assistant audio cannot be replayed, its transcript can)."""
    part = {"type": "input_text" if role == "user" else "output_text", "text": text}
    return {
        "type": "conversation.item.create",
        "item": {"id": item_id, "type": "message", "role": role, "content": [part]},
    }


def audio_append(pcm: np.ndarray) -> dict[str, Any]:
    """`input_audio_buffer.append` of int16 samples at 24 kHz (little-endian on the wire)."""
    data = pcm.astype("<i2", copy=False).tobytes()
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode("ascii")}


def audio_commit() -> dict[str, Any]:
    return {"type": "input_audio_buffer.commit"}


def audio_clear() -> dict[str, Any]:
    return {"type": "input_audio_buffer.clear"}


def response_create(instructions: str | None = None) -> dict[str, Any]:
    """Ask for an answer; `instructions` replace the session's for this one response (e.g. "say exactly ...")."""
    if instructions is None:
        return {"type": "response.create"}
    return {"type": "response.create", "response": {"instructions": instructions}}


def response_cancel(response_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "response.cancel"}
    if response_id:
        event["response_id"] = response_id
    return event


def item_truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": max(0, int(audio_end_ms)),
    }


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def user_image(image_url: str, prompt: str | None = None) -> dict[str, Any]:
    """A picture (a `data:image/jpeg;base64,...` URI) from the user, with an optional question about it."""
    content: list[dict[str, Any]] = [{"type": "input_image", "image_url": image_url}]
    if prompt:
        content.append({"type": "input_text", "text": prompt})
    return {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": content}}


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
