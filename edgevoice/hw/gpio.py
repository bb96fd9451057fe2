"""Choosing gpiozero's pin factory, with errors that say what to do on machines without GPIO."""

from __future__ import annotations

import importlib
from typing import Any

_FACTORIES = {
    "mock": ("gpiozero.pins.mock", "MockFactory"),
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}


class HardwareError(Exception):
    """GPIO is unusable; the message says how to fix it or how to run without it."""


def make_pin_factory(name: str) -> Any | None:
    """The named gpiozero pin factory, or None for "auto" (gpiozero's own choice, GPIOZERO_PIN_FACTORY)."""
    if name == "auto":
        return None
    module_name, class_name = _FACTORIES[name]
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except Exception as exc:
        raise HardwareError(
            f"cannot use the {name!r} GPIO pin factory: {exc}. On a Pi 5 use 'lgpio' (apt install python3-lgpio); "
            "on a machine without GPIO set [hardware] pin_factory = 'mock'"
        ) from None


def explain_gpio_error(exc: Exception, what: str) -> str:
    """A gpiozero failure as an operator-facing sentence."""
    text = str(exc) or type(exc).__name__
    if "pin factory" in text.lower():
        return (
            f"{what}: no GPIO on this machine ({text}). Set [hardware] pin_factory = 'mock' to run without it, "
            "or disable it in config.toml"
        )
    return f"{what}: {text}"
