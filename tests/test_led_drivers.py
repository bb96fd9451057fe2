"""APA102/DotStar frames, byte for byte against the datasheet, as they leave gpiozero's (mock) pins.

The expected bytes are written out by hand from the APA102 datasheet's frame format: a start frame of
32 zero bits; per LED 0b111, a 5-bit global brightness, then blue, green, red; then the end frame.
"""

from __future__ import annotations

import logging
import warnings

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockSPIClockPin, MockSPIDevice

from edgevoice.hw.led_drivers import Apa102Strip, apa102_frame, open_driver
from edgevoice.hw.settings import LedSettings

START = [0x00, 0x00, 0x00, 0x00]
END = [0x00, 0x00, 0x00, 0x00]
RED, GREEN, BLUE, WHITE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 1.0)


def test_frame_format_from_the_datasheet() -> None:
    assert list(apa102_frame([RED, GREEN, BLUE], 1.0)) == [
        *START,
        0b111_11111, 0x00, 0x00, 0xFF,  # red: B, G, R
        0b111_11111, 0x00, 0xFF, 0x00,  # green
        0b111_11111, 0xFF, 0x00, 0x00,  # blue
        *END,
    ]  # fmt: skip


def test_brightness_limit_goes_in_the_five_bit_field() -> None:
    assert list(apa102_frame([WHITE], 0.5)) == [*START, 0b111_10000, 0xFF, 0xFF, 0xFF, *END]  # 16/31
    assert list(apa102_frame([WHITE], 0.01)) == [*START, 0b111_00001, 0xFF, 0xFF, 0xFF, *END]  # never 0 if lit
    assert list(apa102_frame([WHITE], 0.0)) == [*START, 0b111_00000, 0xFF, 0xFF, 0xFF, *END]
    # Animation levels use the colour bytes: 0.5 of (0, 0.2, 1.0) -> 0, 26, 128 (rounded).
    assert list(apa102_frame([(0.0, 0.1, 0.5)], 1.0)) == [*START, 0xFF, 128, 26, 0, *END]


def test_end_frame_grows_with_the_strip_and_clones_can_reorder() -> None:
    assert len(apa102_frame([RED] * 64, 1.0)) == 4 + 64 * 4 + 4  # n/2 = 32 bits: the 4 bytes suffice
    assert apa102_frame([RED] * 100, 1.0)[-11:] == bytes([0xFF, 0, 0, 0xFF]) + bytes(7)
    assert len(apa102_frame([RED] * 100, 1.0)) == 4 + 400 + 7  # 50 clocks -> 7 bytes
    assert list(apa102_frame([RED], 1.0, order="rgb")) == [*START, 0xFF, 0xFF, 0x00, 0x00, *END]


def bits_to_bytes(bits: list[int]) -> list[int]:
    assert len(bits) % 8 == 0
    return [int("".join(str(int(b)) for b in bits[i : i + 8]), 2) for i in range(0, len(bits), 8)]


def test_respeaker_pixels_over_spi0_ce1(monkeypatch: pytest.MonkeyPatch) -> None:
    """ReSpeaker HATs: SPI0, chip select 1; gpiozero's SPI on the mock factory clocks the bits out."""
    factory = MockFactory()
    # gpiozero's software SPI bus looks up the global pin factory even when given one.
    monkeypatch.setattr(Device, "pin_factory", factory)
    receiver = MockSPIDevice(clock_pin=11, mosi_pin=10, select_pin=7, pin_factory=factory)  # CE1 = GPIO7
    strip = Apa102Strip(LedSettings(driver="apa102", count=3, brightness=1.0), factory)
    strip.write([RED, GREEN, BLUE])
    assert bits_to_bytes(receiver.rx_buf) == list(apa102_frame([RED, GREEN, BLUE], 1.0))
    assert bits_to_bytes(receiver.rx_buf)[4:8] == [0xFF, 0x00, 0x00, 0xFF]
    strip.close()
    assert bits_to_bytes(receiver.rx_buf) == START + [0b111_00000, 0, 0, 0] * 3 + END  # dark on close


class PinRecorder:
    """Samples the data pin on each rising clock edge (SPI mode 0), as an APA102 does."""

    def __init__(self, factory: MockFactory, data_pin: int, clock_pin: int) -> None:
        self.clock = factory.pin(clock_pin, pin_class=MockSPIClockPin)
        self.clock.spi_devices.append(self)
        self.data = factory.pin(data_pin)
        self.bits: list[int] = []

    def on_clock(self) -> None:
        if self.clock.state:
            self.bits.append(int(self.data.state))


def test_voice_bonnet_dotstars_bit_banged_on_gpio5_and_gpio6() -> None:
    factory = MockFactory()
    recorder = PinRecorder(factory, data_pin=5, clock_pin=6)
    strip = Apa102Strip(LedSettings(driver="apa102", count=3, data_pin=5, clock_pin=6, brightness=0.3), factory)
    strip.write([(0.0, 0.2, 1.0)] * 3)
    level = 0b111_00000 | 9  # round(0.3 * 31)
    assert bits_to_bytes(recorder.bits) == [*START, *[level, 0xFF, 51, 0x00] * 3, *END]
    strip.close()


def test_without_spi_the_spi_pins_are_bit_banged(caplog: pytest.LogCaptureFixture) -> None:
    """No usable SPI (here: gpiozero cannot build its SPI without a global factory): same bytes, by hand."""
    caplog.set_level(logging.INFO)
    factory = MockFactory()
    recorder = PinRecorder(factory, data_pin=10, clock_pin=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strip = Apa102Strip(LedSettings(driver="apa102", count=12), factory)
    strip.write([GREEN] * 12)
    assert bits_to_bytes(recorder.bits) == list(apa102_frame([GREEN] * 12, 1.0))
    assert any("no SPI0" in r.getMessage() for r in caplog.records)
    strip.close()


def test_power_pin_is_held_high_while_the_leds_are_open(monkeypatch: pytest.MonkeyPatch) -> None:
    factory = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", factory)
    MockSPIDevice(clock_pin=11, mosi_pin=10, select_pin=7, pin_factory=factory)
    driver = open_driver(LedSettings(driver="apa102", count=12, power_pin=5), factory)
    assert factory.pin(5).state is True
    assert driver.pixels == 12 and "powered by GPIO5" in driver.describe()
    driver.close()
