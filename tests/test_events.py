"""GA client events validate against the official openai types; server frames are parsed defensively."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from conformance import validate_client_event

from edgevoice.realtime import events, server_events
from edgevoice.realtime.settings import RealtimeSettings, TranscriptionSettings, TurnDetectionSettings


@pytest.mark.parametrize("turn", ["none", "server_vad", "semantic_vad"])
@pytest.mark.parametrize("noise", ["far_field", "off"])
def test_session_update_is_ga_shaped(turn: str, noise: str) -> None:
    settings = RealtimeSettings(
        turn_detection=TurnDetectionSettings(type=turn),  # type: ignore[arg-type]
        noise_reduction=noise,  # type: ignore[arg-type]
        reasoning_effort="low",
        transcription=TranscriptionSettings(language="en"),
    )
    event = events.session_update(settings)
    parsed = validate_client_event(event)
    session = event["session"]
    assert session["type"] == "realtime" and "modalities" not in session
    if turn == "none":  # push-to-talk must switch the server's default VAD off explicitly
        assert session["audio"]["input"]["turn_detection"] is None
    else:
        assert parsed.session.audio.input.turn_detection.type == turn
    assert session["reasoning"] == {"effort": "low"}


def test_no_reasoning_for_models_that_do_not_reason() -> None:
    event = events.session_update(RealtimeSettings(model="gpt-realtime-mini", reasoning_effort="high"))
    assert "reasoning" not in event["session"]


def test_every_builder_produces_a_valid_client_event() -> None:
    for event in (
        events.audio_append(np.arange(-480, 480, dtype=np.int16)),
        events.audio_commit(),
        events.audio_clear(),
        events.response_create(),
        events.response_cancel(),
        events.response_cancel("resp_1"),
        events.item_truncate("item_1", 1234),
        events.user_text("hello"),
    ):
        validate_client_event(json.loads(events.encode(event)))


def test_audio_is_little_endian_pcm16_base64() -> None:
    event = events.audio_append(np.array([1, -2], dtype=np.int16))
    assert base64.b64decode(event["audio"]) == b"\x01\x00\xfe\xff"


def test_the_oracle_rejects_beta_shapes() -> None:
    beta = {
        "type": "session.update",
        "session": {"modalities": ["audio", "text"], "input_audio_format": "pcm16"},
    }
    with pytest.raises(AssertionError):
        validate_client_event(beta)


def _frame(**event: object) -> str:
    return json.dumps(event)


def test_parse_the_events_the_device_acts_on() -> None:
    pcm = np.array([100, -100, 32767], dtype=np.int16)
    delta = server_events.parse_server_event(
        _frame(
            type="response.output_audio.delta",
            response_id="r",
            item_id="i",
            output_index=0,
            content_index=0,
            delta=base64.b64encode(pcm.astype("<i2").tobytes()).decode(),
            event_id="e",
        )
    )
    assert isinstance(delta, server_events.AudioDelta) and delta.samples.tolist() == pcm.tolist()
    done = server_events.parse_server_event(
        _frame(
            type="response.done",
            event_id="e",
            response={
                "id": "r",
                "status": "failed",
                "status_details": {
                    "type": "failed",
                    "error": {"type": "x", "code": "rate_limit_exceeded", "message": "m"},
                },
                "usage": {"total_tokens": 5},
            },
        )
    )
    assert done == server_events.ResponseDone("r", "failed", None, "rate_limit_exceeded", "m")
    assert done.usage == {"total_tokens": 5}
    err = server_events.parse_server_event(
        _frame(type="error", event_id="e", error={"type": "t", "code": "c", "message": "m"})
    )
    assert err == server_events.ServerError("c", "m", "t")
    assert server_events.parse_server_event(_frame(type="rate_limits.updated", rate_limits=[])) is None


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00binary",
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        _frame(type="response.output_audio.delta", response_id="r", item_id="i", delta="***"),
        _frame(type="response.output_audio.delta", response_id="r", item_id="i", delta="AAEC"),  # 3 bytes
        _frame(type="input_audio_buffer.speech_started", item_id="i", audio_start_ms="12"),
        _frame(type="input_audio_buffer.speech_started", item_id="i", audio_start_ms=True),
        _frame(type="response.done", response="x"),
        _frame(type="error", error=None),
        "[" * 100000,
    ],
)
def test_malformed_frames_raise_protocol_error(frame: str | bytes) -> None:
    with pytest.raises(server_events.ProtocolError):
        server_events.parse_server_event(frame)
