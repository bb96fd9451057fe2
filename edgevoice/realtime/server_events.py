"""The Realtime API's server events as the device sees them: a parser that turns the server's JSON (untrusted
network input) into the few typed events the device acts on, and those types.

Every frame is checked field by field: a malformed one raises `ProtocolError` (the session logs it and carries
on), an event type the device does not act on parses to None. Which GA event each type comes from is in its
docstring; docs/realtime.md says what the device does with them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


class ProtocolError(Exception):
    """A server frame we cannot use (not JSON, not an object, a field missing or of the wrong type)."""


@dataclass(frozen=True)
class SessionStarted:
    """`session.created`, the first event of a connection: the session sends its `session.update` only after
    it, and keeps `session_id` for its log and `edgevoice doctor`."""

    session_id: str
    model: str


@dataclass(frozen=True)
class SessionConfigured:
    """`session.updated`: our configuration is in effect."""


@dataclass(frozen=True)
class SpeechStarted:
    """`input_audio_buffer.speech_started`: the server's VAD heard the visitor begin. Unless idle, the
    conversation listens, and interrupts an answer under way (barge-in: stop the speaker, truncate the item to
    what was heard, cancel the response unless the server cancels it itself)."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """`input_audio_buffer.speech_stopped`: the server's VAD heard the visitor finish; the conversation
    goes from listening to thinking and starts timing the latency to the first answer audio."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class InputCommitted:
    """`input_audio_buffer.committed`: the visitor's audio became the user item `item_id` (by our commit
    or the server VAD's); the turn's audio kept for a reconnect is dropped, the server has it now."""

    item_id: str


@dataclass(frozen=True)
class ResponseCreated:
    """`response.created`: an answer began, ours or the server VAD's. One the visitor cancelled before it
    was created is cancelled now; one we asked for while the device waits (idle, or listening to silence)
    moves it to thinking."""

    response_id: str


@dataclass(frozen=True)
class AudioDelta:
    """`response.output_audio.delta`: a chunk of the answer's speech, base64 decoded into int16 samples.
    Queued for the speaker under `item_id` unless its response was cancelled or the device stopped answering."""

    response_id: str
    item_id: str
    samples: np.ndarray = field(compare=False)  # int16 at 24 kHz


@dataclass(frozen=True)
class Transcript:
    """What was said, as text: `response.output_audio_transcript.delta`/`.done` (assistant) or
    `conversation.item.input_audio_transcription.delta`/`.completed` (user, when transcription is on).
    `final`: the whole text, not a delta. Kept for the history replayed after a reconnect, and forwarded to
    control clients as `transcript` events."""

    role: Literal["user", "assistant"]
    item_id: str
    text: str
    final: bool


@dataclass(frozen=True)
class ItemAdded:
    """A conversation item was announced (`conversation.item.added`/`.created`): gives the order of items."""

    item_id: str
    role: str | None  # user | assistant | system, None for non-message items
    kind: str  # message | function_call | function_call_output | ...


@dataclass(frozen=True)
class FunctionCall:
    """The model asks for a tool: `arguments` is JSON text, complete."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ResponseDone:
    """`response.done`: an answer ended, with its `status` and the reason or error from `status_details`.
    Lets the next queued response go, adds `usage` to the usage meter, sends the outputs of the tool calls it
    made, and ends the answer once the speaker has played everything. A failure is reported to control
    clients; a rate limit holds back new responses, and an exhausted quota ends the session."""

    response_id: str
    status: str  # completed | cancelled | failed | incomplete
    reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage: dict[str, Any] = field(default_factory=dict, compare=False)
    function_calls: tuple[str, ...] = ()  # call_ids of the tool calls in this response


@dataclass(frozen=True)
class ServerError:
    """`error`: the server rejected something; while a session is being set up, it fails with it. Later
    errors are logged and forwarded to control clients, except `response_cancel_not_active` (a cancel that
    came late, harmless); `conversation_already_has_active_response` also makes our request wait its turn."""

    code: str | None
    message: str
    error_type: str | None = None
    param: str | None = None
    event_id: str | None = None  # the client event at fault, when the server says which


ServerEvent = (
    SessionStarted
    | SessionConfigured
    | SpeechStarted
    | SpeechStopped
    | InputCommitted
    | ResponseCreated
    | AudioDelta
    | Transcript
    | ResponseDone
    | ServerError
    | ItemAdded
    | FunctionCall
)


def _get(event: dict[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    value = event.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{event.get('type')} has no valid {key!r} (got {type(value).__name__})")
    return value


def _decode_pcm(event: dict[str, Any]) -> np.ndarray:
    try:
        data = base64.b64decode(_get(event, "delta", str), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{event['type']} carries audio that is not base64: {exc}") from None
    if len(data) % 2:
        raise ProtocolError(f"{event['type']} carries an odd number of bytes of 16-bit audio")
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _response_done(event: dict[str, Any]) -> ResponseDone:
    response = _get(event, "response", dict)
    details = _object(response.get("status_details"))
    error = _object(details.get("error"))
    usage = _object(response.get("usage"))
    output = response.get("output") if isinstance(response.get("output"), list) else []
    calls = tuple(
        item["call_id"]
        for item in output
        if isinstance(item, dict) and item.get("type") == "function_call" and isinstance(item.get("call_id"), str)
    )
    return ResponseDone(
        response_id=_get(response, "id", str),
        status=_get(response, "status", str),
        reason=details.get("reason") if isinstance(details.get("reason"), str) else None,
        error_code=error.get("code") if isinstance(error.get("code"), str) else None,
        error_message=error.get("message") if isinstance(error.get("message"), str) else None,
        usage=usage,
        function_calls=calls,
    )


def _item_added(event: dict[str, Any]) -> ItemAdded:
    item = _get(event, "item", dict)
    role = item.get("role") if isinstance(item.get("role"), str) else None
    return ItemAdded(_get(item, "id", str), role, str(item.get("type", "")))


def _server_error(event: dict[str, Any]) -> ServerError:
    error = _get(event, "error", dict)

    def text(key: str) -> str | None:
        return error[key] if isinstance(error.get(key), str) else None

    return ServerError(
        code=text("code"),
        message=text("message") or "(no message)",
        error_type=text("type"),
        param=text("param"),
        event_id=text("event_id"),
    )


def parse_server_event(raw: str | bytes) -> ServerEvent | None:
    """The typed event for a server frame, None for event types the device does not act on.

    Raises ProtocolError for anything malformed; the caller logs it and carries on.
    """
    if isinstance(raw, bytes):
        raise ProtocolError("binary frame (the Realtime API sends only JSON text)")
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a string 'type'")
    kind = event["type"]
    match kind:
        case "session.created":
            session = _get(event, "session", dict)
            return SessionStarted(str(session.get("id", "")), str(session.get("model", "")))
        case "session.updated":
            return SessionConfigured()
        case "input_audio_buffer.speech_started":
            return SpeechStarted(_get(event, "item_id", str), _get(event, "audio_start_ms", int))
        case "input_audio_buffer.speech_stopped":
            return SpeechStopped(_get(event, "item_id", str), _get(event, "audio_end_ms", int))
        case "input_audio_buffer.committed":
            return InputCommitted(_get(event, "item_id", str))
        case "response.created":
            return ResponseCreated(_get(_get(event, "response", dict), "id", str))
        case "response.output_audio.delta":
            return AudioDelta(_get(event, "response_id", str), _get(event, "item_id", str), _decode_pcm(event))
        case "response.output_audio_transcript.delta":
            return Transcript("assistant", _get(event, "item_id", str), _get(event, "delta", str), False)
        case "response.output_audio_transcript.done":
            return Transcript("assistant", _get(event, "item_id", str), _get(event, "transcript", str), True)
        case "conversation.item.input_audio_transcription.delta":
            return Transcript("user", _get(event, "item_id", str), _get(event, "delta", str), False)
        case "conversation.item.input_audio_transcription.completed":
            return Transcript("user", _get(event, "item_id", str), _get(event, "transcript", str), True)
        case "response.done":
            return _response_done(event)
        case "conversation.item.added" | "conversation.item.created":
            return _item_added(event)
        case "response.function_call_arguments.done":
            return FunctionCall(
                _get(event, "response_id", str),
                _get(event, "item_id", str),
                _get(event, "call_id", str),
                _get(event, "name", str),
                _get(event, "arguments", str),
            )
        case "error":
            return _server_error(event)
    return None
