"""The device's front panel: its buttons and status LEDs, built from the settings, as the daemon uses them.

    panel = Panel.open(buttons={"button": config.button, **extra}, leds=config.leds, push_to_talk=...,
                       loop=loop, on_action=router, pin_factory=factory)
    panel.show("listening"); panel.set_level(0.4); panel.set_muted(True); panel.close()

Every part is optional: a button or LED that cannot be opened is logged (saying what to do) and left out,
and the rest works. Button gestures reach `on_action` on the event loop; LED calls never block.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import gpiozero

from edgevoice.hw.button import GestureButton
from edgevoice.hw.gestures import ButtonAction, resolve_actions
from edgevoice.hw.gpio import explain_gpio_error
from edgevoice.hw.led_drivers import GpioLed, Kind, LedDriver, open_driver
from edgevoice.hw.leds import LedShow
from edgevoice.hw.settings import ButtonSettings, LedSettings

log = logging.getLogger(__name__)


class NoLed:
    """Stands in for a main LED that failed to open, so a working mute LED still shows the mute."""

    kind: Kind = "binary"
    pixels = 1

    def write(self, frame: Any) -> None:
        pass

    def describe(self) -> str:
        return "no status LED"

    def close(self) -> None:
        pass


class Panel:
    """The buttons and status LEDs the daemon drives, whatever hardware is wired. Build it with `Panel.open`
    from the settings (never fails for a part that cannot open: that part is logged and left out), then call
    `show`, `set_muted` and `set_level` from the event loop; they never block. Button gestures arrive as
    `ButtonAction`s through `on_action`, on `loop`. `close()` releases every pin."""

    def __init__(self, buttons: list[GestureButton], leds: LedShow | None) -> None:
        self.buttons = buttons
        self.leds = leds

    @classmethod
    def open(
        cls,
        *,
        buttons: Mapping[str, ButtonSettings],
        leds: LedSettings,
        push_to_talk: bool,
        loop: asyncio.AbstractEventLoop,
        on_action: Callable[[ButtonAction], None],
        pin_factory: Any | None = None,
        fps: float = 20.0,
    ) -> Panel:
        """Open what the settings enable (`buttons` by config section name: "button", "buttons.mute", ...)."""
        opened: list[GestureButton] = []
        show = None
        # gpiozero warns once per pin factory it fails to load while looking for one ("auto"), and when it
        # falls back to software SPI; our own messages say what to do, so its details go to the debug log.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name, settings in buttons.items():
                if not settings.enabled:
                    continue
                try:
                    actions = resolve_actions(settings, push_to_talk)
                    opened.append(GestureButton(name, settings, actions, loop, on_action, pin_factory))
                except Exception as exc:
                    log.error("%s", explain_gpio_error(exc, f"[{name}] button on GPIO{settings.pin}"))
            if leds.enabled:
                driver = _open_quietly(lambda: open_driver(leds, pin_factory), f"[leds] {leds.driver} LED")
                mute_led = None
                if leds.mute_pin >= 0:
                    mute_led = _open_quietly(
                        lambda: GpioLed(leds.mute_pin, leds.active_high, pin_factory),
                        f"[leds] mute LED on GPIO{leds.mute_pin}",
                    )
                if driver is not None or mute_led is not None:
                    show = LedShow(driver or NoLed(), mute_led=mute_led, fps=fps)
                    show.start()
        for warning in caught:
            log.debug("gpiozero: %s", warning.message)
        if opened or show is not None:
            log.info(
                "GPIO through %s: %s",
                type(pin_factory or gpiozero.Device.pin_factory).__name__,
                ", ".join([f"[{b.name}] button on GPIO{b.pin}" for b in opened] + _led_names(show)),
            )
        return cls(opened, show)

    def show(self, state: str) -> str | None:
        """Show a device state; what the status LED does, in words (None without LEDs)."""
        return self.leds.show(state) if self.leds is not None else None

    def set_muted(self, muted: bool) -> None:
        """The privacy mute indication: overrides every state on the LEDs, lights the mute LED."""
        if self.leds is not None:
            self.leds.set_muted(muted)

    def set_level(self, level: float) -> None:
        """The level (0..1) of what is being played, ~20 Hz while speaking."""
        if self.leds is not None:
            self.leds.set_level(level)

    def close(self) -> None:
        for button in self.buttons:
            try:
                button.close()
            except Exception as exc:
                log.debug("closing [%s] button: %s", button.name, exc)
        if self.leds is not None:
            self.leds.close()


def _open_quietly(opener: Callable[[], LedDriver], what: str) -> LedDriver | None:
    try:
        return opener()
    except Exception as exc:
        log.error("%s; the device carries on without it", explain_gpio_error(exc, what))
        return None


def _led_names(show: LedShow | None) -> list[str]:
    if show is None:
        return []
    names = [show.driver.describe()] if not isinstance(show.driver, NoLed) else []
    return names + ([f"mute {show.mute_led.describe()}"] if show.mute_led is not None else [])
