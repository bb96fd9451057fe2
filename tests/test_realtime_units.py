"""Pure pieces of session survival: the retry policy, the history replay, usage pricing, ephemeral secrets."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from edgevoice.realtime.credentials import CredentialsError, EphemeralSecrets, TokenUnavailable
from edgevoice.realtime.failures import SessionError, classify_close
from edgevoice.realtime.history import ConversationHistory
from edgevoice.realtime.retry import RetryPolicy, retry_after_from_message
from edgevoice.realtime.session import RealtimeSession
from edgevoice.realtime.settings import ModelPrice, RealtimeSettings, ReconnectSettings, UsageSettings
from edgevoice.realtime.usage import UsageMeter, tokens_of

# ---- retry ----------------------------------------------------------------------------------------------


def test_full_jitter_stays_under_an_exponential_ceiling_capped() -> None:
    policy = RetryPolicy(ReconnectSettings(backoff_base_s=0.5, backoff_cap_s=30), random.Random(0))
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (40, 30.0)]:
        delays = [policy.backoff(attempt) for _ in range(2000)]
        assert max(delays) <= ceiling and min(delays) >= 0.05
        assert max(delays) > 0.8 * ceiling  # spread over the whole range: full jitter, not a fixed step


@pytest.mark.parametrize(
    ("error", "fatal", "min_delay"),
    [
        (SessionError("network", "x"), False, 0.0),
        (SessionError("server", "HTTP 503", status=503), False, 0.0),
        (SessionError("auth", "HTTP 401", status=401), True, 270.0),
        (SessionError("quota", "no credit"), True, 270.0),
        (SessionError("protocol", "HTTP 404"), True, 270.0),
        (SessionError("rate_limit", "HTTP 429", retry_after_s=42.0), False, 42.0),
        (SessionError("rate_limit", "Please try again in 1m."), False, 60.0),
    ],
)
def test_failures_are_classified(error: SessionError, fatal: bool, min_delay: float) -> None:
    decision = RetryPolicy(ReconnectSettings(), random.Random(1)).after(error, attempt=0)
    assert decision.needs_person is fatal and decision.delay_s >= min_delay and decision.counts_as_failure


def test_a_session_at_its_limit_is_a_rollover_not_a_failure() -> None:
    decision = RetryPolicy(ReconnectSettings()).after(classify_close(1001, "going away"), attempt=5)
    assert decision.delay_s == 0 and not decision.counts_as_failure
    assert classify_close(1000, "").kind == "closed" and classify_close(3000, "").kind == "auth"
    assert classify_close(4000, "").needs_person and classify_close(1006, "").kind == "network"


@pytest.mark.parametrize(
    ("message", "seconds"),
    [("Please try again in 20s.", 20.0), ("try again in 850ms", 0.85), ("Try again in 2m", 120.0), ("nope", None)],
)
def test_retry_after_is_read_from_rate_limit_messages(message: str, seconds: float | None) -> None:
    assert retry_after_from_message(message) == seconds


# ---- history --------------------------------------------------------------------------------------------


def test_history_replays_in_order_with_ids_and_cuts_what_was_not_heard() -> None:
    history = ConversationHistory()
    history.on_item("u1", "user")
    history.on_item("a1", "assistant")
    history.on_text("a1", "assistant", "one two ", final=False)
    history.on_text("u1", "user", "hello there", final=True)  # transcripts arrive out of order
    history.on_text("a1", "assistant", "one two three four five six seven eight", final=True)
    history.on_truncate("a1", heard_ms=500, received_ms=1000)
    history.on_item("u2", "user")  # no transcript: cannot be replayed as text
    history.add_tool_call("fc1", "call_1", "battery", '{"unit":"%"}')
    history.add_tool_output("call_1", '{"percent": 80}')
    replay = history.replay()
    assert [e["item"]["type"] for e in replay] == ["message", "message", "function_call", "function_call_output"]
    assert replay[0]["item"] == {
        "id": "u1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}],
    }  # fmt: skip
    assert replay[1]["item"]["content"] == [{"type": "output_text", "text": "one two three four..."}]
    assert replay[2]["item"]["call_id"] == "call_1" and replay[3]["item"]["output"] == '{"percent": 80}'
    history.on_item("u1", "user")  # the new session announces the replayed item: not a new one
    assert len(history.replay()) == 4


def test_history_replay_is_bounded_and_keeps_the_newest() -> None:
    history = ConversationHistory()
    for i in range(300):
        history.add_text(f"i{i}", "user" if i % 2 == 0 else "assistant", "x" * 500)
    replay = history.replay()
    assert 0 < len(replay) <= 80 and replay[-1]["item"]["id"] == "i299"


# ---- usage ----------------------------------------------------------------------------------------------

USAGE = {
    "total_tokens": 1500,
    "input_tokens": 1000,
    "output_tokens": 500,
    "input_token_details": {
        "text_tokens": 400, "audio_tokens": 600, "image_tokens": 0, "cached_tokens": 300,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 200},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 400},
}  # fmt: skip


def test_tokens_are_split_into_cached_and_fresh_and_priced() -> None:
    tokens = tokens_of(USAGE)
    assert (tokens.text_in, tokens.text_in_cached, tokens.audio_in, tokens.audio_in_cached) == (300, 100, 400, 200)
    assert (tokens.text_out, tokens.audio_out) == (100, 400)
    price = ModelPrice("m", text_in=4, text_in_cached=0.4, audio_in=32, audio_in_cached=0.4, text_out=16, audio_out=64)
    expected = (300 * 4 + 100 * 0.4 + 400 * 32 + 200 * 0.4 + 100 * 16 + 400 * 64) / 1e6
    assert tokens.cost(price) == pytest.approx(expected)
    assert tokens_of({"input_tokens": "lots", "output_token_details": None}).total == 0  # malformed: 0, no crash


def test_the_day_rolls_over_and_prices_can_be_overridden(tmp_path: Path) -> None:
    day = [datetime.date(2026, 11, 21)]
    meter = UsageMeter(
        UsageSettings(
            daily_budget_usd=0.01, state_dir=str(tmp_path), prices=(ModelPrice("gpt-realtime", audio_out=100),)
        ),
        "gpt-realtime",
        today=lambda: day[0],
    )
    meter.add(USAGE)
    assert meter.day_cost == pytest.approx(400 * 100 / 1e6) and meter.budget_spent
    assert json.loads((tmp_path / "usage.json").read_text())["date"] == "2026-11-21"
    day[0] = datetime.date(2026, 11, 22)
    assert not meter.budget_spent and meter.snapshot()["today"]["usd"] == 0


# ---- ephemeral secrets ------------------------------------------------------------------------------------


class TokenService(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    TokenService.answers, TokenService.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}/secret"
    server.shutdown()


def test_ephemeral_secrets_are_fetched_reused_and_renewed(token_service: str) -> None:
    import time

    TokenService.answers = [
        (200, json.dumps({"value": "ek_first", "expires_at": time.time() + 600}).encode()),
        (200, json.dumps({"client_secret": {"value": "ek_second", "expires_at": time.time() + 30}}).encode()),
        (200, json.dumps({"value": "ek_third"}).encode()),
    ]
    secrets = EphemeralSecrets(token_service, device_token="dev-token")

    async def scenario() -> list[str]:
        got = [await secrets.secret(), await secrets.secret()]  # the second reuses the first
        secrets._expires_at = time.time() + 10  # about to expire: fetch a new one
        got.append(await secrets.secret())
        got.append(await secrets.secret())  # expires within a minute: fetch again
        return got

    assert asyncio.run(scenario()) == ["ek_first", "ek_first", "ek_second", "ek_third"]
    assert TokenService.seen == ["Bearer dev-token"] * 3


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, b"{}", CredentialsError),
        (500, b"{}", TokenUnavailable),
        (200, b"<html>captive portal</html>", TokenUnavailable),
        (200, b'{"value": ""}', TokenUnavailable),
    ],
)
def test_token_service_failures_are_classified(token_service: str, status: int, body: bytes, error: type) -> None:
    TokenService.answers = [(status, body)]
    with pytest.raises(error):
        asyncio.run(EphemeralSecrets(token_service).secret())


def test_an_unreachable_token_service_is_transient() -> None:
    with pytest.raises(TokenUnavailable, match="cannot reach the token service"):
        asyncio.run(EphemeralSecrets("http://127.0.0.1:9/secret", timeout_s=2).secret())


def test_audio_held_for_a_batch_goes_before_anything_sent_after_it() -> None:
    async def scenario() -> list[tuple[str, int]]:
        session = RealtimeSession(RealtimeSettings(url="ws://127.0.0.1:9/v1/realtime"), "", on_event=lambda e: None)
        frame = np.ones(480, np.int16)
        for _ in range(7):
            session.append_audio(frame, batch=2400)  # five frames make a batch: one goes, two are held
        session.commit_input()  # the held frames go first
        session.append_audio(frame)  # no batch: at once
        sent = []
        while not session._outbox.empty():
            event = json.loads(session._outbox.get_nowait())
            sent.append((event["type"], len(event.get("audio", "")) * 3 // 4 // 2))
        return sent

    assert asyncio.run(scenario()) == [
        ("input_audio_buffer.append", 2400),
        ("input_audio_buffer.append", 960),
        ("input_audio_buffer.commit", 0),
        ("input_audio_buffer.append", 480),
    ]
