"""The talk button: a gpiozero Button whose debounced presses and releases reach the asyncio event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import gpiozero

from edgevoice.hw.settings import ButtonSettings


class TalkButton:
    """Press and release of one button, debounced, delivered on the event loop.

    gpiozero calls back from its own thread on a Pi (and synchronously, in the thread that drives the pin,
    with the mock factory); either way `call_soon_threadsafe` hands the edge to the loop. Debouncing is
    done here rather than by the pin factory, because factories differ (the mock factory does none):
    after any edge we wait until the level has been stable for `bounce_ms`, then report it if it changed.
    """

    def __init__(
        self,
        settings: ButtonSettings,
        loop: asyncio.AbstractEventLoop,
        on_press: Callable[[], None],
        on_release: Callable[[], None],
        pin_factory: Any | None = None,
    ) -> None:
        self._loop = loop
        self._settle_s = settings.bounce_ms / 1000
        self._on_press = on_press
        self._on_release = on_release
        self._button = gpiozero.Button(settings.pin, pull_up=settings.active_low, pin_factory=pin_factory)
        self._reported = bool(self._button.is_pressed)
        self._timer: asyncio.TimerHandle | None = None
        self._button.when_pressed = self._edge
        self._button.when_released = self._edge

    def _edge(self) -> None:  # any thread
        self._loop.call_soon_threadsafe(self._restart_timer)

    def _restart_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self._settle_s, self._settle)

    def _settle(self) -> None:
        self._timer = None
        pressed = self.is_pressed
        if pressed != self._reported:
            self._reported = pressed
            (self._on_press if pressed else self._on_release)()

    @property
    def is_pressed(self) -> bool:
        return bool(self._button.is_pressed)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._button.close()
