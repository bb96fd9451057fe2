"""Buttons on gpiozero's mock pins, pressed by a 'finger' thread with real timing and contact bounce.

On a Pi gpiozero calls back from its own thread; here the finger's thread drives the pin, so the edges
cross threads exactly as they do on the device. Timings are shortened (hold 150 ms, long press 400 ms,
double-press gap 200 ms) to keep the tests quick; bounces are real: a few sub-millisecond toggles.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gpiozero.pins.mock import MockFactory

from edgevoice.hw.button import GestureButton
from edgevoice.hw.gestures import ButtonAction, resolve_actions
from edgevoice.hw.panel import Panel
from edgevoice.hw.settings import ButtonSettings, LedSettings

FAST = {"bounce_ms": 15, "hold_ms": 150, "long_press_ms": 400, "double_press_ms": 200}


class Finger:
    """Presses a button the way a hand does: the contact bounces for a couple of milliseconds."""

    def __init__(self, factory: MockFactory, pin: int, active_low: bool = True) -> None:
        self.pin = factory.pin(pin)
        self.active_low = active_low
        self.log: list[tuple[str, float]] = []

    def _level(self, pressed: bool) -> None:
        if pressed == self.active_low:
            self.pin.drive_low()
        else:
            self.pin.drive_high()

    def _bounce_to(self, pressed: bool, bounces: int) -> None:
        self.log.append(("press" if pressed else "release", time.monotonic()))
        for _ in range(bounces):
            self._level(pressed)
            time.sleep(0.0004)
            self._level(not pressed)
            time.sleep(0.0004)
        self._level(pressed)

    def press(self, hold_s: float, bounces: int = 4) -> None:
        self._bounce_to(True, bounces)
        time.sleep(hold_s)
        self._bounce_to(False, bounces)

    def gap(self, seconds: float) -> None:
        time.sleep(seconds)


def scenario(
    settings: ButtonSettings,
    push_to_talk: bool,
    fingering: Callable[[Finger], None],
    settle_s: float = 0.35,
) -> tuple[list[tuple[ButtonAction, float]], Finger]:
    """Run `fingering` on a button; the actions with the loop time each reached the callback."""
    factory = MockFactory()
    got: list[tuple[ButtonAction, float]] = []

    async def main() -> Finger:
        loop = asyncio.get_running_loop()
        button = GestureButton(
            "button",
            settings,
            resolve_actions(settings, push_to_talk),
            loop,
            lambda a: got.append((a, loop.time())),
            factory,
        )
        finger = Finger(factory, settings.pin, settings.active_low)
        await asyncio.to_thread(fingering, finger)
        await asyncio.sleep(settle_s)
        button.close()
        return finger

    finger = asyncio.run(main())
    return got, finger


def kinds(got: list[tuple[ButtonAction, float]]) -> list[tuple[str, str, str]]:
    return [(a.gesture, a.action, a.phase) for a, _ in got]


def test_hold_to_talk_through_bounces() -> None:
    got, finger = scenario(ButtonSettings(**FAST), True, lambda f: f.press(0.5))
    assert kinds(got) == [("hold", "talk", "start"), ("hold", "talk", "end")]
    (start, start_seen), (end, end_seen) = got
    pressed, released = finger.log[0][1], finger.log[1][1]
    # The press time is the first bounce's, on the same clock; the hold starts hold_ms after it.
    assert abs(start.pressed_at - pressed) < 0.01
    assert start.at == start.pressed_at + 0.15
    assert start_seen >= start.at and start_seen < released  # reported while still held
    assert abs(end.at - released) < 0.01 and end_seen >= end.at


def test_a_bouncy_tap_is_one_short_press() -> None:
    got, _ = scenario(ButtonSettings(**FAST), True, lambda f: f.press(0.06, bounces=6))
    assert kinds(got) == [("short_press", "converse", "once")]


def test_double_press_toggles_mute() -> None:
    def double(f: Finger) -> None:
        f.press(0.06)
        f.gap(0.08)
        f.press(0.06)

    got, finger = scenario(ButtonSettings(**FAST), True, double)
    assert kinds(got) == [("double_press", "mute", "once")]
    assert abs(got[0][0].at - finger.log[2][1]) < 0.01  # at the second press


def test_a_glitch_shorter_than_the_bounce_time_is_nothing() -> None:
    def glitch(f: Finger) -> None:
        f._level(True)
        time.sleep(0.003)
        f._level(False)

    got, _ = scenario(ButtonSettings(**FAST), True, glitch)
    assert got == []


def test_long_press_on_an_active_high_button_ends_the_conversation_while_held() -> None:
    settings = ButtonSettings(pin=5, active_low=False, **FAST)
    got, finger = scenario(settings, False, lambda f: f.press(0.7))
    assert kinds(got) == [("long_press", "end", "once")]
    assert got[0][1] < finger.log[1][1]  # seen before the finger let go


def test_several_buttons_each_with_its_own_gestures() -> None:
    factory = MockFactory()
    got: list[ButtonAction] = []
    mute = ButtonSettings(pin=22, short_press="mute", double_press="none", **FAST)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        panel = Panel.open(
            buttons={"button": ButtonSettings(**FAST), "buttons.mute": mute},
            leds=LedSettings(enabled=False),
            push_to_talk=True,
            loop=loop,
            on_action=got.append,
            pin_factory=factory,
        )
        talk, mute_finger = Finger(factory, 17), Finger(factory, 22)
        await asyncio.gather(asyncio.to_thread(talk.press, 0.4), asyncio.to_thread(mute_finger.press, 0.05))
        await asyncio.sleep(0.1)
        panel.close()

    asyncio.run(main())
    assert sorted((a.button, a.gesture, a.action, a.phase) for a in got) == [
        ("button", "hold", "talk", "end"),
        ("button", "hold", "talk", "start"),
        ("buttons.mute", "short_press", "mute", "once"),
    ]


def test_a_button_that_cannot_open_is_logged_and_the_rest_works(caplog) -> None:  # type: ignore[no-untyped-def]
    factory = MockFactory()
    got: list[ButtonAction] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        panel = Panel.open(
            buttons={"button": ButtonSettings(pin=17, **FAST), "buttons.bad": ButtonSettings(pin=17, **FAST)},
            leds=LedSettings(enabled=False),
            push_to_talk=True,
            loop=loop,
            on_action=got.append,
            pin_factory=factory,
        )
        assert [b.name for b in panel.buttons] == ["button"]
        await asyncio.to_thread(Finger(factory, 17).press, 0.05)
        await asyncio.sleep(0.3)
        panel.close()

    asyncio.run(main())
    assert any("[buttons.bad] button on GPIO17" in r.getMessage() for r in caplog.records)
    assert [a.action for a in got] == ["converse"]
