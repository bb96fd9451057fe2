"""The conversation state machine's rules, driven directly (the end-to-end tests drive it for real)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from edgevoice.audio.preroll import MicFrame, PreRollBuffer
from edgevoice.conversation.machine import Conversation
from edgevoice.conversation.settings import ConversationSettings
from edgevoice.conversation.state import State
from edgevoice.realtime import server_events as se
from edgevoice.realtime.responses import ResponseTracker
from edgevoice.realtime.usage import TurnAudio

FRAME = np.zeros(480, np.int16)


class Recorder:
    """Link + Playback that record what the conversation asked of them. The response lifecycle is the real
    `ResponseTracker`, fed as the session manager feeds it (a request goes out as soon as none is in flight)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.playing = False
        self.played = 0.0
        self.received = 0.0
        self.item: str | None = None
        self.responses = ResponseTracker()
        self.audio: list[np.ndarray] = []  # every frame appended, in order
        self.turns: list[TurnAudio | None] = []  # what each response.create said of the turn it answers

    def _pump(self) -> None:
        self.responses.next_request(0.0)

    # Uplink
    def append_audio(self, frame: np.ndarray) -> None:
        self.calls.append(("append",))
        self.audio.append(frame)

    def commit_input(self) -> None:
        self.calls.append(("commit",))

    def clear_input(self) -> None:
        self.calls.append(("clear",))

    def create_response(
        self, instructions: str | None = None, *, turn: TurnAudio | None = None, owner: str | None = None
    ) -> None:
        self.calls.append(("response.create",) if instructions is None else ("response.create", instructions))
        self.turns.append(turn)
        self.responses.want(instructions, turn, owner)
        self._pump()

    def drop_requests(self, owner: str) -> int:
        return self.responses.drop_owner(owner)

    def send_text(self, text: str) -> None:
        self.calls.append(("text", text))

    def send_image(self, image_url: str, prompt: str | None = None) -> None:
        self.calls.append(("image", image_url[:20], prompt))

    def cancel_response(self, *, server_cancels: bool = False) -> None:
        if not server_cancels:
            self.calls.append(("response.cancel",))
        self.responses.cancel(server_cancels=server_cancels)

    def truncate(self, item_id: str, audio_end_ms: int, received_ms: float) -> None:
        self.calls.append(("truncate", item_id, audio_end_ms))

    # Link
    refused: str | None = None

    def connect(self) -> None:
        self.calls.append(("connect",))

    def disconnect(self, *, forget: bool = True) -> None:
        self.calls.append(("disconnect", forget))
        if forget:
            self.responses.forget()

    def refusal(self) -> str | None:
        return self.refused

    # Playback
    def push(self, item_id: str, samples: np.ndarray) -> None:
        self.playing = True
        self.item = item_id
        self.received += len(samples) / 24

    def stop(self) -> float:
        self.playing = False
        self.item = None
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

    def server(self, conv: Conversation, event: se.ServerEvent) -> None:
        """A server event, through the response lifecycle first, as the session manager passes it on."""
        match event:
            case se.ResponseCreated(response_id=rid):
                self.responses.on_created(rid)
            case se.AudioDelta(response_id=rid):
                self.responses.on_audio(rid)
            case se.ResponseDone(response_id=rid, status=status, function_calls=calls):
                self.responses.on_done(rid, called_tools=bool(calls), completed=status == "completed")
        conv.on_server_event(event)
        if isinstance(event, se.ResponseDone):
            self._pump()


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
    """A push-to-talk turn of `frames` 20 ms frames over a link that is up."""
    conv.on_button_pressed()
    conv.on_link("up")
    for _ in range(frames):
        conv.on_mic_frame(FRAME)
    conv.on_button_released()


def mic(
    conv: Conversation, preroll: PreRollBuffer, clock: Clock, frame: np.ndarray = FRAME, voiced: bool = True
) -> None:
    """A microphone frame, as the daemon hands it on: to the conversation while it streams, else the pre-roll."""
    if conv.streaming:
        conv.on_mic_frame(frame, voiced=voiced)
    elif not conv.muted:
        preroll.add(MicFrame(clock.now - 0.02, frame, False, voiced))  # it arrives as it ends


def states(emitted: list[dict[str, Any]]) -> list[str]:
    return [e["state"] for e in emitted if e["event"] == "state"]


def answer(conv: Conversation, rec: Recorder, response: str = "r1", item: str = "a1") -> None:
    rec.server(conv, se.ResponseCreated(response))
    rec.server(conv, se.AudioDelta(response, item, np.ones(2400, np.int16)))
    conv.on_playback_started(item)


def test_push_to_talk_turn_streams_from_the_press_and_commits_on_release() -> None:
    conv, rec, emitted, clock = make()
    conv.on_button_pressed()
    assert conv.state == State.CONNECTING and rec.names() == ["connect", "clear"]
    for _ in range(10):
        conv.on_mic_frame(FRAME)  # the visitor talks before the session is up: the link keeps it
    assert rec.names().count("append") == 10
    conv.on_link("connecting")
    conv.on_link("up")
    assert conv.state == State.LISTENING
    conv.on_mic_frame(FRAME)
    clock.now += 0.5
    conv.on_button_released()
    assert rec.names()[-2:] == ["commit", "response.create"] and conv.state == State.THINKING
    clock.now += 0.3
    answer(conv, rec)
    assert conv.state == State.SPEAKING
    assert next(e for e in emitted if e["event"] == "latency")["ms"] == 300
    rec.server(conv, se.ResponseDone("r1", "completed"))
    assert conv.state == State.SPEAKING  # still playing
    rec.playing = False
    conv.on_playback_drained()
    assert states(emitted) == ["connecting", "listening", "thinking", "speaking", "idle"]


def test_release_before_the_session_is_up_commits_through_the_link() -> None:
    conv, rec, _emitted, _ = make()
    conv.on_button_pressed()
    for _ in range(20):
        conv.on_mic_frame(FRAME)
    conv.on_button_released()
    assert rec.names()[-2:] == ["commit", "response.create"]  # the session manager sends them once up
    assert conv.state == State.CONNECTING and conv.phase == State.THINKING
    conv.on_link("up")
    assert conv.state == State.THINKING


def test_a_tap_is_too_short_to_commit() -> None:
    conv, rec, emitted, _ = make()
    conv.on_link("up")
    conv.on_button_pressed()
    conv.on_mic_frame(FRAME)
    conv.on_button_released()
    assert "commit" not in rec.names() and rec.names()[-1] == "clear" and conv.state == State.IDLE
    assert any("too short" in e.get("message", "") for e in emitted)


def test_no_audio_leaves_the_device_unless_a_turn_is_active() -> None:
    conv, rec, _, _ = make()
    conv.on_link("up")
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
    rec.server(conv, se.AudioDelta("r1", "a1", np.ones(2400, np.int16)))
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
    rec.server(conv, se.ResponseDone("r1", "completed"))
    rec.playing = False
    conv.on_playback_drained()
    conv.on_button_pressed()
    assert "truncate" not in rec.names() and "response.cancel" not in rec.names()


def test_server_vad_conversation_follow_up_and_barge_in() -> None:
    conv, rec, emitted, clock = make(push_to_talk=False, follow_up_s=5.0)
    conv.on_button_pressed()
    conv.on_link("up")
    assert conv.state == State.LISTENING
    conv.on_button_released()  # ignored in VAD mode
    rec.server(conv, se.SpeechStarted("u1", 100))
    rec.server(conv, se.SpeechStopped("u1", 900))
    assert conv.state == State.THINKING
    answer(conv, rec)
    conv.on_mic_frame(FRAME)  # streams while speaking, so the server hears a barge-in
    assert rec.names()[-1] == "append"
    rec.played = 50.0
    rec.server(conv, se.SpeechStarted("u2", 2000))
    assert conv.state == State.LISTENING and ("truncate", "a1", 50) in rec.calls
    assert "response.cancel" not in rec.names()  # interrupt_response: the server cancels by itself
    rec.server(conv, se.SpeechStopped("u2", 2600))
    answer(conv, rec, "r2", "a2")
    rec.server(conv, se.ResponseDone("r2", "completed"))
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


def test_idle_timeout_forgets_the_conversation_and_keep_warm_reconnects() -> None:
    for keep_warm in (False, True):
        conv, rec, emitted, clock = make(idle_timeout_s=30, keep_warm=keep_warm)
        conv.start()
        talk(conv, rec, frames=1)  # a tap: too short, back to idle with the session open
        clock.now += 29
        conv.tick()
        assert "disconnect" not in rec.names()
        clock.now += 2
        conv.tick()
        assert ("disconnect", True) in rec.calls
        assert (rec.names()[-1] == "connect") is keep_warm
        assert any(e["event"] == "conversation_ended" for e in emitted)


def test_a_failure_that_needs_a_person_shows_error_and_presses_do_not_hammer() -> None:
    conv, rec, emitted, _ = make()
    conv.on_button_pressed()
    conv.on_link("down", "the key was refused", needs_person=True)
    assert conv.state == State.ERROR
    assert (
        next(e for e in emitted if e["event"] == "state" and e["state"] == "error")["reason"] == "the key was refused"
    )
    conv.on_button_pressed()
    assert rec.names().count("connect") == 1  # the manager retries slowly on its own, presses do not
    assert any("cannot talk now" in e.get("message", "") for e in emitted)
    conv.on_link("up")
    assert conv.state == State.LISTENING  # fixed: back where the conversation was


def test_a_transient_failure_shows_offline_and_the_turn_carries_on_when_back() -> None:
    conv, rec, _emitted, clock = make(outage_buffer_s=10)
    talk(conv, rec, frames=0)
    conv.on_button_pressed()
    for _ in range(5):
        conv.on_mic_frame(FRAME)
    conv.on_link("down", "cannot reach the server")
    assert conv.state == State.OFFLINE and conv.phase == State.LISTENING
    for _ in range(5):
        conv.on_mic_frame(FRAME)  # still captured: the session manager keeps it for the next session
    assert rec.names().count("append") == 10
    clock.now += 3
    conv.tick()
    conv.on_link("up")
    assert conv.state == State.LISTENING
    conv.on_button_released()
    assert rec.names()[-2:] == ["commit", "response.create"]


def test_an_outage_longer_than_the_buffer_loses_the_turn_and_says_so() -> None:
    conv, rec, emitted, clock = make(outage_buffer_s=5)
    talk(conv, rec)
    conv.on_link("down", "cannot reach the server")
    assert conv.state == State.OFFLINE and conv.phase == State.THINKING
    clock.now += 6
    conv.tick()
    assert conv.phase == State.IDLE and conv.state == State.IDLE
    assert any(e["event"] == "error" and e["code"] == "turn_lost" for e in emitted)
    assert ("disconnect", False) in rec.calls and "response.cancel" in rec.names()
    conv.on_button_pressed()
    assert rec.names().count("connect") == 2  # a press reconnects


def test_a_drop_while_idle_waits_for_the_next_press_and_keeps_the_context() -> None:
    conv, rec, _emitted, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    rec.server(conv, se.ResponseDone("r1", "completed"))
    rec.playing = False
    conv.on_playback_drained()
    conv.on_link("down", "connection lost")
    assert conv.state == State.IDLE and ("disconnect", False) in rec.calls
    conv.on_button_pressed()
    assert rec.names().count("connect") == 2


def test_the_daily_budget_stops_new_conversations_until_it_resets() -> None:
    conv, rec, _emitted, _ = make()
    rec.refused = "the daily budget of $1.00 is spent"
    conv.on_button_pressed()
    assert conv.state == State.ERROR and "connect" not in rec.names()
    rec.refused = None
    conv.tick()
    assert conv.state == State.IDLE


def test_a_tool_call_keeps_the_device_thinking_until_the_answer_plays() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    rec.server(conv, se.ResponseCreated("r1"))
    rec.server(conv, se.FunctionCall("r1", "fc1", "call_1", "battery", "{}"))
    rec.server(conv, se.ResponseDone("r1", "completed", function_calls=("call_1",)))
    assert conv.state == State.THINKING
    assert any(e["event"] == "tool_call" and e["name"] == "battery" for e in emitted)
    answer(conv, rec, "r2", "a2")
    assert conv.state == State.SPEAKING


def test_an_answer_cut_by_a_lost_connection_plays_what_arrived_then_ends() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    rec.server(conv, se.ResponseDone("r1", "failed", None, "connection_lost", "the connection dropped"))
    assert conv.state == State.SPEAKING
    rec.playing = False
    conv.on_playback_drained()
    assert conv.phase == State.IDLE
    assert any(e.get("code") == "connection_lost" for e in emitted)


def test_between_turns_tells_when_a_session_can_be_swapped() -> None:
    conv, rec, _, _ = make(push_to_talk=False)
    assert conv.between_turns
    conv.on_button_pressed()
    conv.on_link("up")
    assert conv.between_turns  # listening, nobody talking
    rec.server(conv, se.SpeechStarted("u1", 0))
    assert not conv.between_turns
    rec.server(conv, se.SpeechStopped("u1", 500))
    assert not conv.between_turns  # thinking


def test_a_stuck_button_ends_the_turn_after_max_turn_s() -> None:
    conv, rec, _, clock = make(max_turn_s=5)
    conv.on_link("up")
    conv.on_button_pressed()
    for _ in range(10):
        conv.on_mic_frame(FRAME)
    clock.now += 6
    conv.tick()
    assert conv.state == State.THINKING and "commit" in rec.names()


def test_failed_response_is_reported_and_the_device_returns_to_idle() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    rec.server(conv, se.ResponseCreated("r1"))
    rec.server(conv, se.ResponseDone("r1", "failed", None, "rate_limit_exceeded", "slow down"))
    assert conv.state == State.IDLE
    assert any(e["event"] == "error" and e["code"] == "rate_limit_exceeded" for e in emitted)


def test_a_tap_interrupts_the_answer_and_a_vad_tap_starts_and_ends_a_conversation() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    rec.played = 30.0
    conv.on_converse()  # push-to-talk: a tap while it talks stops it, and that is all
    assert ("truncate", "a1", 30) in rec.calls and conv.phase == State.IDLE
    conv.on_converse()
    assert any("hold the button" in e.get("message", "") for e in emitted)
    vad, rec2, _, _ = make(push_to_talk=False)
    vad.on_converse()
    vad.on_link("up")
    assert vad.state == State.LISTENING and rec2.names()[0] == "connect"
    vad.on_converse()
    assert vad.phase == State.IDLE and ("disconnect", True) in rec2.calls


def test_end_forgets_the_conversation_even_mid_answer() -> None:
    conv, rec, emitted, _ = make()
    talk(conv, rec)
    answer(conv, rec)
    conv.end_conversation()
    assert conv.phase == State.IDLE and ("disconnect", True) in rec.calls and "response.cancel" in rec.names()
    assert any(e["event"] == "conversation_ended" for e in emitted)


def test_mute_cuts_the_microphone_and_shows_at_all_times() -> None:
    conv, rec, emitted, clock = make()
    preroll = conv.preroll = PreRollBuffer()
    mic(conv, preroll, clock)  # before the press: into the pre-roll
    conv.on_button_pressed()
    conv.on_link("up")
    mic(conv, preroll, clock)
    conv.set_muted(True)
    assert conv.state == State.MUTED and conv.phase == State.IDLE and rec.names()[-1] == "clear"
    appended = rec.names().count("append")
    mic(conv, preroll, clock)
    conv.on_button_pressed()  # refused: unmute first
    mic(conv, preroll, clock)
    clock.now += 0.1
    assert rec.names().count("append") == appended and conv.state == State.MUTED
    assert {"event": "mute", "muted": True} in emitted
    conv.set_muted(False)
    assert conv.state == State.IDLE
    conv.on_button_pressed(pressed_at=0.0)  # nothing of the muted time leaks through the pre-roll
    assert rec.names().count("append") == appended


def test_push_to_talk_starts_from_the_moment_of_the_press() -> None:
    """A hold is only known after hold_ms: the pre-roll supplies the audio from the press on."""
    conv, rec, _, clock = make()
    preroll = conv.preroll = PreRollBuffer()
    conv.on_link("up")
    for _ in range(20):  # 400 ms of room noise before the press
        clock.now += 0.02
        mic(conv, preroll, clock)
    pressed_at = clock.now
    for _ in range(12):  # the first 240 ms of speech, before the hold is recognised
        clock.now += 0.02
        mic(conv, preroll, clock)
    conv.on_button_pressed(pressed_at=pressed_at)
    assert rec.names().count("append") == 12  # exactly the frames since the press, none from before
    mic(conv, preroll, clock)
    assert rec.names().count("append") == 13  # then the stream, and nothing twice


# ---- push-to-talk pays for the speech, not the waits around it -----------------------------------------


def labelled(i: int) -> np.ndarray:
    """A frame that says which it is: every sample is `i`."""
    return np.full(480, i, np.int16)


def labels(rec: Recorder) -> list[int]:
    return [int(frame[0]) for frame in rec.audio]


def test_push_to_talk_sends_the_speech_and_its_margins_not_the_waits() -> None:
    """Press, wait 0.5 s, speak 1 s, wait 0.6 s, let go: the server gets 0.3 s, the speech and 0.4 s."""
    conv, rec, _, clock = make()
    preroll = conv.preroll = PreRollBuffer()
    conv.on_link("up")
    voiced = [False] * 25 + [True] * 50 + [False] * 30
    pressed_at = clock.now
    for i in range(len(voiced)):
        if i == 13:  # the hold is recognised: the pre-roll gives the frames since the press
            conv.on_button_pressed(pressed_at=pressed_at)
            assert rec.audio == []  # nothing said yet: nothing sent
        clock.now += 0.02
        mic(conv, preroll, clock, labelled(i), voiced[i])
    sent_while_held = len(rec.audio)
    conv.on_button_released()
    assert len(rec.audio) == sent_while_held, "the release sent more: the commit waited for it"
    assert rec.names()[-2:] == ["commit", "response.create"]
    assert labels(rec) == list(range(25 - 15, 75 + 20))  # 300 ms before the speech, 400 ms after it
    assert rec.turns == [TurnAudio(sent_ms=85 * 20, speech_ms=50 * 20)]


def test_a_turn_without_speech_goes_up_whole_at_the_release_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    conv, rec, _, _ = make()
    conv.on_link("up")
    conv.on_button_pressed()
    for i in range(50):
        conv.on_mic_frame(labelled(i), voiced=False)
    assert rec.audio == []
    with caplog.at_level(logging.INFO, logger="edgevoice.conversation.core"):
        conv.on_button_released()
    assert labels(rec) == list(range(50)) and rec.names()[-2:] == ["commit", "response.create"]
    assert rec.turns == [TurnAudio(sent_ms=1000, speech_ms=0)]
    assert "no speech detected" in caplog.text


def test_trimming_can_be_switched_off_and_the_speech_is_still_measured() -> None:
    conv, rec, _, _ = make(trim_silence=False)
    conv.on_link("up")
    conv.on_button_pressed()
    for i, voiced in enumerate([False] * 25 + [True] * 20 + [False] * 25):
        conv.on_mic_frame(labelled(i), voiced=voiced)
        assert len(rec.audio) == i + 1  # each frame at once
    conv.on_button_released()
    assert rec.turns == [TurnAudio(sent_ms=70 * 20, speech_ms=20 * 20)]


def test_with_a_server_vad_nothing_is_trimmed() -> None:
    conv, rec, _, _ = make(push_to_talk=False)
    conv.on_button_pressed()
    conv.on_link("up")
    for i in range(30):
        conv.on_mic_frame(labelled(i), voiced=False)
    assert labels(rec) == list(range(30))  # the server decides what a turn is
