"""A push button on GPIO: debounced edges onto the asyncio event loop, gestures out as `ButtonAction`s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import gpiozero

from edgevoice.hw.gestures import Action, ButtonAction, Gesture, GestureRecognizer, GestureTiming
from edgevoice.hw.settings import ButtonSettings

log = logging.getLogger(__name__)


class GestureButton:
    """One button: its gpiozero edges, debounced on the event loop, fed to a `GestureRecognizer`.

    gpiozero calls back from its own thread on a Pi (and synchronously, in the thread that drives the pin,
    with the mock factory); either way `call_soon_threadsafe` hands the edge to the loop, stamped with the
    time it happened. Debouncing is done here rather than by the pin factory, because factories differ (the
    mock factory does none): after any edge we wait until the level has been stable for `bounce_ms`, then
    report it, if it changed, at the time of the burst's first edge. The recognizer's timeouts run on loop
    timers; while a burst is unresolved they wait, so a tap that bounces is never mistaken for a hold.
    `on_action` is called on the event loop.
    """

    def __init__(
        self,
        name: str,
        settings: ButtonSettings,
        actions: Mapping[Gesture, Action],
        loop: asyncio.AbstractEventLoop,
        on_action: Callable[[ButtonAction], None],
        pin_factory: Any | None = None,
    ) -> None:
        self.name = name
        self.pin = settings.pin
        self._loop = loop
        self._settle_s = settings.bounce_ms / 1000
        self._on_action = on_action
        self.recognizer = GestureRecognizer(name, actions, GestureTiming.of(settings), on_action)
        # gpiozero's Button would add a thread per button for its own hold timing, unused here (the recognizer
        # times holds on the loop): the plain input device is the same pin handling without it.
        self._button = gpiozero.DigitalInputDevice(settings.pin, pull_up=settings.active_low, pin_factory=pin_factory)
        self._reported = bool(self._button.is_active)
        if self._reported:
            log.warning(
                "[%s] GPIO%d reads pressed at start: a stuck button, or active_low is wrong for its wiring",
                name,
                settings.pin,
            )
        self._settle_timer: asyncio.TimerHandle | None = None
        self._burst_started = 0.0
        self._poll_timer: asyncio.TimerHandle | None = None
        self._button.when_activated = self._edge
        self._button.when_deactivated = self._edge

    def _edge(self) -> None:  # any thread
        self._loop.call_soon_threadsafe(self._restart_settle, self._loop.time())

    def _restart_settle(self, t: float) -> None:
        if self._settle_timer is None:
            self._burst_started = t
        else:
            self._settle_timer.cancel()
        self._settle_timer = self._loop.call_later(self._settle_s, self._settled)

    def _settled(self) -> None:
        self._settle_timer = None
        pressed = self.is_pressed
        if pressed != self._reported:
            self._reported = pressed
            if pressed:
                self.recognizer.press(self._burst_started)
            else:
                self.recognizer.release(self._burst_started)
        self._poll()

    def _poll(self) -> None:
        # The level is known up to now, or only up to the start of a burst still settling.
        horizon = self._burst_started if self._settle_timer is not None else self._loop.time()
        deadline = self.recognizer.poll(horizon)
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None
        if deadline is not None and self._settle_timer is None:
            self._poll_timer = self._loop.call_at(deadline, self._poll)

    @property
    def is_pressed(self) -> bool:
        return bool(self._button.is_active)

    def close(self) -> None:
        for timer in (self._settle_timer, self._poll_timer):
            if timer is not None:
                timer.cancel()
        self._button.close()
