"""The conversation state machine's rules, driven directly (the end-to-end tests drive it for real)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgevoice.config import ConversationSettings
from edgevoice.conversation import Conversation, State
from edgevoice.realtime import events as ev

FRAME = np.zeros(480, np.int16)


class Recorder:
    """Uplink + Link + Playback that record what the conversation asked of them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.playing = False
        self.played = 0.0
        self.received = 0.0

    # Uplink
    def append_audio(self, frame: np.ndarray) -> None:
        self.calls.append(("append",))

    def commit_input(self) -> None:
        self.calls.append(("commit",))

    def clear_input(self) -> None:
        self.calls.append(("clear",))

    def create_response(self) -> None:
        self.calls.append(("response.create",))

    def cancel_response(self) -> None:
        self.calls.append(("response.cancel",))

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.calls.append(("truncate", item_id, audio_end_ms))

    # Link
    def connect(self) -> None:
        self.calls.append(("connect",))

    def disconnect(self) -> None:
        self.calls.append(("disconnect",))

    # Playback
    def push(self, item_id: str, samples: np.ndarray) -> None:
        self.playing = True
        self.received += len(samples) / 24

    def stop(self) -> float:
        self.playing = False
        self.calls.append(("stop",))
        return 0.0

    def played_ms(self, item_id: str) -> float:
        return self.played

    def received_ms(self, item_id: str) -> float:
        return self.received

    @property
    def busy(self) -> bool:
        return self.playing

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(push_to_talk: bool = True, **settings: Any) -> tuple[Conversation, Recorder, list[dict[str, Any]], Clock]:
    rec, emitted, clock = Recorder(), [], Clock()
    conv = Conversation(
        ConversationSettings(**settings),
        push_to_talk=push_to_talk,
        server_interrupts=True,
        playback=rec,
        link=rec,
        emit=emitted.append,
        clock=clock,
    )
    return conv, rec, emitted, clock


def talk(conv: Conversation, rec: Recorder, frames: int = 10) -> None:
    """An open session, then a push-to-talk turn of `frames` 20 ms frames."""
    conv.on_session_ready(rec)
    conv.on_button_pressed()
    for _ in range(frames):
        conv.on_mic_frame(FRAME)
    conv.on_button_released()


def states(emitted: list[dict[str, Any]]) -> list[str]:
    return [e["state"] for e in emitted if e["event"] == "state"]


def answer(conv: Conversation, rec: Recorder, response: str = "r1", item: str = "a1") -> None:
    conv.on_server_event(ev.ResponseCreated(response))
    conv.on_server_event(ev.AudioDelta(response, item, np.ones(2400, np.int16)))
    conv.on_playback_started(item)


def test_push_to_talk_turn_buffers_while_connecting_and_commits_on_release() -> None:
    conv, rec, emitted, clock = make()
    conv.on_button_pressed()
    assert conv.state == State.CONNECTING and rec.names() == ["connect"]
    for _ in range(10):
        conv.on_mic_frame(FRAME)  # the visitor talks before the session is up
    conv.on_session_ready(rec)
    assert rec.names().count("append") == 10 and conv.state == State.LISTENING
    conv.on_mic_frame(FRAME)
    clock.now += 0.5
    conv.on_button_released()
    assert rec.names()[-2:] == ["commit", "response.create"] and conv.state == State.THINKING
    clock.now += 0.3
    answer(conv, rec)
    assert conv.state == State.SPEAKING
    assert next(e for e in emitted if e["event"] == "latency")["ms"] == 300
    conv.on_server_event(ev.ResponseDone("r1", "completed"))
    assert conv.state == State.SPEAKING  # still playing
    rec.playing = False
    conv.on_playback_drained()
    assert states(emitted) == ["connecting", "listening", "thinking", "speaking", "idle"]


def test_release_before_the_session_is_up_still_commits_the_turn() -> None:
    conv, rec, _, _ = make()
    conv.on_button_pressed()
    for _ in range(20):
        conv.on_mic_frame(FRAME)
    conv.on_button_released()
    assert conv.state == State.CONNECTING
    conv.on_session_ready(rec)
    assert rec.names()[-2:] == ["commit", "response.create"] and conv.state == State.THINKING


def test_a_tap_is_too_short_to_commit() -> None:
    conv, rec, emitted, _ = make()
    conv.on_session_ready(rec)
    conv.on_button_pressed()
    conv.on_mic_frame(FRAME)
    conv.on_button_released()
    assert "commit" not in rec.names() and rec.names()[-1] == "clear" and conv.state == State.IDLE
    assert any("too short" in e.get("message", "") for e in emitted)


def test_no_audio_leaves_the_device_unless_a_turn_is_active() -> None:
    conv, rec, _, _ = make()
    conv.on_session_ready(rec)
    conv.on_mic_frame(FRAME)
    assert "append" not in rec.names()


def test_press_while_speaking_interrupts_truncates_to_what_was_played_and_starts_a_turn() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    rec.played = 40.4
    conv.on_button_pressed()
    assert ("truncate", "a1", 40) in rec.calls and "response.cancel" in rec.names() and "stop" in rec.names()
    assert conv.state == State.LISTENING
    # late audio of the interrupted response is dropped
    before = rec.received
    conv.on_server_event(ev.AudioDelta("r1", "a1", np.ones(2400, np.int16)))
    assert rec.received == before
    assert any(e["event"] == "interrupted" and e["played_ms"] == 40 for e in emitted)


def test_truncate_is_clamped_to_what_was_received_and_skipped_after_playback() -> None:
    conv, rec, _, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    rec.played = 10_000.0  # more than the 100 ms received
    conv.on_button_pressed()
    assert ("truncate", "a1", 100) in rec.calls
    # playback already over: no truncate, no cancel of a finished response
    conv, rec, _, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    conv.on_server_event(ev.ResponseDone("r1", "completed"))
    rec.playing = False
    conv.on_playback_drained()
    conv.on_button_pressed()
    assert "truncate" not in rec.names() and "response.cancel" not in rec.names()


def test_server_vad_conversation_follow_up_and_barge_in() -> None:
    conv, rec, emitted, clock = make(push_to_talk=False, follow_up_s=5.0)
    conv.on_button_pressed()
    conv.on_session_ready(rec)
    assert conv.state == State.LISTENING
    conv.on_button_released()  # ignored in VAD mode
    conv.on_server_event(ev.SpeechStarted("u1", 100))
    conv.on_server_event(ev.SpeechStopped("u1", 900))
    assert conv.state == State.THINKING
    answer(conv, rec)
    conv.on_mic_frame(FRAME)  # streams while speaking, so the server hears a barge-in
    assert rec.names()[-1] == "append"
    rec.played = 50.0
    conv.on_server_event(ev.SpeechStarted("u2", 2000))
    assert conv.state == State.LISTENING and ("truncate", "a1", 50) in rec.calls
    assert "response.cancel" not in rec.names()  # interrupt_response: the server cancels by itself
    conv.on_server_event(ev.SpeechStopped("u2", 2600))
    answer(conv, rec, "r2", "a2")
    conv.on_server_event(ev.ResponseDone("r2", "completed"))
    rec.playing = False
    conv.on_playback_drained()
    assert conv.state == State.LISTENING  # follow-up window
    clock.now += 6
    conv.tick()
    assert states(emitted) == [
        "connecting",
        "listening",
        "thinking",
        "speaking",
        "listening",
        "thinking",
        "speaking",
        "listening",
        "idle",
    ]


def test_idle_timeout_closes_the_session_and_keep_warm_reopens_it() -> None:
    for keep_warm in (False, True):
        conv, rec, emitted, clock = make(idle_timeout_s=30, keep_warm=keep_warm)
        conv.start()
        conv.on_session_ready(rec)
        clock.now += 29
        conv.tick()
        assert "disconnect" not in rec.names()
        clock.now += 2
        conv.tick()
        assert "disconnect" in rec.names()
        assert (rec.names()[-1] == "connect") is keep_warm
        assert any(e["event"] == "conversation_ended" for e in emitted)


@pytest.mark.parametrize(("needs_person", "expected"), [(True, State.ERROR), (False, State.OFFLINE)])
def test_session_failures_show_offline_or_error(needs_person: bool, expected: State) -> None:
    conv, rec, emitted, _ = make()
    conv.on_button_pressed()
    conv.on_mic_frame(FRAME)
    conv.on_session_lost("nope", needs_person=needs_person)
    assert conv.state == expected
    assert any(e["event"] == "error" and e["message"] == "nope" for e in emitted)
    assert any("ms of audio lost" in e.get("message", "") for e in emitted)
    conv.on_button_pressed()  # a press tries again
    assert conv.state == State.CONNECTING and rec.names().count("connect") == 2


def test_a_stuck_button_ends_the_turn_after_max_turn_s() -> None:
    conv, rec, _, clock = make(max_turn_s=5)
    conv.on_session_ready(rec)
    conv.on_button_pressed()
    for _ in range(10):
        conv.on_mic_frame(FRAME)
    clock.now += 6
    conv.tick()
    assert conv.state == State.THINKING and "commit" in rec.names()


def test_failed_response_is_reported_and_the_device_returns_to_idle() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    conv.on_server_event(ev.ResponseCreated("r1"))
    conv.on_server_event(ev.ResponseDone("r1", "failed", None, "rate_limit_exceeded", "slow down"))
    assert conv.state == State.IDLE
    assert any(e["event"] == "error" and e["code"] == "rate_limit_exceeded" for e in emitted)
