"""Session survival, through the session manager and the emulator with faults injected."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LogCapture
from manager_harness import KEY, Managed, run, tone_frames, with_reconnect

from edgevoice.devkit.emulator import EmulatorSettings, FunctionCallReply, RealtimeEmulator, SpokenReply, Tone
from edgevoice.realtime import events as ev
from edgevoice.realtime import server_events as se
from edgevoice.realtime.credentials import StaticSecret
from edgevoice.realtime.manager import Clockwork, ManagerHooks, SessionManager
from edgevoice.realtime.settings import RealtimeSettings, ToolSettings, TranscriptionSettings, UsageSettings
from edgevoice.realtime.tools import Tool, ToolRegistry, command_tool
from edgevoice.realtime.usage import TurnAudio, UsageMeter
from edgevoice.system.logs import quiet_noisy_loggers

PACED = EmulatorSettings(api_key=KEY, realtime_factor=1.0, response_delay_s=0.05, user_transcript="hi")
LONG = SpokenReply("A long answer that takes a while to say.", (Tone(500.0, 2.0),))


@pytest.fixture(autouse=True)
def no_secret_in_any_log_line() -> Iterator[LogCapture]:
    """The API key must never reach a log line, whatever the test does (issue: grep every log line)."""
    capture = LogCapture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    quiet_noisy_loggers()
    yield capture
    root.removeHandler(capture)
    root.setLevel(level)
    assert capture.lines, "nothing was logged: the check would be empty"
    assert not [line for line in capture.lines if KEY in line]


def test_a_turn_and_its_answer() -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            h.talk()
            await h.until(lambda: h.done("completed"))
        return h

    h = run(scenario)
    assert h.link_states == ["connecting", "up"]
    assert [e["type"] for e in h.emulator.received][-2:] == ["input_audio_buffer.commit", "response.create"]
    h.check_conformance()


def test_drop_mid_user_turn_loses_no_audio() -> None:
    """Audio captured while the link is down is kept and sent, in order, once a session is back."""
    frames_before, frames_during = tone_frames(0.4), tone_frames(0.3, 600.0)

    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            for frame in frames_before:
                h.m.append_audio(frame)
            await h.until(lambda: len(h.sent("input_audio_buffer.append")) == len(frames_before))
            h.emulator.drop_connections()
            await h.until(lambda: "down" in h.link_states)
            for frame in frames_during:  # the visitor keeps talking through the outage
                h.m.append_audio(frame)
            h.m.commit_input()
            h.m.create_response()
            await h.up(2)
            await h.until(lambda: h.done("completed"))
        return h

    h = run(scenario)
    appends = h.sent("input_audio_buffer.append")
    # The second session got the whole turn again (its buffer started empty), then the commit and the ask.
    resent = appends[len(frames_before) :]
    assert len(resent) == len(frames_before) + len(frames_during)
    assert resent[-1]["audio"] == ev.audio_append(frames_during[-1])["audio"]
    kinds = [e["type"] for e in h.emulator.received]
    assert kinds[-2:] == ["input_audio_buffer.commit", "response.create"]
    h.check_conformance()


def test_an_outage_longer_than_the_buffer_drops_the_oldest_audio_and_says_so() -> None:
    async def scenario() -> Managed:
        async with Managed(outage_buffer_s=0.2) as h:
            await h.up()
            h.emulator.drop_connections()
            h.emulator.fail_handshakes(503, count=3)
            await h.until(lambda: "down" in h.link_states)
            for frame in tone_frames(0.5):
                h.m.append_audio(frame)
            await h.up(2)
        return h

    h = run(scenario)
    dropped = [n for n in h.notices if n.get("code") == "audio_dropped"]
    assert len(dropped) == 1 and dropped[0]["message"] == "300 ms of audio lost in the outage"
    assert len(h.sent("input_audio_buffer.append")) == 10  # the newest 200 ms were kept and sent


def test_drop_mid_response_reports_the_cut_answer_and_replays_the_context() -> None:
    async def scenario() -> Managed:
        async with Managed(PACED) as h:
            await h.up()
            h.emulator.queue_reply(LONG)
            h.talk()
            await h.until(lambda: any(isinstance(e, se.AudioDelta) for e in h.events))
            h.emulator.drop_connections()
            await h.up(2)
            h.talk()
            await h.until(lambda: h.done("completed"))
        return h

    h = run(scenario)
    cut = h.done("failed")
    assert len(cut) == 1 and cut[0].error_code == "connection_lost"
    # The new session was given the conversation so far: the user's transcript, the answer's heard part.
    replayed = [e["item"] for e in h.sent("conversation.item.create")]
    assert [(i["role"], i["content"][0]["type"]) for i in replayed][:1] == [("user", "input_text")]
    assert replayed[0]["content"][0]["text"] == "hi"
    h.check_conformance()


def test_an_answer_that_never_started_is_asked_for_again() -> None:
    async def scenario() -> Managed:
        async with Managed(EmulatorSettings(api_key=KEY, response_delay_s=5.0, user_transcript="hi")) as h:
            await h.up()
            h.talk()
            await h.until(lambda: h.sent("response.create"))
            h.emulator.set_delay(0.0)
            h.emulator.drop_connections()
            await h.up(2)
            await h.until(lambda: h.done("completed"))
        return h

    h = run(scenario)
    assert len(h.sent("response.create")) == 2 and not h.done("failed")
    h.check_conformance()


def test_a_stalled_server_is_noticed_within_seconds() -> None:
    async def scenario() -> tuple[Managed, float]:
        async with Managed() as h:
            await h.up()
            started = time.monotonic()
            h.emulator.stall()
            await h.until(lambda: "down" in h.link_states, timeout=5)
            detected = time.monotonic() - started
            h.emulator.stall(False)
            await h.up(2)
        return h, detected

    h, detected = run(scenario)
    assert detected < 3.0  # ping every 0.3 s, pong timeout 0.3 s; the next TCP timeout would be minutes
    assert h.links[2].needs_person is False


@pytest.mark.parametrize(
    ("code", "fatal"),
    [(1001, False), (1011, False), (1012, False), (3000, True), (4000, True)],
)
def test_close_codes(code: int, fatal: bool) -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            await h.emulator.close_connections(code, "test")
            await h.up(2)
        return h

    h = run(scenario)
    down = next(s for s in h.links if s.state == "down")
    assert down.needs_person is fatal, down
    if fatal:
        assert down.retry_in_s is not None and down.retry_in_s >= 0.5  # the slow schedule, not the backoff


def test_an_abrupt_drop_is_a_transient_failure() -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            h.emulator.drop_connections()
            await h.up(2)
        return h

    h = run(scenario)
    down = next(s for s in h.links if s.state == "down")
    assert not down.needs_person and down.retry_in_s is not None and down.retry_in_s <= 0.2


@pytest.mark.parametrize(("status", "fatal"), [(401, True), (403, True), (500, False), (503, False)])
def test_handshake_failures(status: int, fatal: bool) -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            h.emulator.fail_handshakes(status)
            await h.up()
        return h

    h = run(scenario)
    down = next(s for s in h.links if s.state == "down")
    assert down.needs_person is fatal and f"HTTP {status}" in down.message
    assert h.link_states[-1] == "up"


def test_http_429_waits_as_long_as_the_server_asks() -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            h.emulator.fail_handshakes(429, retry_after=0.7)
            await h.up()
        return h

    h = run(scenario)
    down = next(s for s in h.links if s.state == "down")
    assert down.retry_in_s is not None and down.retry_in_s >= 0.7 and not down.needs_person
    (failed_at, _), (ok_at, _) = h.m.attempt_log
    assert ok_at - failed_at >= 0.7


def test_requests_never_connect_faster_than_the_backoff_allows() -> None:
    """Regression: each controller request (an image, a say) reconnected at once, 99 handshakes in 20 s
    against a server whose 429 asked for 30 s."""

    async def scenario() -> Managed:
        async with Managed() as h:
            h.emulator.fail_handshakes(429, count=100, retry_after=30)
            await h.until(lambda: len(h.emulator.handshakes) == 1 and "down" in h.link_states)
            for _ in range(25):  # what the conversation does for each request while idle: release, want again
                h.m.disconnect(forget=False)
                await asyncio.sleep(0.02)
                h.m.connect()
                await asyncio.sleep(0.02)
        return h

    h = run(scenario)
    assert len(h.emulator.handshakes) == 1
    down = next(s for s in h.links if s.state == "down")
    assert down.retry_in_s is not None and down.retry_in_s >= 30


def test_session_expired_rolls_over_with_the_context_and_without_a_backoff() -> None:
    for via in ("error", "close"):

        async def scenario(via: str = via) -> Managed:
            async with Managed(reconnect=with_reconnect(healthy_after_s=0.2)) as h:
                await h.up()
                h.talk()
                await h.until(lambda: h.done("completed"))
                await asyncio.sleep(0.3)  # the session was healthy: its end is a rollover
                await h.emulator.expire_sessions(via=via)  # type: ignore[arg-type]
                await h.up(2)
            return h

        h = run(scenario)
        assert h.m.attempts == 0
        replayed = [e["item"] for e in h.sent("conversation.item.create")]
        assert [i["role"] for i in replayed] == ["user", "assistant"]
        assert replayed[1]["content"][0] == {"type": "output_text", "text": "Hello from the edgevoice emulator."}
        h.check_conformance()


def test_rollover_before_the_limit_happens_between_turns_without_a_gap() -> None:
    quiet = {"now": False}

    async def scenario() -> Managed:
        async with Managed(reconnect=with_reconnect(rollover_after_s=0.5), between_turns=lambda: quiet["now"]) as h:
            await h.up()
            h.talk()
            await h.until(lambda: h.done("completed"))
            await asyncio.sleep(1.0)
            assert h.m.connects == 1  # due, but the conversation is mid-turn: wait
            quiet["now"] = True
            await h.up(2)
            h.talk()
            await h.until(lambda: len(h.done("completed")) == 2)
        return h

    h = run(scenario)
    assert "down" not in h.link_states  # make before break: the user never saw the link go
    assert h.emulator.sessions_started >= 2
    assert any(n.get("status") == "rolled_over" for n in h.notices)
    h.check_conformance()


def test_a_rate_limited_answer_holds_the_next_one_as_asked() -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            h.emulator.fail_next_response(message="Rate limit reached for requests. Please try again in 0.8s.")
            h.talk()
            await h.until(lambda: h.done("failed"))
            h.talk()
            await h.until(lambda: h.done("completed"))
        return h

    h = run(scenario)
    (failed,) = h.done("failed")
    assert failed.error_code == "rate_limit_exceeded"
    failed_at = h.time_of(lambda e: isinstance(e, se.ResponseDone) and e.status == "failed")
    next_started = h.time_of(lambda e: isinstance(e, se.ResponseCreated), nth=1)
    assert next_started - failed_at >= 0.75  # the second answer waited as the server asked


def test_only_one_response_is_ever_in_flight() -> None:
    async def scenario() -> Managed:
        async with Managed(PACED) as h:
            await h.up()
            h.talk()
            h.m.create_response()  # e.g. a controller's `speak` right after the turn
            h.m.create_response()
            await h.until(lambda: len(h.done("completed")) == 3, timeout=15)
        return h

    h = run(scenario)
    assert len(h.sent("response.create")) == 3
    h.check_conformance()  # includes: no conversation_already_has_active_response


def _tools(*tools: Tool) -> ToolRegistry:
    registry = ToolRegistry()
    for tool in tools:
        registry.register(tool)
    return registry


async def _slow(call_id: str, arguments: str) -> str:
    await asyncio.sleep(5)
    return "never"


async def _broken(call_id: str, arguments: str) -> str:
    raise RuntimeError("the sensor is unplugged")


async def _echo(call_id: str, arguments: str) -> str:
    return json.dumps({"you_said": json.loads(arguments)})


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (Tool("lookup", "", {"type": "object"}, _echo), '{"you_said": {"q": 1}}'),
        (Tool("lookup", "", {"type": "object"}, _slow, timeout_s=0.3), "did not answer within 0.3 s"),
        (Tool("lookup", "", {"type": "object"}, _broken), "the sensor is unplugged"),
    ],
)
def test_tool_calls_always_get_an_output_then_one_answer(tool: Tool, expected: str) -> None:
    async def scenario() -> Managed:
        async with Managed(PACED, tools=_tools(tool)) as h:
            await h.up()
            h.emulator.queue_reply(FunctionCallReply("lookup", '{"q": 1}'))
            h.talk()
            await h.until(lambda: len(h.done("completed")) == 2, timeout=10)
        return h

    h = run(scenario)
    (output,) = [e for e in h.sent("conversation.item.create") if e["item"]["type"] == "function_call_output"]
    assert expected in output["item"]["output"]
    kinds = [e["type"] for e in h.emulator.received]
    assert kinds.index("response.create", kinds.index("conversation.item.create")) > 0  # output, then the ask
    session = h.sent("session.update")[0]["session"]
    assert session["tools"][0]["name"] == "lookup"
    h.check_conformance()


def test_a_tool_output_that_comes_during_an_outage_reaches_the_next_session_once() -> None:
    """The history replays a finished call with its output: the output must not also wait in the outbox (it
    was sent twice, as a typed `say` once was)."""
    release = asyncio.Event()

    async def slow(call_id: str, arguments: str) -> str:
        await release.wait()
        return '{"ok": true}'

    async def scenario() -> Managed:
        async with Managed(PACED, tools=_tools(Tool("lookup", "", {"type": "object"}, slow))) as h:
            await h.up()
            h.emulator.queue_reply(FunctionCallReply("lookup", "{}"))
            h.talk()
            await h.until(lambda: len(h.done("completed")) == 1 and h.m.tool_calls.busy, what="the call running")
            h.m.disconnect(forget=False)  # the link goes while the tool runs
            await h.until(lambda: h.m.session_id == "", what="the session closed")
            release.set()
            await h.until(lambda: not h.m.tool_calls.busy, what="the output")
            h.m.connect()
            await h.up(2)
            await h.until(lambda: len(h.done("completed")) == 2, what="the answer after the tool")
        return h

    h = run(scenario)
    outputs = [e for e in h.sent("conversation.item.create") if e["item"]["type"] == "function_call_output"]
    assert [json.loads(e["item"]["output"]) for e in outputs] == [{"ok": True}]
    assert not h.errors()
    h.check_conformance()


def test_a_command_tool_and_an_unknown_tool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "battery"
    script.write_text('#!/bin/sh\nread args\necho "{\\"percent\\": 87, \\"args\\": $args}"\n')
    script.chmod(0o755)
    registry = _tools(command_tool(ToolSettings(name="battery", command=(str(script),))))

    async def scenario() -> Managed:
        async with Managed(PACED, tools=registry) as h:
            await h.up()
            h.emulator.queue_reply(FunctionCallReply("battery", '{"unit": "%"}'))
            h.talk()
            await h.until(lambda: len(h.done("completed")) == 2, timeout=10)
            h.emulator.queue_reply(FunctionCallReply("teleport", "{}"))
            h.talk()
            await h.until(lambda: len(h.done("completed")) == 4, timeout=10)
        return h

    h = run(scenario)
    outputs = [
        e["item"]["output"] for e in h.sent("conversation.item.create") if e["item"]["type"] == "function_call_output"
    ]
    assert json.loads(outputs[0]) == {"percent": 87, "args": {"unit": "%"}}
    assert json.loads(outputs[1]) == {"error": "there is no tool named 'teleport'"}
    h.check_conformance()


def test_tools_registered_while_connected_reach_the_session() -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            h.tools.register(Tool("wave", "Wave an arm.", {"type": "object"}, _echo, owner="robot"))
            await h.until(lambda: len(h.sent("session.update")) == 2)
            h.tools.unregister_owner("robot")
            await h.until(lambda: len(h.sent("session.update")) == 3)
        return h

    h = run(scenario)
    updates = [e["session"]["tools"] for e in h.sent("session.update")[1:]]
    assert [t["name"] for t in updates[0]] == ["wave"] and updates[1] == []
    h.check_conformance()


def test_usage_is_priced_and_the_daily_budget_refuses_new_conversations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    meter = UsageMeter(UsageSettings(daily_budget_usd=0.0001, state_dir=str(tmp_path)), "gpt-realtime")

    async def scenario() -> Managed:
        async with Managed(usage=meter) as h:
            await h.up()
            assert h.m.refusal() is None
            h.talk(0.5, TurnAudio(sent_ms=500, speech_ms=400))
            h.m.create_response("Say: anything else?")  # e.g. a controller's `speak`: no turn asked for it
            await h.until(lambda: len(h.done("completed")) == 2)
        return h

    h = run(scenario)
    first, second = [n for n in h.notices if n["event"] == "usage"]
    assert first["usd"] > 0 and first["today"]["responses"] == 1
    # The answer to the turn says what the turn sent (and is billed for) against how long the visitor spoke.
    assert (first["input_audio_s"], first["speech_s"]) == (0.5, 0.4)
    assert first["session"]["tokens"]["audio_in"] == 5  # the emulator bills 1 token per 100 ms, as the server does
    assert "input_audio_s" not in second and "speech_s" not in second
    assert (second["today"]["input_audio_s"], second["today"]["speech_s"], second["today"]["input_per_speech"]) == (
        0.5,
        0.4,
        1.25,
    )
    assert h.m.refusal() is not None and "daily budget" in h.m.refusal()
    again = UsageMeter(UsageSettings(daily_budget_usd=0.0001, state_dir=str(tmp_path)), "gpt-realtime")
    assert again.budget_spent  # a restart does not reset the day's spending (nor its audio figures)
    assert again.snapshot()["today"]["input_per_speech"] == 1.25


def test_a_long_outage_does_not_hammer_the_server() -> None:
    """Regression: a failed handshake once counted as 'a session that had been healthy' and reset the backoff."""

    class VirtualClock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

        async def sleep(self, seconds: float) -> None:
            self.now += seconds
            await asyncio.sleep(0)

    clock = VirtualClock()

    async def scenario() -> list[tuple[float, str]]:
        async with RealtimeEmulator(EmulatorSettings()) as emulator:
            emulator.fail_handshakes(503, count=100_000)
            manager = SessionManager(
                RealtimeSettings(url=emulator.url, transcription=TranscriptionSettings(model="")),  # default backoff
                StaticSecret("k"),
                clockwork=Clockwork(clock=clock, sleep=clock.sleep),
            )
            task = asyncio.create_task(manager.run())
            manager.connect()
            while clock.now < 600 and not task.done():
                await asyncio.sleep(0.005)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return manager.attempt_log

    attempts = run(scenario)
    late = [t for t, _ in attempts if 120 <= t < 600]
    assert 8 <= len(late) <= 60, len(late)  # about 4 a minute once the backoff reached its cap (30 s)


def test_azure_uses_its_ga_path_and_the_api_key_header() -> None:
    async def scenario() -> RealtimeEmulator:
        async with RealtimeEmulator(EmulatorSettings(api_key=KEY)) as emulator:
            azure = RealtimeSettings(
                url=emulator.url.replace("/v1/realtime", "/openai/v1/realtime"),
                provider="azure",
                model="my-deployment",
                transcription=TranscriptionSettings(model=""),
            )
            links: list[Any] = []
            manager = SessionManager(azure, StaticSecret(KEY), ManagerHooks(on_link=links.append))
            task = asyncio.create_task(manager.run())
            manager.connect()
            while not manager.is_up:
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert [s.state for s in links] == ["connecting", "up"]
        return emulator

    emulator = run(scenario)
    (handshake,) = emulator.handshakes
    assert handshake.path == "/openai/v1/realtime" and handshake.query["model"] == "my-deployment"
    assert "api-key" in handshake.headers and "authorization" not in handshake.headers


def test_an_oversized_frame_from_the_server_is_a_transient_failure() -> None:
    async def scenario() -> Managed:
        async with Managed() as h:
            await h.up()
            await h.emulator.inject('{"type": "error", "error": {"message": "' + "x" * (17 * 1024 * 1024) + '"}}')
            await h.up(2)
        return h

    h = run(scenario)
    down = next(s for s in h.links if s.state == "down")
    assert not down.needs_person and "1009" in down.message  # message too big: our 16 MiB limit closed it
