"""What the status LED shows in each device state.

A visitor must be able to tell at a glance whether the device is listening, thinking, talking or broken.
Patterns are data (`PATTERNS`); gpiozero runs the blinking on its own background thread, so showing a
state never blocks the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gpiozero

from edgevoice.hw.settings import LedSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pattern:
    on_s: float  # 0 = off
    off_s: float  # 0 = steady on (when on_s > 0)

    def describe(self) -> str:
        if self.on_s == 0:
            return "off"
        if self.off_s == 0:
            return "on"
        return f"blink {self.on_s:g}s on / {self.off_s:g}s off"


PATTERNS: dict[str, Pattern] = {
    "idle": Pattern(0, 0),
    "connecting": Pattern(0.1, 0.4),
    "listening": Pattern(1, 0),
    "thinking": Pattern(0.1, 0.1),
    "speaking": Pattern(0.5, 0.15),
    "muted": Pattern(0.05, 1.95),
    "offline": Pattern(0.5, 1.5),
    "error": Pattern(0.05, 0.25),
}


class StatusLed:
    """One single-colour LED on a GPIO pin showing the device state."""

    def __init__(self, settings: LedSettings, pin_factory: Any | None = None) -> None:
        self._led = gpiozero.LED(settings.pin, active_high=settings.active_high, pin_factory=pin_factory)
        self.state = ""

    def show(self, state: str) -> Pattern:
        pattern = PATTERNS.get(state, PATTERNS["error"])
        self.state = state
        if pattern.on_s == 0:
            self._led.off()
        elif pattern.off_s == 0:
            self._led.on()
        else:
            self._led.blink(on_time=pattern.on_s, off_time=pattern.off_s, background=True)
        return pattern

    def close(self) -> None:
        self._led.close()
