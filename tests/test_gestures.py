"""Gesture recognition on made-up times: no GPIO, no event loop, every rule and its edges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgevoice.hw.gestures import (
    ButtonAction,
    GestureRecognizer,
    GestureTiming,
    gesture_problems,
    resolve_actions,
)
from edgevoice.hw.settings import ButtonSettings

TIMING = GestureTiming(hold_s=0.25, long_press_s=1.0, double_press_s=0.3)
PTT = resolve_actions(ButtonSettings(), push_to_talk=True)
VAD = resolve_actions(ButtonSettings(), push_to_talk=False)


def run(edges: list[tuple[str, float]], actions: dict, end: float = 10.0, timers: bool = True) -> list[tuple]:
    """Feed edges; with `timers`, fire each deadline on time as a loop timer would (else only at the edges)."""
    out: list[ButtonAction] = []
    recognizer = GestureRecognizer("button", actions, TIMING, out.append)

    def advance(t: float) -> None:
        while timers and (deadline := recognizer.deadline()) is not None and deadline <= t:
            recognizer.poll(deadline)

    for kind, t in edges:
        advance(t)
        getattr(recognizer, kind)(t)
    advance(end)
    recognizer.poll(end)
    assert recognizer.idle
    return [(a.gesture, a.action, a.phase, round(a.pressed_at, 3), round(a.at, 3)) for a in out]


def test_auto_actions_follow_the_turn_detection() -> None:
    assert PTT == {"hold": "talk", "short_press": "converse", "double_press": "mute"}
    assert VAD == {"short_press": "converse", "long_press": "end", "double_press": "mute"}
    custom = ButtonSettings(hold="none", short_press="mute", long_press="none", double_press="none")
    assert resolve_actions(custom, push_to_talk=True) == {"short_press": "mute"}


def test_hold_is_push_to_talk_with_the_press_time_for_pre_roll() -> None:
    assert run([("press", 0.0), ("release", 2.0)], PTT) == [
        ("hold", "talk", "start", 0.0, 0.25),
        ("hold", "talk", "end", 0.0, 2.0),
    ]


def test_a_tap_is_a_short_press_once_no_second_press_follows() -> None:
    assert run([("press", 0.0), ("release", 0.1)], PTT) == [("short_press", "converse", "once", 0.0, 0.4)]


def test_double_press_is_reported_at_the_second_press_and_the_rest_is_swallowed() -> None:
    assert run([("press", 0.0), ("release", 0.1), ("press", 0.35), ("release", 0.45)], PTT) == [
        ("double_press", "mute", "once", 0.0, 0.35)
    ]
    # A second press that is held: still only the double press, no hold.
    assert run([("press", 0.0), ("release", 0.1), ("press", 0.3), ("release", 3.0)], PTT) == [
        ("double_press", "mute", "once", 0.0, 0.3)
    ]


def test_two_taps_further_apart_than_the_gap_are_two_short_presses() -> None:
    assert run([("press", 0.0), ("release", 0.1), ("press", 0.5), ("release", 0.6)], PTT) == [
        ("short_press", "converse", "once", 0.0, 0.4),
        ("short_press", "converse", "once", 0.5, 0.9),
    ]


def test_a_hold_after_a_hold_is_not_a_double_press() -> None:
    edges = [("press", 0.0), ("release", 1.0), ("press", 1.1), ("release", 2.0)]
    assert [e[:3] for e in run(edges, PTT)] == [("hold", "talk", "start"), ("hold", "talk", "end")] * 2


def test_hold_alone_starts_at_once() -> None:
    assert run([("press", 1.0), ("release", 1.05)], {"hold": "talk"}) == [
        ("hold", "talk", "start", 1.0, 1.0),
        ("hold", "talk", "end", 1.0, 1.05),
    ]


def test_long_press_is_reported_while_held_and_its_release_swallowed() -> None:
    assert run([("press", 0.0), ("release", 2.5)], VAD) == [("long_press", "end", "once", 0.0, 1.0)]
    assert run([("press", 0.0), ("release", 0.9)], VAD) == [("short_press", "converse", "once", 0.0, 1.2)]


def test_without_a_double_press_a_short_press_is_reported_at_the_release() -> None:
    assert run([("press", 0.0), ("release", 0.2)], {"short_press": "converse"}) == [
        ("short_press", "converse", "once", 0.0, 0.2)
    ]


def test_a_hold_mapped_to_another_action_fires_once() -> None:
    assert run([("press", 0.0), ("release", 0.6)], {"hold": "mute", "short_press": "converse"}) == [
        ("hold", "mute", "once", 0.0, 0.25)
    ]


def test_late_timers_still_give_the_right_times() -> None:
    """If the loop is late, the next edge fires what was due first, at the time it was due."""
    assert run([("press", 0.0), ("release", 2.0)], PTT, timers=False) == [
        ("hold", "talk", "start", 0.0, 0.25),
        ("hold", "talk", "end", 0.0, 2.0),
    ]
    assert run([("press", 0.0), ("release", 0.1), ("press", 0.9), ("release", 1.0)], PTT, timers=False) == [
        ("short_press", "converse", "once", 0.0, 0.4),
        ("short_press", "converse", "once", 0.9, 1.3),
    ]


def test_a_release_without_a_press_is_ignored() -> None:
    """The button was already down when we started watching it."""
    assert run([("release", 0.5)], PTT) == []


def test_unusable_mappings_are_explained() -> None:
    assert gesture_problems(ButtonSettings(), push_to_talk=True, section="button") == []
    assert gesture_problems(ButtonSettings(), push_to_talk=False, section="button") == []
    (problem,) = gesture_problems(ButtonSettings(short_press="talk"), push_to_talk=True, section="buttons.x")
    assert "[buttons.x] short_press = 'talk'" in problem and "hold = 'talk'" in problem
    (problem,) = gesture_problems(ButtonSettings(long_press="end"), push_to_talk=True, section="button")
    assert "hold = 'talk' and long_press = 'end'" in problem and "'none'" in problem


@given(st.lists(st.floats(0.01, 2.0), min_size=1, max_size=20), st.booleans(), st.booleans())
def test_any_press_pattern_gives_balanced_talk_and_ordered_gestures(
    gaps: list[float], push_to_talk: bool, timers: bool
) -> None:
    t, edges = 0.0, []
    for i, gap in enumerate(gaps):
        t += gap
        edges.append(("press" if i % 2 == 0 else "release", t))
    if len(edges) % 2:
        edges.append(("release", t + 0.5))
    actions = PTT if push_to_talk else VAD
    out = run(edges, actions, end=edges[-1][1] + 5, timers=timers)
    talking = False
    for _gesture, action, phase, pressed_at, at in out:
        assert pressed_at <= at
        if action == "talk":
            assert phase == ("end" if talking else "start")
            talking = not talking
        else:
            assert phase == "once"
    assert not talking
    assert [e[4] for e in out] == sorted(e[4] for e in out)
    presses = sum(kind == "press" for kind, _ in edges)
    assert len([e for e in out if e[2] != "end"]) <= presses  # never more gestures than presses
