"""Finding and opening sound devices through the real PortAudio/ALSA stack (the virtual card)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import CARD
from scipy.signal import resample_poly

from edgevoice.audio.bridge import CaptureStream
from edgevoice.audio.devices import AudioDeviceError, find_device, list_devices, negotiate_format, open_portaudio
from edgevoice.audio.microphone import Microphone
from edgevoice.audio.resample import to_int16
from edgevoice.virtual_audio import MIC, MIC_FAST, SPEAKER


@pytest.fixture
def pa():  # type: ignore[no-untyped-def]
    pa = open_portaudio()
    yield pa
    pa.terminate()


def test_devices_are_found_by_exact_name_part_or_index(pa) -> None:  # type: ignore[no-untyped-def]
    devices = list_devices(pa)
    mic = find_device(devices, MIC, "input")
    assert mic.name == MIC  # exact beats ev_mic_fast, which also contains "ev_mic"
    assert find_device(devices, "MIC_F", "input").name == MIC_FAST
    assert find_device(devices, mic.index, "input") == mic
    assert find_device(devices, "spk", "output").name == SPEAKER


def test_a_missing_device_lists_what_is_there(pa) -> None:  # type: ignore[no-untyped-def]
    devices = list_devices(pa)
    with pytest.raises(AudioDeviceError) as err:
        find_device(devices, "ReSpeaker", "input")
    assert "no input device whose name contains 'ReSpeaker'" in str(err.value)
    assert MIC in str(err.value) and "Set [audio] input_device" in str(err.value)
    with pytest.raises(AudioDeviceError, match="no output device with index 999"):
        find_device(devices, 999, "output")


def test_a_refused_format_says_what_the_device_accepts(pa) -> None:  # type: ignore[no-untyped-def]
    mic = find_device(list_devices(pa), MIC, "input")
    assert negotiate_format(pa, mic, "input").channels == 1  # 0 = mono when the device allows it
    assert negotiate_format(pa, mic, "input", 16000, 2).rate == 16000
    with pytest.raises(AudioDeviceError) as err:
        negotiate_format(pa, mic, "input", rate=100)
    assert "refuses 100 Hz" in str(err.value)
    assert "it accepts 48000, 44100, 32000, 24000, 22050, 16000, 8000 Hz: set [audio] input_rate" in str(err.value)
    with pytest.raises(AudioDeviceError, match="refuses 48000 Hz with 33 channel"):
        negotiate_format(pa, mic, "input", rate=48000, channels=33)


def test_capture_delivers_the_microphone_exactly_at_any_rate_and_channel(pa) -> None:  # type: ignore[no-untyped-def]
    """16 kHz stereo, second channel: the frames are that channel, resampled to 24 kHz, sample for sample."""
    rng = np.random.default_rng(7)
    wanted = to_int16(rng.standard_normal(16000 * 2) * 4000)
    other = to_int16(rng.standard_normal(wanted.size) * 4000)
    CARD.write_mic(np.column_stack((other, wanted)).reshape(-1), fast=True)
    fmt = negotiate_format(pa, find_device(list_devices(pa), MIC_FAST, "input"), "input", 16000, 2)

    async def capture() -> list[np.ndarray]:
        stream = CaptureStream(pa, fmt, 320, asyncio.get_running_loop(), max_queued=1000)
        mic = Microphone(stream, channel=1)
        frames: list[np.ndarray] = []
        stream.start()
        try:
            async for frame in mic.frames():
                frames.append(frame)
                if len(frames) == 90:  # 1.8 s of the 2 s script
                    break
        finally:
            stream.close()
        assert stream.dropped == 0
        return frames

    got = np.concatenate(asyncio.run(capture()))
    expected = to_int16(resample_poly(wanted.astype(np.float64), 3, 2))
    assert np.array_equal(got, expected[: got.size])
