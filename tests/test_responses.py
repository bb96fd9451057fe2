"""The response lifecycle (ResponseTracker), driven as the session manager drives it: pure logic."""

from __future__ import annotations

from edgevoice.realtime.responses import DROPPED_KEPT, MAX_WAITING, ResponseTracker, Stage
from edgevoice.realtime.usage import TurnAudio


def asked(tracker: ResponseTracker, instructions: str | None = None, now: float = 0.0) -> None:
    tracker.want(instructions)
    request = tracker.next_request(now)
    assert request is not None and request.instructions == instructions


def test_one_response_at_a_time_and_the_next_after_the_done() -> None:
    t = ResponseTracker()
    asked(t)
    t.want("say: battery low")
    assert t.next_request(0.0) is None  # one in flight
    assert t.answers_coming == 2
    assert not t.on_created("r1") and t.asked_for("r1") and t.answer_streaming
    assert t.answers_coming == 1
    t.on_done("r1", called_tools=False, completed=True)
    assert not t.answer_streaming and t.in_flight is None
    request = t.next_request(0.0)
    assert request is not None and request.instructions == "say: battery low"


def test_a_response_the_server_starts_by_itself_is_not_ours() -> None:
    t = ResponseTracker()
    assert not t.on_created("vad1")
    assert t.answer_streaming and not t.asked_for("vad1") and t.answers_coming == 0
    t.want()
    assert t.next_request(0.0) is None  # waits for the server's own answer to end
    t.on_done("vad1", called_tools=False, completed=True)
    assert t.next_request(0.0) is not None


def test_a_cancel_before_the_response_exists_cancels_it_when_it_is_created() -> None:
    t = ResponseTracker()
    asked(t)
    t.want("another")
    assert not t.cancel()  # nothing to cancel on the server yet
    assert t.answers_coming == 1  # the one asked for; the one waiting is dropped
    assert t.on_created("r1")  # cancel it now
    assert t.dropped("r1") and not t.answer_streaming


def test_a_barge_in_drops_the_answer_and_what_waits_unless_the_server_cancels_by_itself() -> None:
    t = ResponseTracker()
    asked(t)
    t.on_created("r1")
    t.want("queued")
    assert t.cancel(server_cancels=True) is False  # the server cancels: nothing to send, the queue stays
    assert t.dropped("r1") and t.answers_coming == 1
    t2 = ResponseTracker()
    asked(t2)
    t2.on_created("r1")
    t2.want("queued")
    assert t2.cancel() is True and t2.answers_coming == 0


def test_tools_are_awaited_after_a_completed_response_that_called_them() -> None:
    t = ResponseTracker()
    asked(t)
    t.on_created("r1")
    t.on_done("r1", called_tools=True, completed=True)
    assert t.awaiting_tools
    asked(t)
    t.on_created("r2")
    assert not t.awaiting_tools
    t.on_done("r2", called_tools=True, completed=False)  # cancelled: no answer comes after its tools
    assert not t.awaiting_tools


def test_refused_as_busy_our_answer_waits_for_the_servers_to_end_or_a_fallback() -> None:
    t = ResponseTracker()
    asked(t, "mine")
    t.on_refused()
    assert t.in_flight is not None and t.in_flight.stage is Stage.REFUSED and t.answers_coming == 1
    assert t.next_request(0.0) is None
    assert t.give_up_waiting()
    request = t.next_request(0.0)
    assert request is not None and request.instructions == "mine"
    t.on_refused()
    assert t.on_link_lost() is None and t.answers_coming == 1  # asked again once, not twice


def test_a_rate_limit_holds_the_next_request() -> None:
    t = ResponseTracker()
    t.hold(10.0)
    t.want()
    assert t.next_request(5.0) is None and t.wait_s(5.0) == 5.0
    assert t.next_request(10.0) is not None


def test_a_lost_link_asks_again_for_an_answer_never_heard_and_reports_one_cut() -> None:
    t = ResponseTracker()
    asked(t, "first")
    t.on_created("r1")
    assert t.on_link_lost() is None  # no audio yet: asked again in the next session
    request = t.next_request(0.0)
    assert request is not None and request.instructions == "first"
    t.on_created("r2")
    t.on_audio("r2")
    cut = t.on_link_lost()
    assert cut is not None and cut.response_id == "r2" and t.answers_coming == 0
    asked(t)
    t.on_created("r3")
    t.cancel()
    assert t.on_link_lost() is None and t.answers_coming == 0  # cancelled: neither reported nor asked again


def test_cancelled_ids_are_bounded() -> None:
    t = ResponseTracker()
    for i in range(DROPPED_KEPT * 3):
        asked(t)
        t.on_created(f"r{i}")
        t.cancel()
        t.on_done(f"r{i}", called_tools=False, completed=False)
    assert len(t._dropped) == DROPPED_KEPT and t.dropped(f"r{DROPPED_KEPT * 3 - 1}")


def test_the_answers_waiting_are_bounded() -> None:
    t = ResponseTracker()
    for _ in range(MAX_WAITING):
        assert not t.full
        t.want("say something")
    assert t.full
    t.cancel()
    assert not t.full


def test_the_turn_an_answer_was_asked_for_stays_with_it_until_its_done() -> None:
    t = ResponseTracker()
    turn = TurnAudio(sent_ms=1700, speech_ms=1000)
    t.want(None, turn)
    assert t.next_request(0.0) is not None
    t.on_refused()  # the server was busy with its own: ours goes again later, with its turn
    assert t.on_created("theirs") is False and t.turn_of("theirs") is None
    t.on_done("theirs", called_tools=False, completed=True)
    assert t.next_request(0.0) is not None
    t.on_created("r1")
    assert t.on_link_lost() is None  # never heard: asked again in the next session, with its turn
    assert t.next_request(0.0) is not None
    t.on_created("r2")
    assert t.turn_of("r2") == turn and t.turn_of("r1") is None
    t.on_done("r2", called_tools=False, completed=True)
    assert t.turn_of("r2") is None
    t.want("say: hello")  # an answer no turn asked for
    t.next_request(0.0)
    t.on_created("r3")
    assert t.turn_of("r3") is None


def test_a_departed_controller_leaves_at_most_one_answer_and_others_keep_theirs() -> None:
    """Regression (issue 15): 807 billed answers from one client, still speaking 60 s after it left."""
    t = ResponseTracker()
    t.want("flood 0", owner="robot")
    request = t.next_request(0.0)
    assert request is not None and request.owner == "robot"
    for i in range(1, 5):
        t.want(f"flood {i}", owner="robot")
    t.want("other 0", owner="panel")
    t.want("device's own")
    assert t.drop_owner("robot") == 4  # its answer in flight goes on; the four waiting are dropped
    assert t.in_flight is not None and t.in_flight.instructions == "flood 0"
    t.on_created("r1")
    t.on_done("r1", called_tools=False, completed=True)
    left = []
    while (request := t.next_request(0.0)) is not None:
        left.append(request.instructions)
        t.in_flight = None
    assert left == ["other 0", "device's own"]


def test_a_controller_that_asks_and_leaves_is_still_answered_once() -> None:
    """`edgevoice ctl speak` connects, asks and leaves: its one answer must not be lost behind another."""
    t = ResponseTracker()
    asked(t, "the answer playing")
    t.want("battery low", owner="ctl")
    t.want("and again", owner="ctl")
    assert t.drop_owner("ctl") == 1
    assert t.answers_coming == 2  # the one asked for, and the controller's first
    t.on_created("r1")
    t.on_done("r1", called_tools=False, completed=True)
    request = t.next_request(0.0)
    assert request is not None and request.instructions == "battery low"


def test_a_departed_controllers_answer_refused_as_busy_is_kept_once() -> None:
    t = ResponseTracker()
    t.want("mine", owner="robot")
    assert t.next_request(0.0) is not None
    t.on_refused()  # queued again, in front
    t.want("mine too", owner="robot")
    assert t.drop_owner("robot") == 1
    t.on_done("vad1", called_tools=False, completed=True)
    request = t.next_request(0.0)
    assert request is not None and request.instructions == "mine" and t.next_request(0.0) is None
