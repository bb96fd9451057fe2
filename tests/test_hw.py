"""Choosing gpiozero's pin factory, and GPIO errors as sentences that say what to do."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from edgevoice.hw.gpio import HardwareError, explain_gpio_error, make_pin_factory


def test_pin_factory_choice_and_gpio_errors() -> None:
    assert make_pin_factory("auto") is None
    assert isinstance(make_pin_factory("mock"), MockFactory)
    with pytest.raises(HardwareError, match="pin_factory = 'mock'"):
        make_pin_factory("pigpio")  # no pigpio daemon (or module) here
    message = explain_gpio_error(RuntimeError("Unable to load any default pin factory!"), "button on GPIO17")
    assert "no GPIO on this machine" in message and "pin_factory = 'mock'" in message
