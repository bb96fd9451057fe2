"""Settings of the GPIO hardware (the `[button]`, `[leds]` and `[hardware]` sections of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ButtonSettings:
    enabled: bool = True
    pin: int = field(default=17, metadata={"min": 0, "max": 53, "doc": "a BCM GPIO number"})
    active_low: bool = True  # wired to ground, with the internal pull-up (the usual arcade button)
    bounce_ms: int = field(default=20, metadata={"min": 0, "max": 500})


@dataclass(frozen=True)
class LedSettings:
    enabled: bool = True
    pin: int = field(default=27, metadata={"min": 0, "max": 53, "doc": "a BCM GPIO number"})
    active_high: bool = True


@dataclass(frozen=True)
class HardwareSettings:
    # "auto" lets gpiozero pick (lgpio on a Pi 5, RPi.GPIO on older boards); "mock" for machines without GPIO.
    pin_factory: Literal["auto", "mock", "lgpio", "rpigpio", "pigpio", "native"] = "auto"
