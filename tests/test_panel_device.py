"""The whole device with a pixel-LED board: gestures through the daemon, device states on the pixels."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import silence, speak
from device import Device
from test_led_drivers import PinRecorder, bits_to_bytes

from edgevoice.config import Config, ConversationSettings
from edgevoice.devkit.sound_card import VirtualSoundCard
from edgevoice.hw.led_drivers import apa102_frame
from edgevoice.hw.leds import LOOKS
from edgevoice.hw.settings import LedSettings

FRAME_BITS = (4 + 3 * 4 + 4) * 8


def test_states_reach_the_voice_bonnet_pixels_and_gestures_reach_the_daemon(sound_card: VirtualSoundCard) -> None:
    speech = speak("Hello.")
    config = Config(
        conversation=ConversationSettings(follow_up_s=1.0),
        leds=LedSettings(driver="apa102", count=3, data_pin=5, clock_pin=6, brightness=0.5),
    )
    seen: dict[str, list[int]] = {}

    async def scenario() -> Device:
        device = Device(sound_card, mic=np.concatenate((silence(0.5), speech, silence(20))), config=config)
        recorder = PinRecorder(device.factory, data_pin=5, clock_pin=6)  # before the daemon opens the pins
        async with device:
            await device.wait_capture(0.3)
            device.press()
            await device.wait_state("listening")
            await asyncio.sleep(0.1)
            seen["listening"] = bits_to_bytes(recorder.bits[-FRAME_BITS:])
            await device.wait_capture(0.5 + len(speech) / 48000 + 0.2)
            device.release()
            await device.wait_state("idle", after="speaking")
            await asyncio.sleep(0.1)
            seen["idle"] = bits_to_bytes(recorder.bits[-FRAME_BITS:])
        return device

    device = asyncio.run(scenario())
    assert seen["listening"] == list(apa102_frame([LOOKS["listening"].colour] * 3, 0.5))
    assert seen["idle"] == list(apa102_frame([(0.0, 0.0, 0.0)] * 3, 0.5))
    buttons = [(e["gesture"], e["action"], e["phase"]) for e in device.of("button")]
    assert buttons == [("hold", "talk", "start"), ("hold", "talk", "end")]
    assert [e["pattern"] for e in device.of("led")][:3] == ["off", "blue spin", "blue steady"]
    assert any("GPIO through MockFactory" in line and "APA102" in line for line in device.log.lines)
