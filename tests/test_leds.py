"""The LED language on gpiozero's mock pins: each state's sequence (assert_states), speech level, mute, failures.

`LedShow.step(now)` is what the LED thread runs; driving it with a made-up clock, following the delays it
returns exactly as the thread does, makes every sequence deterministic. One test runs the real thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edgevoice.hw.led_drivers import GpioLed, PwmLed, RgbLed
from edgevoice.hw.leds import LOOKS, RETRY_S, LedShow, render
from edgevoice.hw.panel import Panel
from edgevoice.hw.settings import LedSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_for(show: LedShow, clock: Clock, seconds: float) -> list[float]:
    """Step the show as its thread would, for `seconds` of made-up time; the times it stepped at."""
    start, times = clock.now, []
    for _ in range(1000):
        times.append(round(clock.now - start, 4))
        delay = show.step(clock.now)
        if delay is None or clock.now + delay - start > seconds:
            return times
        clock.now += delay
    raise AssertionError("the show never settles")


def assert_sequence(pin: object, expected: list) -> None:
    """gpiozero's assert_states compares only as far as the shorter list goes: check the length too."""
    pin.assert_states(expected)  # type: ignore[attr-defined]
    assert [s.state for s in pin.states] == expected  # type: ignore[attr-defined]


# (state, plain LED sequence over the first 0.95 s, starting from off, and the step times)
PLAIN = [
    ("idle", [False], [0.0]),
    ("connecting", [False, True, False, True, False], [0.0, 0.1, 0.5, 0.6]),
    ("listening", [False, True], [0.0]),
    ("thinking", [False] + [True, False] * 5, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    ("speaking", [False, True, False, True], [0.0, 0.5, 0.65]),
    ("muted", [False, True, False], [0.0, 0.1]),
    ("offline", [False, True, False], [0.0, 0.5]),
    ("error", [False] + [True, False] * 3 + [True], [0.0, 0.05, 0.3, 0.35, 0.6, 0.65, 0.9]),
]


@pytest.mark.parametrize(("state", "expected", "steps"), PLAIN, ids=[p[0] for p in PLAIN])
def test_plain_led_sequence_for_each_state(state: str, expected: list[bool], steps: list[float]) -> None:
    factory, clock = MockFactory(), Clock()
    show = LedShow(GpioLed(27, pin_factory=factory), clock=clock)
    show.show(state)
    # The thread wakes only at the blink edges (a steady look: never), not at a frame rate.
    assert run_for(show, clock, 0.95) == steps
    assert_sequence(factory.pin(27), expected)


def test_a_plain_led_describes_itself_as_before() -> None:
    show = LedShow(GpioLed(27, pin_factory=MockFactory()), clock=Clock())
    assert [show.show(s) for s in ("idle", "connecting", "listening")] == ["off", "blink 0.1s on / 0.4s off", "on"]
    assert show.show("speaking") == "with the voice, else blink 0.5s on / 0.15s off"
    assert show.show("no-such-state") == "blink 0.05s on / 0.25s off"  # unknown states show as errors


def test_an_active_low_led_is_lit_by_driving_the_pin_low() -> None:
    factory, clock = MockFactory(), Clock()
    show = LedShow(GpioLed(22, active_high=False, pin_factory=factory), clock=clock)
    show.show("listening")
    show.step(clock.now)
    assert_sequence(factory.pin(22), [False, True, False])  # mock's low, off (high) at open, lit (low)


def test_pwm_led_steady_states_and_the_brightness_limit() -> None:
    factory, clock = MockFactory(pin_class=MockPWMPin), Clock()
    show = LedShow(PwmLed(25, True, 0.5, pin_factory=factory), clock=clock)
    for state in ("listening", "muted", "idle"):
        show.show(state)
        show.step(clock.now)
    # On at the limit, muted as a dim glow (not to be mistaken for listening), then off.
    assert_sequence(factory.pin(25), [0.0, 0.5, 0.075, 0.0])
    assert show.show("muted") == "red steady 15%"


def test_pwm_led_offline_pulse() -> None:
    factory, clock = MockFactory(pin_class=MockPWMPin), Clock()
    show = LedShow(PwmLed(25, True, 1.0, pin_factory=factory), clock=clock, fps=2)
    show.show("offline")
    assert run_for(show, clock, 2.0) == [0.0, 0.5, 1.0, 1.5, 2.0]
    # A 2 s breath from 5 %: floor + (1 - floor) * (1 - cos(2 pi t / 2)) / 2
    assert_sequence(factory.pin(25), [0.0, 0.05, 0.525, 1.0, 0.525, 0.05])


def test_speaking_follows_the_level_of_what_is_played() -> None:
    factory, clock = MockFactory(pin_class=MockPWMPin), Clock()
    show = LedShow(PwmLed(25, True, 1.0, pin_factory=factory), clock=clock)
    show.show("speaking")
    for level in (0.0, 0.5, 1.0, 0.5):
        show.set_level(level)
        show.step(clock.now)
        clock.now += 0.05
    states = [s.state for s in factory.pin(25).states]
    # 20 % floor + 80 % of the level; it rises at once and falls smoothly (0.12 s time constant).
    assert states[:4] == [0.0, 0.2, 0.6, 1.0]
    assert 0.6 < states[4] < 1.0
    clock.now += 0.5  # the level stops coming: back to the pulse
    show.step(clock.now)
    assert show.step(clock.now + 0.1) == pytest.approx(1 / show.fps)


def test_a_plain_led_flickers_with_the_voice() -> None:
    factory, clock = MockFactory(), Clock()
    show = LedShow(GpioLed(27, pin_factory=factory), clock=clock)
    show.show("speaking")
    for level in (0.6, 0.05, 0.0, 0.0, 0.0, 0.7):
        show.set_level(level)
        show.step(clock.now)
        clock.now += 0.25
    assert_sequence(factory.pin(27), [False, True, False, True])


def test_rgb_led_colours() -> None:
    factory, clock = MockFactory(pin_class=MockPWMPin), Clock()
    show = LedShow(RgbLed((5, 6, 13), True, 1.0, pin_factory=factory), clock=clock)
    for state in ("listening", "offline", "idle"):
        show.show(state)
        show.step(clock.now)
    assert_sequence(factory.pin(5), [0.0, 0.05, 0.0])  # red: only the amber pulse's floor
    assert_sequence(factory.pin(6), [0.0, 0.2, 0.0225, 0.0])  # green: blue's tint, amber's 0.45 x 5 %
    assert_sequence(factory.pin(13), [0.0, 1.0, 0.0])  # blue: listening


def test_pixel_ring_spins_with_a_fading_tail() -> None:
    look = LOOKS["thinking"]
    frame = render(look, "colour", 12, 0.0, None)
    cyan = look.colour
    assert frame[0] == cyan and frame[11] == tuple(round(c * 0.75, 4) for c in cyan) and frame[1] == (0, 0, 0)
    later = render(look, "colour", 12, look.period_s / 12, None)  # one pixel on
    assert later[1] == cyan and later[0] == tuple(round(c * 0.75, 4) for c in cyan)
    assert render(look, "colour", 1, 0.0, None) == (cyan,)  # one pixel cannot spin: it blinks


def test_mute_shows_over_every_state_and_lights_the_mute_led() -> None:
    factory, clock = MockFactory(), Clock()
    show = LedShow(GpioLed(27, pin_factory=factory), mute_led=GpioLed(26, pin_factory=factory), clock=clock)
    show.show("speaking")
    show.step(clock.now)
    show.set_muted(True)
    seen = []
    for state in ("speaking", "offline", "error", "listening"):
        show.show(state)
        seen.append(show.look())
        run_for(show, clock, 0.95)
        clock.now += 1
    assert seen == [LOOKS["muted"]] * 4
    assert factory.pin(26).state is True
    show.set_muted(False)
    run_for(show, clock, 0.1)
    assert show.look() == LOOKS["listening"] and factory.pin(27).state is True and factory.pin(26).state is False


class Broken:
    kind = "binary"
    pixels = 1

    def __init__(self) -> None:
        self.fail = True
        self.frames: list[object] = []

    def write(self, frame: object) -> None:
        if self.fail:
            raise OSError("SPI transfer error -5")
        self.frames.append(frame)

    def describe(self) -> str:
        return "broken LED"

    def close(self) -> None:
        pass


def test_a_failing_led_is_logged_once_retried_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    factory, clock, broken = MockFactory(), Clock(), Broken()
    show = LedShow(broken, mute_led=GpioLed(26, pin_factory=factory), clock=clock)
    caplog.set_level(logging.INFO)
    show.set_muted(True)
    for state in ("listening", "thinking", "speaking", "idle", "listening"):
        show.show(state)
        assert show.step(clock.now) == RETRY_S or show.step(clock.now) < RETRY_S
        clock.now += 1
    warnings = [r for r in caplog.records if "broken LED failed" in r.getMessage()]
    assert len(warnings) == 1 and "carries on without it" in warnings[0].getMessage()
    assert factory.pin(26).state is True  # the mute LED works regardless
    broken.fail = False
    show.step(clock.now)
    assert broken.frames == [True] and any("broken LED works again" in r.getMessage() for r in caplog.records)


def test_the_thread_animates_and_calls_never_wait_for_the_leds() -> None:
    factory = MockFactory()
    gate = threading.Event()

    class Slow(GpioLed):
        def write(self, frame: bool) -> None:
            gate.wait(5)  # an SPI transfer that hangs
            super().write(frame)

    show = LedShow(Slow(27, pin_factory=factory))
    show.start()
    try:
        show.show("listening")  # the thread is now stuck in write()
        time.sleep(0.05)
        started = time.monotonic()
        for _ in range(100):
            show.show("thinking")
            show.show("speaking")
            show.set_level(0.5)
            show.set_muted(False)
        assert time.monotonic() - started < 1  # would be 5 s per call if they waited for the LED
        gate.set()
        show.show("thinking")
        time.sleep(0.55)  # 0.1 s on / 0.1 s off, on the thread's own timing
        states = [s.state for s in factory.pin(27).states]
        assert states.count(True) >= 2 and states.count(False) >= 3
    finally:
        gate.set()
        show.close()
    assert factory.pin(27).state is False  # turned off on close


def test_panel_without_a_working_led_keeps_the_mute_led(caplog: pytest.LogCaptureFixture) -> None:
    factory = MockFactory()
    factory.pin(27)  # reserve GPIO27 so the status LED cannot open
    blocker = GpioLed(27, pin_factory=factory)

    async def main() -> Panel:
        return Panel.open(
            buttons={},
            leds=LedSettings(pin=27, mute_pin=26),
            push_to_talk=True,
            loop=asyncio.get_running_loop(),
            on_action=lambda a: None,
            pin_factory=factory,
        )

    panel = asyncio.run(main())
    try:
        assert any("[leds] gpio LED" in r.getMessage() for r in caplog.records)
        assert panel.show("idle") == "off"
        panel.set_muted(True)
        time.sleep(0.1)
        assert factory.pin(26).state is True
    finally:
        panel.close()
        blocker.close()
