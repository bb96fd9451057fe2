"""Which frames of a push-to-talk turn go up (SilenceTrimmer): pure logic, frames named by their index."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from edgevoice.conversation.trim import SilenceTrimmer

# 20 ms frames: a 300 ms lead margin is 15 frames, a 400 ms trail 20, the 60 ms onset 3.
LEAD, TRAIL, ONSET = 15, 20, 3


def trimmer(**settings: Any) -> SilenceTrimmer[int]:
    return SilenceTrimmer[int](20, **{"lead_ms": 300, "trail_ms": 400, **settings})


def turn(pattern: str, t: SilenceTrimmer[int] | None = None) -> tuple[list[list[int]], list[int]]:
    """Push one frame per character ('v' voiced, '.' not); returns what each push sent and what `finish` sent."""
    t = t if t is not None else trimmer()
    pushed = [t.push(i, c == "v") for i, c in enumerate(pattern)]
    return pushed, t.finish()


def sent(pattern: str, t: SilenceTrimmer[int] | None = None) -> list[int]:
    pushed, last = turn(pattern, t)
    return [f for out in pushed for f in out] + last


def test_the_wait_before_speech_goes_up_only_as_a_margin() -> None:
    t = trimmer()
    pattern = "." * 25 + "v" * 50 + "." * 5
    pushed, last = turn(pattern, t)
    assert all(out == [] for out in pushed[:27])  # held while nobody speaks (and through the onset)
    assert pushed[27] == list(range(25 - LEAD, 28))  # the onset: the margin, then the speech so far
    assert [f for out in pushed for f in out] + last == list(range(25 - LEAD, 80))
    assert t.heard and t.speech_ms == 50 * 20 and t.captured_ms == 80 * 20


def test_the_wait_after_speech_is_dropped_but_for_a_margin_sent_as_it_comes() -> None:
    t = trimmer()
    pushed, last = turn("v" * 30 + "." * 40, t)
    assert pushed[: ONSET - 1] == [[]] * (ONSET - 1) and pushed[ONSET - 1] == list(range(ONSET))
    assert all(out == [i] for i, out in enumerate(pushed[:30]) if i >= ONSET)
    assert all(out == [30 + i] for i, out in enumerate(pushed[30 : 30 + TRAIL]))  # the margin: at once
    assert all(out == [] for out in pushed[30 + TRAIL :])  # then held
    assert last == []  # and dropped at the release: nothing delays the commit
    assert t.speech_ms == 600


def test_a_pause_mid_sentence_is_kept_whole() -> None:
    pattern = "." * 10 + "v" * 20 + "." * 45 + "v" * 20 + "." * 30
    got = sent(pattern)
    first_speech, last_voiced = 10, 10 + 20 + 45 + 20 - 1
    assert got == list(range(0, last_voiced + TRAIL + 1))  # 200 ms before speech < margin: all of it
    assert first_speech == 10


def test_speech_resuming_after_the_margin_brings_the_held_pause_with_it() -> None:
    t = trimmer()
    pushed, _ = turn("v" * 10 + "." * 60 + "vvv" + "v" * 5, t)
    assert pushed[70] == [] and pushed[71] == []  # the first voiced frames of the resumption wait for the onset
    assert pushed[72] == list(range(10 + TRAIL, 73))  # then the whole pause, in order
    assert t.speech_ms == 78 * 20


def test_a_pause_longer_than_the_hold_is_shortened_and_no_voiced_frame_is_lost() -> None:
    got = sent("v" * 10 + "." * 200 + "v" * 10, trimmer(hold_ms=1000))
    hold = 1000 // 20  # frames held at most: the end of the pause, and the resumption's first voiced frames
    assert got == list(range(0, 10 + TRAIL)) + list(range(210 + ONSET - 1 - hold, 220))


def test_a_turn_without_speech_goes_up_whole() -> None:
    t = trimmer()
    pushed, last = turn("." * 100, t)
    assert all(out == [] for out in pushed) and last == list(range(100))
    assert not t.heard and t.speech_ms == 0
    # A very long one: the hold stays bounded, what falls out of it goes up as it comes, nothing is lost.
    long_wait = trimmer(hold_ms=1000)
    assert sent("." * 300, long_wait) == list(range(300))


def test_a_click_is_not_speech() -> None:
    t = trimmer()
    got = sent("." * 30 + "v" + "." * 5 + "vv" + "." * 30 + "v" * 20 + "." * 5, t)
    start = 30 + 1 + 5 + 2 + 30
    assert got == list(range(start - LEAD, start + 25))
    assert t.speech_ms == 20 * 20
    clicks = trimmer()
    assert sent("." * 20 + "vv" + "." * 20, clicks) == list(range(42)) and not clicks.heard


def test_speech_from_the_first_frame_and_a_short_turn() -> None:
    assert sent("vvvv") == [0, 1, 2, 3]  # nothing before it, nothing dropped (80 ms: too short to commit)
    t = trimmer()
    assert sent("vvv" + "." * 3, t) == list(range(6)) and t.speech_ms == 60


def test_a_word_starting_as_the_button_goes_up_is_kept() -> None:
    _, last = turn("v" * 10 + "." * 40 + "vv")
    assert last == list(range(10 + TRAIL, 52))


def test_disabled_sends_every_frame_at_once_and_still_measures_the_speech() -> None:
    t = trimmer(enabled=False)
    pushed, last = turn("." * 25 + "v" * 10 + "." * 50, t)
    assert pushed == [[i] for i in range(85)] and last == []
    assert t.heard and t.speech_ms == 200


@pytest.mark.parametrize("seed", range(40))
def test_never_a_word_cut_never_a_frame_twice(seed: int) -> None:
    """Random turns: every frame of speech, the margins around it and the short pauses within, in order, once."""
    rng = random.Random(seed)
    pattern = "".join(rng.choice(".v") * rng.randint(1, 40) for _ in range(rng.randint(1, 30)))
    hold = 50  # frames (1 s)
    got = sent(pattern, trimmer(hold_ms=hold * 20))
    assert got == sorted(set(got)), "frames out of order or twice"
    runs = [(start, end) for start, end in _runs(pattern) if end - start >= ONSET]
    if not runs:
        assert got == list(range(len(pattern)))  # no speech: the whole turn
        return
    must = set(range(max(0, runs[0][0] - LEAD), runs[0][0]))
    for start, end in runs:
        must.update(range(start, min(len(pattern), end + TRAIL)))
    for (_, end), (start, _) in itertools.pairwise(runs):
        if start - end <= TRAIL + hold - ONSET:
            must.update(range(end, start))  # a pause that fits the hold is kept whole
    assert must <= set(got), sorted(must - set(got))[:10]


def _runs(pattern: str) -> list[tuple[int, int]]:
    """(start, end) of each stretch of voiced frames."""
    found, start = [], None
    for i, c in enumerate(pattern + "."):
        if c == "v" and start is None:
            start = i
        elif c != "v" and start is not None:
            found.append((start, i))
            start = None
    return found
