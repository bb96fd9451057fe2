"""Tests of the Realtime emulator, through a real `websockets` client on loopback.

Every test runs inside `run_with_emulator`, which validates every event the emulator sent against openai's
GA `RealtimeServerEvent` types once the scenario is over; `Client.send` validates every well-formed client
event against `RealtimeClientEvent` before sending it (garbage goes through `send_raw`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from conformance import validate_client_event, validate_server_event
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edgevoice.devkit.emulator import (
    EmulatorSettings,
    FunctionCallReply,
    RealtimeEmulator,
    SpokenReply,
    Tone,
    serve,
)
from edgevoice.devkit.emulator.audio import PCMA, PCMU, alaw_encode, ulaw_encode

MODEL = "gpt-realtime"
RATE = 24_000
FAST = EmulatorSettings(realtime_factor=0, response_delay_s=0.0)
"""For tests where timing does not matter: the whole reply in one burst."""
PACED = EmulatorSettings(realtime_factor=2.0, response_delay_s=0.02)
"""For tests that must act while a response is streaming (a 2 s reply lasts ~1 s)."""
LONG_REPLY = SpokenReply("One two three four five six seven eight.", (Tone(500.0, 1.0), Tone(700.0, 1.0)))
PTT = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
}
"""Push-to-talk: manual turns."""


# --- harness -------------------------------------------------------------------------------------------
def run_with_emulator(
    scenario: Callable[[RealtimeEmulator], Awaitable[None]], settings: EmulatorSettings = FAST
) -> RealtimeEmulator:
    """Run `scenario` against a fresh emulator, then validate every event the emulator sent."""

    async def main() -> RealtimeEmulator:
        async with RealtimeEmulator(settings) as emulator:
            await scenario(emulator)
        return emulator

    emulator = asyncio.run(main())
    for event in emulator.sent:
        validate_server_event(event)
    return emulator


class Client:
    """A test client: a background reader queues every frame, so the test can send and read freely."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Any] = []
        self.closed_by: ConnectionClosed | None = None
        """The exception that ended the reader, when the close was not a clean 1000/1001."""
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                try:
                    event = json.loads(message)
                except ValueError:
                    event = message  # injected garbage stays raw
                self.events.append(event)
                await self._queue.put(event)
        except ConnectionClosed as closed:
            self.closed_by = closed
        finally:
            await self._queue.put(None)

    async def send(self, event: dict[str, Any]) -> None:
        validate_client_event(event)
        await self.ws.send(json.dumps(event))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def next(self, timeout: float = 5.0) -> Any:
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event is None:
            self._queue.put_nowait(None)
            raise AssertionError(f"connection closed ({self.ws.close_code} {self.ws.close_reason!r})")
        return event

    async def expect(self, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next event of `event_type`; events before it are skipped (they stay in `events`)."""
        return (await self.until(event_type, timeout))[-1]

    async def until(self, event_type: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """All events up to and including the next one of `event_type`."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                seen.append(await self.next())
                if isinstance(seen[-1], dict) and seen[-1].get("type") == event_type:
                    return seen

    async def seen(self, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
        """The first event of `event_type` received so far, or the next one; for events that arrive
        asynchronously (input transcription) and may already have been skipped by `until`."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, dict) and event.get("type") == event_type:
                        return event
                await self.next()

    async def error(self, timeout: float = 5.0) -> dict[str, Any]:
        return (await self.expect("error", timeout))["error"]

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def open_client(
    emulator: RealtimeEmulator,
    *,
    path: str = "/v1/realtime",
    query: str = f"?model={MODEL}",
    headers: dict[str, str] | None = None,
    greeted: bool = True,
    **options: Any,
) -> Client:
    """Connect like edgevoice does (no compression, no size limit); expect `session.created` if `greeted`."""
    url = emulator.url.replace("/v1/realtime", path) + query
    ws = await connect(url, additional_headers=headers, compression=None, max_size=None, **options)
    client = Client(ws)
    if greeted:
        assert (await client.next())["type"] == "session.created"
    return client


def tone(freq_hz: float, seconds: float, amplitude: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype=np.int16)


async def append_audio(client: Client, samples: np.ndarray, chunk_ms: int = 20) -> None:
    """Stream PCM16 in `chunk_ms` appends, as a microphone loop does."""
    step = RATE * chunk_ms // 1000
    for start in range(0, samples.size, step):
        chunk = samples[start : start + step].astype("<i2").tobytes()
        await client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()})


def decode_audio(events: list[Any], item_id: str | None = None) -> np.ndarray:
    deltas = [
        e["delta"]
        for e in events
        if isinstance(e, dict) and e.get("type") == "response.output_audio.delta" and item_id in (None, e["item_id"])
    ]
    return np.frombuffer(b"".join(base64.b64decode(d) for d in deltas), dtype="<i2")


def dominant_hz(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    return float(np.argmax(spectrum)) * rate / samples.size


def types_of(events: list[Any]) -> list[str]:
    return [e["type"] for e in events if isinstance(e, dict)]


# --- handshake ---------------------------------------------------------------------------------------
def test_handshake_rules_and_redacted_records() -> None:
    secret = "sk-" + "test-0123456789abcdef"

    async def scenario(emulator: RealtimeEmulator) -> None:
        for headers, expected in (
            (None, 401),
            ({"Authorization": "Bearer sk-wrong-key-000000"}, 401),
            ({"api-key": "nope"}, 401),
        ):
            with pytest.raises(InvalidStatus) as refused:
                await open_client(emulator, headers=headers)
            assert refused.value.response.status_code == expected
            body = json.loads(refused.value.response.body)
            assert body["error"]["code"] == "invalid_api_key"
            assert secret not in refused.value.response.body.decode()
        with pytest.raises(InvalidStatus) as refused:
            await open_client(emulator, query="", headers={"Authorization": f"Bearer {secret}"})
        assert refused.value.response.status_code == 400
        assert "model" in json.loads(refused.value.response.body)["error"]["message"]
        with pytest.raises(InvalidStatus) as refused:
            await open_client(emulator, path="/v1/chat", headers={"Authorization": f"Bearer {secret}"})
        assert refused.value.response.status_code == 404

        openai_client = await open_client(emulator, headers={"Authorization": f"Bearer {secret}"})
        azure_client = await open_client(emulator, path="/openai/v1/realtime", headers={"api-key": secret})
        assert emulator.connection_count == 2
        await openai_client.close()
        await azure_client.close()

    emulator = run_with_emulator(scenario, EmulatorSettings(api_key="sk-" + "test-0123456789abcdef"))
    assert [h.status for h in emulator.handshakes] == [401, 401, 401, 400, 404, 101, 101]
    assert emulator.handshakes[-1].path == "/openai/v1/realtime"
    assert emulator.handshakes[-1].query == {"model": MODEL}
    assert emulator.handshakes[-1].headers["api-key"] == "[REDACTED]"
    assert emulator.handshakes[-2].headers["authorization"] == "Bearer [REDACTED]"
    assert secret not in repr(emulator.handshakes)
    assert emulator.sessions_started == 2


def test_beta_header_gets_beta_error_and_close_4000() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator, headers={"OpenAI-Beta": "realtime=v1"}, greeted=False)
        error = await client.error()
        assert error["code"] == "beta_api_shape_disabled"
        assert "no longer supported" in error["message"]
        code, _ = await client.wait_closed()
        assert code == 4000
        assert emulator.sessions_started == 0

    run_with_emulator(scenario)


def test_bad_key_close3000_mode() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator, headers={"Authorization": "Bearer sk-wrong-0000000000"}, greeted=False)
        error = await client.error()
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
        assert "sk-wrong-0000000000" not in error["message"]
        assert await client.wait_closed() == (3000, error["message"][:123])
        assert types_of(client.events) == ["error"]

    run_with_emulator(scenario, EmulatorSettings(api_key="sk-right-1111111111", bad_key_mode="close3000"))


def test_fail_handshakes_with_retry_after() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.fail_handshakes(429, count=2, retry_after=1.5)
        emulator.fail_handshakes(503)
        for status in (429, 429, 503):
            with pytest.raises(InvalidStatus) as refused:
                await open_client(emulator)
            assert refused.value.response.status_code == status
            assert refused.value.response.headers.get("Retry-After") == ("1.5" if status == 429 else None)
        client = await open_client(emulator)  # the script is used up: the next one connects
        await client.close()
        with pytest.raises(ValueError):
            emulator.fail_handshakes(200)

    emulator = run_with_emulator(scenario)
    assert [h.status for h in emulator.handshakes] == [429, 429, 503, 101]


# --- session -----------------------------------------------------------------------------------------
def test_session_created_has_the_full_default_session() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator, query="?model=gpt-realtime-2")
        session = client.events[0]["session"]
        assert session["type"] == "realtime"
        assert session["model"] == "gpt-realtime-2"
        assert session["output_modalities"] == ["audio"]
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"]["voice"] == "marin"
        detection = session["audio"]["input"]["turn_detection"]
        assert detection["type"] == "server_vad"
        assert (detection["threshold"], detection["prefix_padding_ms"], detection["silence_duration_ms"]) == (
            0.5,
            300,
            500,
        )
        await client.close()

    emulator = run_with_emulator(scenario)
    assert types_of(emulator.sent) == ["session.created"]  # GA sends no conversation.created


def test_session_update_merges_partial_updates() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        await client.send(
            {
                "type": "session.update",
                "event_id": "evt_1",
                "session": {
                    "type": "realtime",
                    "instructions": "Be brief.",
                    "audio": {
                        "input": {
                            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                            "turn_detection": {"type": "server_vad", "threshold": 0.7},
                        },
                        "output": {"voice": "cedar"},
                    },
                    "tools": [{"type": "function", "name": "get_time", "parameters": {"type": "object"}}],
                },
            }
        )
        session = (await client.expect("session.updated"))["session"]
        assert session["instructions"] == "Be brief."
        assert session["audio"]["output"]["voice"] == "cedar"
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}  # untouched
        detection = session["audio"]["input"]["turn_detection"]
        assert detection["threshold"] == 0.7 and detection["silence_duration_ms"] == 500  # defaults filled
        assert session["tools"][0]["name"] == "get_time"
        await client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Hi."}})
        session = (await client.expect("session.updated"))["session"]
        assert session["audio"]["output"]["voice"] == "cedar"
        assert session["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
        await client.send(PTT)
        assert (await client.expect("session.updated"))["session"]["audio"]["input"]["turn_detection"] is None
        await client.close()

    run_with_emulator(scenario)


def test_beta_shaped_session_update_is_rejected_and_changes_nothing() -> None:
    beta = {
        "type": "session.update",
        "event_id": "beta_1",
        "session": {"modalities": ["text", "audio"], "input_audio_format": "pcm16", "voice": "alloy"},
    }
    beta_with_type = {"type": "session.update", "session": {"type": "realtime", "modalities": ["text"]}}
    ga = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["text"],
            "audio": {"output": {"voice": "alloy"}},
        },
    }
    # The oracle has teeth: both beta shapes fail it, the GA one passes.
    for shape in (beta, beta_with_type):
        with pytest.raises(AssertionError):
            validate_client_event(shape)
    validate_client_event(ga)

    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        await client.send_raw(json.dumps({**beta, "session": {**beta["session"], "type": "realtime"}}))
        error = await client.error()
        assert (error["code"], error["param"], error["event_id"]) == (
            "unknown_parameter",
            "session.modalities",
            "beta_1",
        )
        assert error["message"] == "Unknown parameter: 'session.modalities'."
        await client.send_raw(json.dumps(beta))  # no session.type either: the unknown keys are named first
        assert (await client.error())["param"] == "session.modalities"
        await client.send_raw(json.dumps({"type": "session.update", "session": {"instructions": "no type"}}))
        error = await client.error()
        assert (error["code"], error["param"]) == ("missing_required_parameter", "session.type")
        await client.send_raw(
            json.dumps({"type": "session.update", "session": {"type": "realtime", "temperature": 0.8}})
        )
        assert (await client.error())["param"] == "session.temperature"
        bad_threshold = {"type": "server_vad", "threshold": "high"}
        await client.send_raw(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "instructions": "changed?",
                        "audio": {"input": {"turn_detection": bad_threshold}},
                    },
                }
            )
        )
        error = await client.error()
        assert (error["code"], error["param"]) == (
            "invalid_type",
            "session.audio.input.turn_detection.threshold",
        )
        await client.send(ga)
        session = (await client.expect("session.updated"))["session"]
        assert session["instructions"] != "changed?"  # the refused update changed nothing
        assert session["output_modalities"] == ["text"] and session["audio"]["output"]["voice"] == "alloy"
        await client.close()

    run_with_emulator(scenario)


# --- turns -------------------------------------------------------------------------------------------
RESPONSE_SEQUENCE = [
    "response.created",
    "rate_limits.updated",
    "conversation.item.added",
    "response.output_item.added",
    "response.content_part.added",
]
RESPONSE_TAIL = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def test_push_to_talk_turn_streams_the_reply_tones() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        await client.send(PTT)
        await client.expect("session.updated")
        await append_audio(client, tone(300.0, 1.0))
        await client.send({"type": "input_audio_buffer.commit", "event_id": "commit_1"})
        committed = await client.expect("input_audio_buffer.committed")
        user_item = (await client.expect("conversation.item.done"))["item"]
        assert user_item["id"] == committed["item_id"] and user_item["role"] == "user"
        assert user_item["content"][0]["type"] == "input_audio"
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        kinds = types_of(events)
        assert kinds[:5] == RESPONSE_SEQUENCE and kinds[-6:] == RESPONSE_TAIL
        assert set(kinds[5:-6]) == {"response.output_audio.delta", "response.output_audio_transcript.delta"}

        audio = decode_audio(events)
        assert audio.size == round(0.9 * RATE)  # three tones of 0.3 s
        segment = round(0.3 * RATE)
        for index, expected_hz in enumerate((440.0, 660.0, 880.0)):
            assert abs(dominant_hz(audio[index * segment : (index + 1) * segment]) - expected_hz) < 10
        assert 0.25 < np.abs(audio).max() / 32767 <= 0.3 + 1e-3  # amplitude 0.3
        assert np.abs(audio[:24]).max() < 0.05 * 32767  # the raised-cosine ramp in
        transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
        assert transcript == "Hello from the edgevoice emulator."
        done = events[-1]["response"]
        assert done["status"] == "completed" and done["output"][0]["status"] == "completed"
        assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
        usage = done["usage"]
        assert usage["input_token_details"]["audio_tokens"] == 10  # 1 s of user audio, 1 token / 100 ms
        assert usage["output_token_details"] == {
            "audio_tokens": 18,
            "text_tokens": 5,
        }  # 0.9 s / 50 ms; 5 words
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert (await emulator.wait_for("input_audio_buffer.append", count=50))["type"] == "input_audio_buffer.append"
        await client.close()

    emulator = run_with_emulator(scenario)
    assert sum(1 for e in emulator.received if e["type"] == "input_audio_buffer.append") == 50


def test_server_vad_turn_is_detected_committed_and_answered() -> None:
    reply = SpokenReply("Beep.", (Tone(1000.0, 0.2),))

    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.queue_reply(reply)
        client = await open_client(emulator)
        await client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                },
            }
        )
        await client.expect("session.updated")
        bursts = np.concatenate([np.concatenate((tone(220.0, 0.12), silence(0.03))) for _ in range(4)])
        await append_audio(client, np.concatenate((silence(1.0), bursts, silence(0.8))))
        started = await client.expect("input_audio_buffer.speech_started")
        stopped = await client.expect("input_audio_buffer.speech_stopped")
        committed = await client.expect("input_audio_buffer.committed")
        assert started["item_id"] == stopped["item_id"] == committed["item_id"]
        assert abs(started["audio_start_ms"] - (1000 - 300)) <= 20  # speech onset minus prefix padding
        assert abs(stopped["audio_end_ms"] - (1000 + 600 - 30)) <= 40  # end of the last burst
        events = await client.until("response.done")
        assert abs(decode_audio(events).size - 0.2 * RATE) < 1 and events[-1]["response"]["status"] == "completed"
        transcription = await client.seen("conversation.item.input_audio_transcription.completed")
        assert transcription["item_id"] == committed["item_id"]
        # The committed audio runs from audio_start_ms to where the silence ended the turn (~0.5 s later).
        expected_s = (stopped["audio_end_ms"] + 500 - started["audio_start_ms"]) / 1000
        spoken_s = float(transcription["transcript"].removeprefix("(").removesuffix(" seconds of speech)"))
        assert abs(spoken_s - expected_s) <= 0.1
        await client.close()

    run_with_emulator(scenario)


def test_semantic_vad_and_user_transcript_setting() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        detection = {"type": "semantic_vad", "eagerness": "high", "create_response": False}
        transcription = {"model": "gpt-4o-transcribe"}
        update = {
            "type": "realtime",
            "audio": {"input": {"turn_detection": detection, "transcription": transcription}},
        }
        await client.send({"type": "session.update", "session": update})
        await client.expect("session.updated")
        await append_audio(client, np.concatenate((tone(300.0, 0.5), silence(0.4))))
        await client.expect("input_audio_buffer.speech_stopped")
        completed = await client.seen("conversation.item.input_audio_transcription.completed")
        assert completed["transcript"] == "What time is it?"
        assert "response.created" not in types_of(client.events)  # create_response false
        await client.close()

    run_with_emulator(
        scenario,
        EmulatorSettings(realtime_factor=0, response_delay_s=0.0, user_transcript="What time is it?"),
    )


def test_barge_in_cancels_the_response_and_truncate_checks_the_sent_audio() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.queue_reply(LONG_REPLY)
        client = await open_client(emulator)
        await append_audio(client, np.concatenate((tone(250.0, 0.4), silence(0.6))))
        first_delta = await client.expect("response.output_audio.delta")
        assistant_item = first_delta["item_id"]
        await append_audio(client, tone(250.0, 0.2))  # the user talks over the assistant
        events = await client.until("response.done")
        assert "input_audio_buffer.speech_started" in types_of(events)
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert done["output"][0]["status"] == "incomplete"
        received_ms = decode_audio(client.events, assistant_item).size * 1000 // RATE
        assert 0 < received_ms < 2000

        played_ms = received_ms - 50
        truncate = {"type": "conversation.item.truncate", "item_id": assistant_item, "content_index": 0}
        await client.send({**truncate, "audio_end_ms": played_ms})
        truncated = await client.expect("conversation.item.truncated")
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (assistant_item, played_ms)
        await client.send({**truncate, "audio_end_ms": played_ms + 500, "event_id": "trunc_2"})
        error = await client.error()
        assert error["message"] == f"Audio content of {played_ms}ms is already shorter than {played_ms + 500}ms"
        assert error["event_id"] == "trunc_2"
        await client.close()

    run_with_emulator(scenario, PACED)


def test_response_cancel_and_cancel_with_nothing_active() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.queue_reply(LONG_REPLY)
        client = await open_client(emulator)
        await client.send(PTT)
        await client.expect("session.updated")
        await client.send({"type": "response.create", "event_id": "create_1"})
        response_id = (await client.expect("response.created"))["response"]["id"]
        await client.expect("response.output_audio.delta")
        await client.send({"type": "response.cancel", "response_id": "resp_not_this_one"})
        assert (await client.error())["code"] == "response_cancel_not_active"
        await client.send({"type": "response.cancel"})
        events = await client.until("response.done")
        done = events[-1]["response"]
        assert (done["id"], done["status"]) == (response_id, "cancelled")
        assert done["status_details"]["reason"] == "client_cancelled"
        assert done["usage"]["output_token_details"]["audio_tokens"] < 40  # far less than 2 s of audio
        await asyncio.sleep(0.1)
        after = client.events[client.events.index(events[-1]) + 1 :]
        assert "response.output_audio.delta" not in types_of(after)  # streaming stopped at once
        await client.send({"type": "response.cancel", "event_id": "cancel_2"})
        error = await client.error()
        assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "cancel_2")
        await client.close()

    run_with_emulator(scenario, PACED)


def test_only_one_response_at_a_time() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.queue_reply(LONG_REPLY)
        client = await open_client(emulator)
        await client.send({"type": "response.create"})
        response_id = (await client.expect("response.created"))["response"]["id"]
        await client.send({"type": "response.create", "event_id": "second"})
        error = await client.error()
        assert error["code"] == "conversation_already_has_active_response"
        assert error["message"] == (
            f"Conversation already has an active response in progress: {response_id}. "
            "Wait until the response is finished before creating a new one."
        )
        assert error["event_id"] == "second"
        await client.expect("response.done", timeout=5)
        await client.send({"type": "response.create"})  # answering response.done at once is fine
        assert (await client.expect("response.created"))["response"]["id"] != response_id
        await client.close()

    run_with_emulator(scenario, PACED)


def test_fail_next_response_and_set_delay() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.fail_next_response()
        client = await open_client(emulator)
        await client.send({"type": "response.create"})
        failed = (await client.expect("response.done"))["response"]
        assert failed["status"] == "failed"
        assert failed["status_details"]["error"]["code"] == "rate_limit_exceeded"
        assert "Rate limit reached" in failed["status_details"]["error"]["message"]
        emulator.set_delay(0.3)
        await client.send({"type": "response.create"})
        await client.expect("response.created")
        started = time.monotonic()
        await client.expect("response.output_audio.delta")
        assert time.monotonic() - started >= 0.25
        assert (await client.expect("response.done"))["response"]["status"] == "completed"
        await client.close()

    run_with_emulator(scenario)


def test_commit_needs_100_ms_and_clear_empties_the_buffer() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        await client.send(PTT)
        await client.expect("session.updated")
        await client.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
        error = await client.error()
        assert error["code"] == "input_audio_buffer_commit_empty" and error["event_id"] == "c1"
        assert (
            "buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio."
            in error["message"]
        )
        await append_audio(client, tone(300.0, 0.05))
        await client.send({"type": "input_audio_buffer.commit"})
        assert "buffer only has 50.00ms of audio." in (await client.error())["message"]
        await append_audio(client, tone(300.0, 0.2))
        await client.send({"type": "input_audio_buffer.clear"})
        await client.expect("input_audio_buffer.cleared")
        await client.send({"type": "input_audio_buffer.commit"})
        assert "0.00ms" in (await client.error())["message"]
        await client.close()

    run_with_emulator(scenario)


# --- items -------------------------------------------------------------------------------------------
def test_item_create_delete_retrieve_and_truncate_rules() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}
        await client.send({"type": "conversation.item.create", "item": user})
        first = await client.expect("conversation.item.added")
        assert first["previous_item_id"] is None and first["item"]["content"][0]["text"] == "Hi there"
        assert (await client.expect("conversation.item.done"))["item"]["id"] == first["item"]["id"]
        replay = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello!"}],
        }
        await client.send({"type": "conversation.item.create", "item": {**replay, "id": "item_replay"}})
        assert (await client.expect("conversation.item.added"))["previous_item_id"] == first["item"]["id"]
        await client.send({"type": "conversation.item.create", "previous_item_id": "root", "item": user})
        assert (await client.expect("conversation.item.added"))["previous_item_id"] is None
        await client.send({"type": "conversation.item.create", "previous_item_id": "item_replay", "item": user})
        assert (await client.expect("conversation.item.added"))["previous_item_id"] == "item_replay"

        await client.send({"type": "conversation.item.create", "previous_item_id": "item_nope", "item": user})
        assert (await client.error())["param"] == "previous_item_id"
        await client.send({"type": "conversation.item.create", "item": {**replay, "id": "item_replay"}})
        assert (await client.error())["param"] == "item.id"
        audio_replay = {**replay, "content": [{"type": "output_audio", "transcript": "Hello!"}]}
        await client.send({"type": "conversation.item.create", "item": audio_replay})
        assert "cannot be created" in (await client.error())["message"]

        truncate = {"type": "conversation.item.truncate", "item_id": "item_replay", "content_index": 0}
        await client.send({**truncate, "audio_end_ms": 0})
        assert (await client.error())["message"] == "Only model output audio messages can be truncated."
        await client.send({"type": "conversation.item.retrieve", "item_id": "item_replay"})
        assert (await client.expect("conversation.item.retrieved"))["item"]["content"][0]["text"] == "Hello!"
        await client.send({"type": "conversation.item.delete", "item_id": "item_replay", "event_id": "del_1"})
        assert (await client.expect("conversation.item.deleted"))["item_id"] == "item_replay"
        await client.send({"type": "conversation.item.delete", "item_id": "item_replay", "event_id": "del_2"})
        error = await client.error()
        assert (error["param"], error["event_id"]) == ("item_id", "del_2")
        assert "item_replay" in error["message"]
        await client.close()

    run_with_emulator(scenario)


def test_function_call_then_output_then_spoken_answer() -> None:
    arguments = json.dumps({"timezone": "Europe/Paris", "format": "24h"})

    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.queue_reply(FunctionCallReply("get_time", arguments, call_id="call_fixed"))
        client = await open_client(emulator)
        tool = {
            "type": "function",
            "name": "get_time",
            "description": "Time now",
            "parameters": {"type": "object"},
        }
        await client.send({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}})
        await client.expect("session.updated")
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        added = next(e for e in events if e["type"] == "response.output_item.added")["item"]
        assert (added["type"], added["name"], added["call_id"]) == ("function_call", "get_time", "call_fixed")
        deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
        assert len(deltas) > 1 and "".join(deltas) == arguments
        args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert (args_done["name"], args_done["arguments"], args_done["call_id"]) == (
            "get_time",
            arguments,
            "call_fixed",
        )
        output = events[-1]["response"]["output"][0]
        assert (output["type"], output["arguments"], output["status"]) == (
            "function_call",
            arguments,
            "completed",
        )

        result = {"type": "function_call_output", "call_id": "call_fixed", "output": '{"time": "12:00"}'}
        await client.send({"type": "conversation.item.create", "item": result})
        assert (await client.expect("conversation.item.done"))["item"]["type"] == "function_call_output"
        await client.send({"type": "response.create"})
        spoken = await client.until("response.done")
        assert spoken[-1]["response"]["status"] == "completed" and decode_audio(spoken).size > 0
        await client.close()

    run_with_emulator(scenario)


def test_text_modality_and_out_of_band_response() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        emulator.queue_reply(SpokenReply("Just text.", ()))
        client = await open_client(emulator)
        options = {"output_modalities": ["text"], "conversation": "none", "metadata": {"purpose": "summary"}}
        await client.send({"type": "response.create", "response": options})
        events = await client.until("response.done")
        kinds = types_of(events)
        assert "conversation.item.added" not in kinds and "response.output_audio.delta" not in kinds
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Just text."
        done = events[-1]["response"]
        assert done["conversation_id"] is None and done["metadata"] == {"purpose": "summary"}
        assert done["output"][0]["content"] == [{"type": "output_text", "text": "Just text."}]
        await client.send_raw(json.dumps({"type": "response.create", "response": {"temperature": 0.7}}))
        assert (await client.error())["param"] == "response.temperature"
        await client.close()

    run_with_emulator(scenario)


def test_g711_formats_in_and_out() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        formats = {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}}
        formats["output"] = {"format": {"type": "audio/pcma"}}
        await client.send({"type": "session.update", "session": {"type": "realtime", "audio": formats}})
        await client.expect("session.updated")
        mulaw = ulaw_encode(tone(300.0, 0.5, rate=8000))
        await client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(mulaw).decode()})
        await client.send({"type": "input_audio_buffer.commit"})
        await client.expect("input_audio_buffer.committed")
        await client.send({"type": "response.create"})
        events = await client.until("response.done")
        encoded = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
        assert len(encoded) == round(0.9 * 8000)  # one byte per sample at 8 kHz
        audio = PCMA.decode(encoded)
        assert abs(dominant_hz(audio[: round(0.3 * 8000)], 8000) - 440.0) < 15
        assert events[-1]["response"]["usage"]["input_token_details"]["audio_tokens"] == 5  # 0.5 s
        await client.close()

    run_with_emulator(scenario)


def test_g711_codec_matches_the_reference() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13; the reference where present
    samples = np.arange(-32768, 32768, dtype=np.int16)
    pcm = samples.astype("<i2").tobytes()
    assert ulaw_encode(samples) == audioop.lin2ulaw(pcm, 2)
    assert alaw_encode(samples) == audioop.lin2alaw(pcm, 2)
    codes = bytes(range(256))
    assert PCMU.decode(codes).astype("<i2").tobytes() == audioop.ulaw2lin(codes, 2)
    assert PCMA.decode(codes).astype("<i2").tobytes() == audioop.alaw2lin(codes, 2)


# --- untrusted input ---------------------------------------------------------------------------------
GARBAGE: list[tuple[str | bytes, str, str | None]] = [
    (b"\x00\x01binary", "binary_frame_not_supported", None),
    ("not json {", "invalid_json", None),
    ("[" * 100_000 + "]" * 100_000, "invalid_json", None),  # nesting deep enough to hit recursion limits
    ("[1, 2, 3]", "invalid_event", None),
    ("42", "invalid_event", None),
    ('{"event_id": "e1"}', "missing_required_parameter", "type"),
    ('{"type": 7}', "invalid_type", "type"),
    ('{"type": "response.audio.delta"}', "invalid_value", "type"),
    ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_type", "audio"),
    ('{"type": "input_audio_buffer.append", "audio": "@@not base64@@"}', "invalid_value", "audio"),
    (
        '{"type": "input_audio_buffer.append", "audio": "AA=="}',
        "invalid_value",
        "audio",
    ),  # one byte: half a sample
    ('{"type": "input_audio_buffer.commit", "surprise": true}', "unknown_parameter", "surprise"),
    ('{"type": "conversation.item.delete"}', "missing_required_parameter", "item_id"),
    (
        '{"type": "conversation.item.truncate", "item_id": "x", "content_index": 0, "audio_end_ms": "1"}',
        "invalid_type",
        "audio_end_ms",
    ),
    (
        '{"type": "conversation.item.truncate", "item_id": "x", "content_index": 0, "audio_end_ms": 1}',
        "item_not_found",
        "item_id",
    ),
    (
        '{"type": "session.update", "session": {"type": "realtime", "tracing": {"metadata": {"x": NaN}}}}',
        "invalid_json",
        None,
    ),
    (
        '{"type": "session.update", "session": {"type": "realtime", "instructions": 1e400}}',
        "invalid_json",
        None,
    ),
    (
        '{"type": "conversation.item.create", "item": {"type": "message", "role": "robot", "content": []}}',
        "invalid_value",
        "item.role",
    ),
    ('{"type": "response.create", "response": []}', "invalid_type", "response"),
    ('{"type": "response.cancel", "event_id": 12}', "invalid_type", "event_id"),
    ('{"type": "output_audio_buffer.clear"}', "invalid_value", "type"),
]


def test_garbage_frames_each_get_one_error_and_the_connection_stays_usable() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        for frame, code, param in GARBAGE:
            await client.send_raw(frame)
            event = await client.next()
            assert event["type"] == "error", frame[:80]
            assert (event["error"]["code"], event["error"]["param"]) == (code, param), frame[:80]
            assert event["error"]["type"] == "invalid_request_error" and event["event_id"].startswith("event_")
        await client.send_raw('{"type": "nope", "event_id": "evt_echo"}')
        assert (await client.error())["event_id"] == "evt_echo"
        await client.send_raw(
            json.dumps({"type": "input_audio_buffer.append", "event_id": "big", "audio": "A" * (15 * 2**20 + 8)})
        )
        error = await client.error(timeout=10)
        assert (error["code"], error["event_id"]) == ("event_too_large", "big")
        await client.send({"type": "session.update", "event_id": "alive", "session": {"type": "realtime"}})
        await client.expect("session.updated")  # still usable

        over = await open_client(emulator)
        await over.send_raw("x" * (16 * 2**20 + 1))  # beyond max_size: websockets closes with 1009
        assert (await over.wait_closed())[0] == 1009
        await client.close()

    emulator = run_with_emulator(scenario)
    assert {"type": "nope", "event_id": "evt_echo"} in emulator.received


# --- fault injection ---------------------------------------------------------------------------------
def test_inject_and_close_connections_with_a_code() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        injected = {
            "type": "error",
            "event_id": "event_injected",
            "error": {"type": "server_error", "message": "boom"},
        }
        await emulator.inject(injected)
        await emulator.inject("}}} not json")
        assert await client.next() == injected
        assert await client.next() == "}}} not json"
        await emulator.close_connections(1012, "service restart")
        assert await client.wait_closed() == (1012, "service restart")
        with pytest.raises(ValueError):
            await emulator.close_connections(1006)

    emulator = run_with_emulator(scenario)
    assert emulator.connection_count == 0


def test_drop_connections_is_an_abrupt_1006() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        emulator.drop_connections()
        code, _ = await client.wait_closed()
        assert code == 1006
        again = await open_client(emulator)  # the server itself is fine
        await again.close()

    emulator = run_with_emulator(scenario)
    assert emulator.sessions_started == 2


def test_stall_holds_events_and_starves_client_pings() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        emulator.stall()
        await client.send({"type": "input_audio_buffer.clear", "event_id": "held"})
        await asyncio.sleep(0.2)
        assert emulator.received == [] and types_of(client.events) == ["session.created"]
        emulator.stall(False)
        await client.expect("input_audio_buffer.cleared")

        pinging = await open_client(emulator, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2)
        emulator.stall()
        started = time.monotonic()
        await pinging.wait_closed(timeout=5)
        assert pinging.closed_by is not None and pinging.closed_by.sent is not None
        assert (pinging.closed_by.sent.code, pinging.closed_by.sent.reason) == (
            1011,
            "keepalive ping timeout",
        )
        assert pinging.closed_by.rcvd is None  # the stalled server never answered the close either
        assert time.monotonic() - started < 2
        emulator.stall(False)
        await client.close()

    run_with_emulator(scenario)


def test_expire_sessions_via_error_and_via_close() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        await emulator.expire_sessions()
        error = await client.error()
        assert (error["code"], error["message"]) == (
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
        )
        assert await client.wait_closed() == (1001, "Your session hit the maximum duration of 60 minutes.")

        quiet = await open_client(emulator)
        await emulator.expire_sessions(via="close")
        assert await quiet.wait_closed() == (1001, "Your session hit the maximum duration of 60 minutes.")
        assert types_of(quiet.events) == ["session.created"]

    run_with_emulator(scenario)


def test_session_max_s_expires_the_session_by_itself() -> None:
    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        error = await client.error(timeout=3)
        assert error["code"] == "session_expired"
        assert error["message"] == "Your session hit the maximum duration of 0.3 seconds."
        assert (await client.wait_closed())[0] == 1001

    run_with_emulator(scenario, EmulatorSettings(realtime_factor=0, response_delay_s=0.0, session_max_s=0.3))


def test_stop_closes_open_connections_with_1001() -> None:
    async def main() -> tuple[int | None, str | None]:
        emulator = RealtimeEmulator(PACED)
        await emulator.start()
        client = await open_client(emulator)
        emulator.queue_reply(LONG_REPLY)
        await client.send({"type": "response.create"})
        await client.expect("response.created")
        await emulator.stop()
        for event in emulator.sent:
            validate_server_event(event)
        return await client.wait_closed()

    assert asyncio.run(main())[0] == 1001


# --- fuzzing -----------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
KEYS = [
    "event_id",
    "session",
    "audio",
    "item",
    "item_id",
    "previous_item_id",
    "response",
    "response_id",
    "content_index",
    "audio_end_ms",
]
client_like_events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "session.update",
                "input_audio_buffer.append",
                "input_audio_buffer.commit",
                "conversation.item.create",
                "conversation.item.truncate",
                "conversation.item.delete",
                "response.create",
                "response.cancel",
                "input_audio_buffer.clear",
            ]
        )
    },
    optional={key: json_values for key in KEYS},
)
frames = st.one_of(
    json_values.map(json.dumps),
    client_like_events.map(json.dumps),
    st.binary(max_size=16),
    st.text(max_size=30),
)


def send_frames_then_check_order(batch: list[str] | list[str | bytes]) -> None:
    """Send `batch` raw, then a last bad event with a unique id: its error proves every earlier frame was
    processed, in order, on a connection still usable. `run_with_emulator` validates every event sent."""

    async def scenario(emulator: RealtimeEmulator) -> None:
        client = await open_client(emulator)
        for frame in batch:
            await client.send_raw(frame)
        await client.send_raw('{"type": "input_audio_buffer.clear", "event_id": "final-7f3a", "x": 1}')
        async with asyncio.timeout(10):
            while (error := await client.error())["event_id"] != "final-7f3a":
                pass
        assert error["code"] == "unknown_parameter"
        await client.close()

    run_with_emulator(scenario)


@hypothesis_settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=12))
def test_fuzzed_frames_never_break_the_session(batch: list[str | bytes]) -> None:
    """Random frames: JSON of any shape, client-like events with random fields, bytes, text."""
    send_frames_then_check_order(batch)


def one_of_or_garbage(*valid: Any) -> st.SearchStrategy[Any]:
    """Mostly values the server accepts (so they are echoed back and validated), sometimes garbage."""
    return st.sampled_from(valid) | json_values


formats = one_of_or_garbage({"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcmu"}, {"type": "audio/pcma"})
session_updates = st.fixed_dictionaries(
    {"type": st.just("realtime")},
    optional={
        "audio": st.fixed_dictionaries(
            {},
            optional={
                "input": st.fixed_dictionaries(
                    {},
                    optional={
                        "format": formats,
                        "noise_reduction": one_of_or_garbage(None, {"type": "far_field", "strength": 0.5}),
                        "transcription": one_of_or_garbage(None, {"model": "whisper-1", "language": "en"}),
                        "turn_detection": one_of_or_garbage(
                            None,
                            {"type": "server_vad", "threshold": 0.9, "silence_duration_ms": 0},
                            {"type": "semantic_vad", "eagerness": "low"},
                        ),
                    },
                ),
                "output": st.fixed_dictionaries(
                    {}, optional={"format": formats, "voice": one_of_or_garbage("ash", {"id": "voice_1"})}
                ),
            },
        ),
        "instructions": one_of_or_garbage("Be kind.", ""),
        "tools": one_of_or_garbage([], [{"type": "function", "name": "f", "parameters": {"type": "object"}}]),
        "tool_choice": one_of_or_garbage("auto", {"type": "function", "name": "f"}),
        "max_output_tokens": one_of_or_garbage("inf", 4096),
        "tracing": one_of_or_garbage(None, "auto", {"workflow_name": "w", "metadata": {"a": [1]}}),
        "truncation": one_of_or_garbage("disabled", {"type": "retention_ratio", "retention_ratio": 0.5}),
        "prompt": one_of_or_garbage(None, {"id": "pmpt_1", "variables": {"a": "b"}}),
        "reasoning": one_of_or_garbage({"effort": "low"}),
        "output_modalities": one_of_or_garbage(["text"], ["audio"]),
    },
)
items = one_of_or_garbage(
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_audio", "audio": "AAAA", "transcript": "t"}],
    },
    {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "sys"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
    {"type": "function_call", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c", "output": "o"},
)
response_options = st.fixed_dictionaries(
    {},
    optional={
        "output_modalities": one_of_or_garbage(["text"], ["audio"]),
        "conversation": one_of_or_garbage("none", "auto"),
        "metadata": one_of_or_garbage({"k": "v"}),
        "audio": one_of_or_garbage({"output": {"format": {"type": "audio/pcmu"}, "voice": {"id": "v"}}}),
    },
)
mostly_valid_events = st.one_of(
    session_updates.map(lambda session: {"type": "session.update", "session": session}),
    items.map(lambda item: {"type": "conversation.item.create", "item": item}),
    response_options.map(lambda options: {"type": "response.create", "response": options}),
    st.sampled_from(
        [
            {"type": "response.cancel"},
            {"type": "input_audio_buffer.commit"},
            {"type": "input_audio_buffer.append", "audio": "AAAA" * 1200},
        ]
    ),
)


@hypothesis_settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mostly_valid_events.map(json.dumps), min_size=1, max_size=10))
def test_accepted_settings_are_echoed_in_valid_events(batch: list[str]) -> None:
    """Whatever the emulator accepts it echoes (session.updated, items, responses): those echoes must
    stay valid GA events too, which `run_with_emulator` checks."""
    send_frames_then_check_order(batch)


def test_serve_runs_until_cancelled_and_can_skip_recording() -> None:
    async def main() -> None:
        with socket.socket() as probe:  # serve() binds the port it is given; find a free one
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        settings = EmulatorSettings(port=port, realtime_factor=0, response_delay_s=0.0, record_events=False)
        server = asyncio.create_task(serve(settings))
        async with asyncio.timeout(5):
            while True:
                try:
                    ws = await connect(f"ws://127.0.0.1:{port}/v1/realtime?model={MODEL}", max_size=None)
                    break
                except OSError:
                    await asyncio.sleep(0.02)
        async with ws:
            session_created = json.loads(await ws.recv())
            validate_server_event(session_created)
            assert session_created["type"] == "session.created"
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server

    asyncio.run(main())


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        EmulatorSettings(chunk_ms=0)
    with pytest.raises(ValueError):
        EmulatorSettings(amplitude=1.5)
    with pytest.raises(ValueError):
        Tone(-1.0, 0.1)
