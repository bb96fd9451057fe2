"""The button and the status LED on gpiozero's mock pins (the same gpiozero code paths as on a Pi)."""

from __future__ import annotations

import asyncio
import time

import pytest
from gpiozero.pins.mock import MockFactory

from edgevoice.hw.button import TalkButton
from edgevoice.hw.gpio import HardwareError, explain_gpio_error, make_pin_factory
from edgevoice.hw.leds import PATTERNS, StatusLed
from edgevoice.hw.settings import ButtonSettings, LedSettings


def test_button_edges_reach_the_event_loop_from_another_thread() -> None:
    factory = MockFactory()
    edges: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        button = TalkButton(
            ButtonSettings(pin=17, bounce_ms=0),
            loop,
            lambda: edges.append("press"),
            lambda: edges.append("release"),
            factory,
        )
        pin = factory.pin(17)
        # On a Pi, gpiozero calls back from its own thread: drive the pin from one.
        await asyncio.to_thread(pin.drive_low)
        await asyncio.to_thread(pin.drive_high)
        await asyncio.sleep(0.05)
        assert button.is_pressed is False
        button.close()

    asyncio.run(scenario())
    assert edges == ["press", "release"]


def test_active_high_wiring_and_debounce() -> None:
    factory = MockFactory()
    edges: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        button = TalkButton(
            ButtonSettings(pin=5, active_low=False, bounce_ms=50),
            loop,
            lambda: edges.append("press"),
            lambda: edges.append("release"),
            factory,
        )
        pin = factory.pin(5)
        pin.drive_high()  # pressed (active high)
        for _ in range(3):  # contact bounce within 50 ms
            pin.drive_low()
            pin.drive_high()
        await asyncio.sleep(0.08)
        assert edges == ["press"]  # one press, reported once the level held for 50 ms
        pin.drive_low()
        pin.drive_high()  # a glitch shorter than the bounce time is not a press
        pin.drive_low()
        await asyncio.sleep(0.1)
        button.close()

    asyncio.run(scenario())
    assert edges == ["press", "release"]


def test_led_shows_each_state() -> None:
    factory = MockFactory()
    led = StatusLed(LedSettings(pin=27), factory)
    pin = factory.pin(27)
    assert led.show("listening").describe() == "on" and pin.state is True
    assert led.show("idle").describe() == "off" and pin.state is False
    pattern = led.show("thinking")
    assert pattern == PATTERNS["thinking"]
    pin.clear_states()
    time.sleep(0.55)  # 0.1 s on / 0.1 s off: several toggles in the background thread
    toggles = [s.state for s in pin.states]
    assert toggles.count(True) >= 2 and toggles.count(False) >= 2
    assert led.show("no-such-state") == PATTERNS["error"]
    led.close()


def test_active_low_led() -> None:
    factory = MockFactory()
    led = StatusLed(LedSettings(pin=22, active_high=False), factory)
    led.show("listening")
    assert factory.pin(22).state is False  # lit = pin driven low
    led.close()


def test_pin_factory_choice_and_gpio_errors() -> None:
    assert make_pin_factory("auto") is None
    assert isinstance(make_pin_factory("mock"), MockFactory)
    with pytest.raises(HardwareError, match="pin_factory = 'mock'"):
        make_pin_factory("pigpio")  # no pigpio daemon (or module) here
    message = explain_gpio_error(RuntimeError("Unable to load any default pin factory!"), "button on GPIO17")
    assert "no GPIO on this machine" in message and "pin_factory = 'mock'" in message
