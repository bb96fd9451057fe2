"""The microphone path on the real capture stream (virtual card): how often it wakes the event loop."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import speak

from edgevoice.audio.settings import AudioSettings
from edgevoice.audio.sound_devices import WAKE_MS, SoundDevices
from edgevoice.devkit.rig import room_noise
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard

RATE = 48000
FRAME_MS = 20


def test_a_frame_that_may_start_speech_has_the_next_buffer_wake_the_loop_alone(sound_card: VirtualSoundCard) -> None:
    """Two buffers per wake, except after a wake whose last frame left an onset pending: the next buffer then
    wakes the loop on its own, so that the frame that starts speech is not held back by the batch."""
    voice = speak("Excuse me, where are the toilets?")
    # Twice, the second time one buffer later against the wakes: whichever buffer of a wake the frame that
    # leaves an onset pending falls in the first time, it falls in the other one the second time.
    second = RATE + voice.size + RATE + RATE * FRAME_MS // 1000
    mic = room_noise(RATE, (second + voice.size) / RATE + 0.5).astype(np.int32)
    mic[RATE : RATE + voice.size] += voice
    mic[second : second + voice.size] += voice
    seconds = mic.size / RATE
    sound_card.write_mic(np.clip(mic, -32768, 32767).astype(np.int16))

    async def scenario() -> list[tuple[int, bool, bool, int]]:
        settings = AudioSettings(input_device=MIC, output_device=SPEAKER, input_rate=RATE, output_rate=RATE)
        sound = SoundDevices(
            settings,
            asyncio.get_running_loop(),
            on_started=lambda item: None,
            on_drained=lambda: None,
            on_level=lambda level: None,
        )
        wakes = 0
        wait = sound.capture.wait

        async def counted() -> None:
            nonlocal wakes
            await wait()
            wakes += 1

        sound.capture.wait = counted  # type: ignore[method-assign]
        frames = []  # (wake, onset pending after the frame, speech started on it, batch when it was cleaned)
        try:
            sound.start()
            sound.microphone.wake_up()
            async for frame in sound.microphone.frames():
                vad = sound.microphone.front.vad
                frames.append((wakes, vad.onset_pending, frame.speech_started, sound.capture.batch))
                if len(frames) >= (seconds - 0.3) * 1000 // FRAME_MS:
                    break
        finally:
            sound.close()
        return frames

    frames = asyncio.run(scenario())
    batch = WAKE_MS // FRAME_MS
    assert batch == 2
    assert sum(started for _, _, started, _ in frames) == 2, "the voice was not detected twice"
    last_of_wake = {wake: pending for wake, pending, _, _ in frames}  # later frames of a wake overwrite earlier
    checked = 0
    for wake, _, _, batch_then in frames:
        if wake - 1 in last_of_wake:
            assert batch_then == (1 if last_of_wake[wake - 1] else batch), (wake, last_of_wake[wake - 1], batch_then)
            checked += 1
    assert any(last_of_wake.values()), "no wake ended with an onset pending"
    assert checked > 0.9 * len(frames)
