"""LED hardware: a plain LED, a dimmable (PWM) LED, an RGB LED, and APA102/DotStar pixels, all through gpiozero.

A driver takes frames and puts them on the hardware, applying the brightness limit; what to show is
decided by `edgevoice.hw.leds`. Drivers are called from the LED thread only. Three kinds of frame:
- "binary": a bool (a plain LED can only be on or off);
- "mono": a float 0..1 (one dimmable LED);
- "colour": a tuple of (r, g, b) floats 0..1, one per pixel (an RGB LED is one pixel).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import gpiozero
from gpiozero.exc import SPISoftwareFallback

from edgevoice.hw.settings import LedSettings

log = logging.getLogger(__name__)

RGB = tuple[float, float, float]
Kind = Literal["binary", "mono", "colour"]
HARDWARE_SPI0 = (10, 11)  # (MOSI, SCLK) of SPI0, as (data_pin, clock_pin)


class LedDriver(Protocol):
    """What every LED driver offers (`open_driver` picks one from `[leds]`). `write(frame)` takes a frame of
    the driver's `kind` (one of `pixels` colours for "colour") and applies the brightness limit itself;
    `describe()` names the hardware for log lines; `close()` releases the pins. Call from one thread only;
    `write` may raise when the hardware fails, and the caller carries on without it."""

    kind: Kind
    pixels: int

    def write(self, frame: Any) -> None: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


class GpioLed:
    """One LED on a GPIO pin, on or off."""

    kind: Kind = "binary"
    pixels = 1

    def __init__(self, pin: int, active_high: bool = True, pin_factory: Any | None = None) -> None:
        self.pin = pin
        self._led = gpiozero.LED(pin, active_high=active_high, pin_factory=pin_factory)

    def write(self, frame: bool) -> None:
        if frame:
            self._led.on()
        else:
            self._led.off()

    def describe(self) -> str:
        return f"LED on GPIO{self.pin}"

    def close(self) -> None:
        self._led.close()


class PwmLed:
    """One dimmable LED: software or hardware PWM on a GPIO pin, at most `brightness`."""

    kind: Kind = "mono"
    pixels = 1

    def __init__(self, pin: int, active_high: bool, brightness: float, pin_factory: Any | None = None) -> None:
        self.pin = pin
        self.brightness = brightness
        self._led = gpiozero.PWMLED(pin, active_high=active_high, pin_factory=pin_factory)

    def write(self, frame: float) -> None:
        self._led.value = min(max(frame, 0.0), 1.0) * self.brightness

    def describe(self) -> str:
        return f"PWM LED on GPIO{self.pin}"

    def close(self) -> None:
        self._led.close()


class RgbLed:
    """A three-pin RGB LED (PWM on each colour), at most `brightness`."""

    kind: Kind = "colour"
    pixels = 1

    def __init__(
        self, pins: tuple[int, int, int], active_high: bool, brightness: float, pin_factory: Any | None = None
    ) -> None:
        self.pins = pins
        self.brightness = brightness
        self._led = gpiozero.RGBLED(*pins, active_high=active_high, pin_factory=pin_factory)

    def write(self, frame: Sequence[RGB]) -> None:
        self._led.value = tuple(min(max(c, 0.0), 1.0) * self.brightness for c in frame[0])

    def describe(self) -> str:
        return "RGB LED on GPIO{}/{}/{}".format(*self.pins)

    def close(self) -> None:
        self._led.close()


def apa102_frame(pixels: Sequence[RGB], brightness: float, order: str = "bgr") -> bytes:
    """The bytes that set a strip of APA102 pixels (datasheet: start frame, one 32-bit frame per LED, end frame).

    Start frame: 32 zero bits. Per LED: 0b111 and a 5-bit global brightness, then the three colour bytes, blue,
    green, red for the APA102 (`order` for clones wired otherwise). End frame: the datasheet shows 32 one-bits,
    but what it is for is clock edges: each LED delays the data by half a bit, so n LEDs need n/2 more clocks.
    We send max(32, n/2 rounded up to bytes) zero bits, which also satisfies the SK9822 clones' reset frame and
    never lights a pixel past the end of the strip. The brightness limit goes in the 5-bit field (1..31, 0 =
    dark) so the full 8 bits of each colour stay for the animation.
    """
    level = 0 if brightness <= 0 else max(1, round(brightness * 31))
    head = 0b1110_0000 | level
    first, second, third = ("rgb".index(c) for c in order)
    out = bytearray(4)
    for rgb in pixels:
        v = [255 if c >= 1 else 0 if c <= 0 else int(c * 255 + 0.5) for c in rgb]
        out += bytes((head, v[first], v[second], v[third]))
    out += bytes(max(4, math.ceil(len(pixels) / 16)))
    return bytes(out)


class SpiBus(Protocol):
    """Where `Apa102Strip` sends its bytes: hardware SPI0 (`HardwareSpi`) or any two GPIO pins (`BitBangSpi`);
    pass another as `bus` to capture the bytes. `write` clocks them out most significant bit first (mode 0)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class BitBangSpi:
    """Clock and data on any two GPIO pins (the Adafruit Voice Bonnet's DotStars are on GPIO6/GPIO5)."""

    def __init__(self, data_pin: int, clock_pin: int, pin_factory: Any | None = None) -> None:
        self._data = gpiozero.DigitalOutputDevice(data_pin, pin_factory=pin_factory)
        try:
            self._clock = gpiozero.DigitalOutputDevice(clock_pin, pin_factory=pin_factory)
        except Exception:
            self._data.close()
            raise

    def write(self, data: bytes) -> None:
        # Straight to the pins: gpiozero's device layer costs more per bit than the pin call itself.
        data_pin, clock_pin = self._data.pin, self._clock.pin
        for byte in data:
            for shift in range(7, -1, -1):  # SPI mode 0, most significant bit first
                data_pin.state = (byte >> shift) & 1
                clock_pin.state = 1
                clock_pin.state = 0

    def close(self) -> None:
        self._clock.close()
        self._data.close()


class HardwareSpi:
    """SPI0 through gpiozero's pin factory: the kernel's spidev (lgpio's spi_* calls) where SPI is enabled.

    Raises where there is no hardware SPI (SPI not enabled, or a factory without it) instead of taking
    gpiozero's software fallback, which also claims MISO and a chip select: `Apa102Strip` bit-bangs then.
    """

    def __init__(self, device: int, pin_factory: Any | None = None) -> None:
        if pin_factory is None:
            gpiozero.Device.ensure_pin_factory()
            pin_factory = gpiozero.Device.pin_factory
        with warnings.catch_warnings():
            warnings.simplefilter("error", SPISoftwareFallback)
            self._spi = pin_factory.spi(port=0, device=device)

    def write(self, data: bytes) -> None:
        self._spi.write(data)

    def close(self) -> None:
        self._spi.close()


class Apa102Strip:
    """APA102 (DotStar) pixels: the ReSpeaker 2-mic (3) and 4-mic (12) boards, the Adafruit Voice Bonnet (3)."""

    kind: Kind = "colour"

    def __init__(self, settings: LedSettings, pin_factory: Any | None = None, bus: SpiBus | None = None) -> None:
        self.pixels = settings.count
        self.brightness = settings.brightness
        self.order = settings.pixel_order
        self._pins = (settings.data_pin, settings.clock_pin)
        self._bus: SpiBus = bus if bus is not None else self._open_bus(settings, pin_factory)

    @staticmethod
    def _open_bus(settings: LedSettings, pin_factory: Any | None) -> SpiBus:
        if (settings.data_pin, settings.clock_pin) == HARDWARE_SPI0:
            try:
                return HardwareSpi(settings.spi_device, pin_factory)
            except Exception as exc:
                log.info("APA102 pixels: no SPI0 (%s); clocking the bits out on GPIO10/GPIO11 directly", exc)
        return BitBangSpi(settings.data_pin, settings.clock_pin, pin_factory)

    def write(self, frame: Sequence[RGB]) -> None:
        self._bus.write(apa102_frame(frame, self.brightness, self.order))

    def describe(self) -> str:
        return f"{self.pixels} APA102 pixels on GPIO{self._pins[0]} (data) / GPIO{self._pins[1]} (clock)"

    def close(self) -> None:
        try:
            self._bus.write(apa102_frame([(0.0, 0.0, 0.0)] * self.pixels, 0.0, self.order))
        finally:
            self._bus.close()


class Powered:
    """A driver whose LEDs need a power-enable pin held high (the ReSpeaker 4-Mic Array: GPIO5)."""

    def __init__(self, driver: LedDriver, power: gpiozero.DigitalOutputDevice, pin: int) -> None:
        self._driver = driver
        self._power = power
        self._pin = pin
        self.kind = driver.kind
        self.pixels = driver.pixels

    def write(self, frame: Any) -> None:
        self._driver.write(frame)

    def describe(self) -> str:
        return f"{self._driver.describe()}, powered by GPIO{self._pin}"

    def close(self) -> None:
        try:
            self._driver.close()
        finally:
            self._power.close()


def open_driver(settings: LedSettings, pin_factory: Any | None = None) -> LedDriver:
    """The LED driver `[leds]` describes, its power pin switched on. Raises what gpiozero raises."""
    power = None
    if settings.power_pin >= 0:
        power = gpiozero.DigitalOutputDevice(settings.power_pin, initial_value=True, pin_factory=pin_factory)
    try:
        driver: LedDriver
        if settings.driver == "gpio":
            driver = GpioLed(settings.pin, settings.active_high, pin_factory)
        elif settings.driver == "pwm":
            driver = PwmLed(settings.pin, settings.active_high, settings.brightness, pin_factory)
        elif settings.driver == "rgb":
            pins = (settings.red_pin, settings.green_pin, settings.blue_pin)
            driver = RgbLed(pins, settings.active_high, settings.brightness, pin_factory)
        else:
            driver = Apa102Strip(settings, pin_factory)
    except BaseException:
        if power is not None:
            power.close()
        raise
    return driver if power is None else Powered(driver, power, settings.power_pin)
