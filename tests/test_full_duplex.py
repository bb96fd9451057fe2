"""Full duplex on the whole device: the answer plays into a simulated room and comes back as echo.

With `aec`, the echo never reaches the server's VAD (no self-interruption) and a visitor talking over the
answer stops it (locally, before the server's speech_started) and the server is told what was heard. With
`gate`, the device never interrupts itself either, but nobody can talk over it (half duplex). `off` is the
control: it shows the room's echo is loud enough to make a device without echo control interrupt itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from conftest import speak
from device import Device
from room import Room, kiosk_rir

from edgevoice.audio.settings import AudioSettings
from edgevoice.config import Config, ConversationSettings
from edgevoice.devkit.emulator import EmulatorSettings, SpokenReply
from edgevoice.devkit.sound_card import ROOM_MIC, ROOM_SPEAKER, VirtualSoundCard

ANSWER_TEXT = (
    "Let me tell you about the museum. It opened in nineteen twelve, and it has three floors of paintings, "
    "a garden with old trees, and a small cafe near the entrance."
)
BARGE_IN_AFTER_S = 3.5  # the visitor talks over the answer this long after it starts


def spoken_answer() -> SpokenReply:
    """The device's answer as speech (an echo canceller learns a room from speech, not from pure tones)."""
    voice = speak(ANSWER_TEXT, 24000).astype(np.float64)
    voice *= 0.3 * 32767 / np.abs(voice).max()  # as loud as the emulator's tones
    return SpokenReply(ANSWER_TEXT, pcm=voice.astype("<i2").tobytes())


def speech_started_at(device: Device) -> list[float]:
    return [
        e["audio_start_ms"] / 1000 for e in device.emulator.sent if e["type"] == "input_audio_buffer.speech_started"
    ]


@pytest.mark.parametrize("mode", ["aec", "gate", "off"])
def test_a_visitor_talks_over_the_answer_in_a_room(sound_card: VirtualSoundCard, mode: str) -> None:
    question = 0.5 * speak("What can you tell me about this museum?").astype(np.float64)
    interruption = 0.5 * speak("Wait, where is the exit?").astype(np.float64)
    config = Config(
        audio=AudioSettings(input_device=ROOM_MIC, output_device=ROOM_SPEAKER, input_rate=48000, output_rate=48000,
                            echo=mode),  # type: ignore[arg-type]
        conversation=ConversationSettings(follow_up_s=2.0),
    )  # fmt: skip
    emulator = EmulatorSettings(realtime_factor=1.5, response_delay_s=0.2, user_transcript="a question")
    timeline: dict[str, Any] = {}

    async def scenario() -> Device:
        with Room(sound_card, kiosk_rir(48000)) as room:
            room.say(question, at=1.0)
            barge_in = room.say(interruption, after_echo_s=BARGE_IN_AFTER_S)
            async with Device(sound_card, mic=np.zeros(48000, np.int16), vad=True, emulator=emulator,
                              config=config) as device:  # fmt: skip
                device.emulator.queue_reply(spoken_answer())
                await device.wait_capture(0.3)
                device.press()
                await asyncio.sleep(0.1)
                device.release()
                await device.until(lambda: room.echo_started is not None, 20, "the answer")
                await device.until(lambda: barge_in.started is not None, 10, "the visitor's interruption")
                await asyncio.sleep(4.0)
                timeline["echo"] = room.t0 + room.echo_started - device.t0
                timeline["barge_in"] = room.t0 + barge_in.started - device.t0
            assert room.error is None, room.error
        return device

    device = asyncio.run(scenario())
    interrupted = [e["t"] for e in device.of("interrupted")]
    starts = speech_started_at(device)
    if mode == "aec":
        # The question and the interruption; never the device's own voice.
        assert len(starts) == 2, (starts, device.states)
        assert len(interrupted) == 1 and timeline["barge_in"] < interrupted[0] < timeline["barge_in"] + 0.5
        (truncate,) = device.sent("conversation.item.truncate")
        assert 0.5 * BARGE_IN_AFTER_S * 1000 < truncate["audio_end_ms"] < (BARGE_IN_AFTER_S + 1.0) * 1000
    elif mode == "gate":
        assert len(starts) == 1, starts  # half duplex: the visitor cannot get through while it speaks
        assert not interrupted and not device.sent("conversation.item.truncate")
    else:  # off: the control
        assert interrupted and interrupted[0] < timeline["barge_in"], "the room's echo is too weak to test anything"
