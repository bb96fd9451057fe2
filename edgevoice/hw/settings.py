"""Settings of the GPIO hardware: the `[button]`, `[buttons.NAME]`, `[leds]` and `[hardware]` sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# What a gesture does. "auto" is resolved by `edgevoice.hw.gestures.resolve_actions` from the turn detection
# (push-to-talk or a VAD); "none" ignores the gesture.
ActionSetting = Literal["auto", "none", "talk", "converse", "end", "mute"]


@dataclass(frozen=True)
class ButtonSettings:
    """One push button and what its gestures do."""

    enabled: bool = True
    pin: int = field(default=17, metadata={"min": 0, "max": 53, "doc": "a BCM GPIO number"})
    active_low: bool = True  # wired to ground, with the internal pull-up (the usual arcade button)
    bounce_ms: int = field(default=20, metadata={"min": 0, "max": 500})
    hold: ActionSetting = "auto"  # held down: "talk" = push-to-talk (start on hold, end on release)
    short_press: ActionSetting = "auto"
    long_press: ActionSetting = "auto"
    double_press: ActionSetting = "auto"
    hold_ms: int = field(default=250, metadata={"min": 50, "max": 2000, "doc": "a press this long is a hold"})
    long_press_ms: int = field(default=1000, metadata={"min": 300, "max": 10000})
    double_press_ms: int = field(default=300, metadata={"min": 100, "max": 1000, "doc": "the longest gap"})


LedDriverName = Literal["gpio", "pwm", "rgb", "apa102"]
PixelOrder = Literal["bgr", "rgb", "grb", "gbr", "brg", "rbg"]


@dataclass(frozen=True)
class LedSettings:
    """The status light: one LED, a dimmable LED, an RGB LED or a strip of APA102 pixels."""

    enabled: bool = True
    driver: LedDriverName = "gpio"
    pin: int = field(default=27, metadata={"min": 0, "max": 53, "doc": "a BCM GPIO number"})
    active_high: bool = True
    red_pin: int = field(default=-1, metadata={"min": -1, "max": 53, "doc": "a BCM GPIO number (rgb)"})
    green_pin: int = field(default=-1, metadata={"min": -1, "max": 53, "doc": "a BCM GPIO number (rgb)"})
    blue_pin: int = field(default=-1, metadata={"min": -1, "max": 53, "doc": "a BCM GPIO number (rgb)"})
    count: int = field(default=3, metadata={"min": 1, "max": 256, "doc": "pixels on the strip (apa102)"})
    data_pin: int = field(default=10, metadata={"min": 0, "max": 53, "doc": "a BCM GPIO number (apa102)"})
    clock_pin: int = field(default=11, metadata={"min": 0, "max": 53, "doc": "a BCM GPIO number (apa102)"})
    spi_device: int = field(default=1, metadata={"min": 0, "max": 1, "doc": "the chip select, 0 or 1"})
    pixel_order: PixelOrder = "bgr"
    brightness: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})
    power_pin: int = field(default=-1, metadata={"min": -1, "max": 53, "doc": "-1 = none"})
    mute_pin: int = field(default=-1, metadata={"min": -1, "max": 53, "doc": "-1 = none"})


@dataclass(frozen=True)
class HardwareSettings:
    """`[hardware]`: which GPIO library drives the pins, and which board profile supplies the defaults for
    `[audio]`, `[button]`, `[buttons.NAME]` and `[leds]` (see `edgevoice.hw.profiles`)."""

    # "auto" lets gpiozero pick (lgpio on a Pi 5, RPi.GPIO on older boards); "mock" for machines without GPIO.
    pin_factory: Literal["auto", "mock", "lgpio", "rpigpio", "pigpio", "native"] = "auto"
    profile: str = ""  # a board's profile (hw_profiles/NAME.toml, or a path): the base under this file's keys
