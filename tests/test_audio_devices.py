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
from edgevoice.devkit.sound_card import MIC, MIC_FAST, SPEAKER


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
        stream = CaptureStream(pa, fmt, 320, asyncio.get_running_loop(), ring_seconds=30)
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


def test_a_32_bit_microphone_is_captured_at_its_width(pa) -> None:  # type: ignore[no-untyped-def]
    """I2S HATs (AC108, the AIY voice HAT) capture 32-bit only: the frames are the same as at 16 bits."""
    rng = np.random.default_rng(11)
    voice = to_int16(rng.standard_normal(48000) * 3000)
    CARD.write_mic(voice.astype("<i4") << 16, fast=True)  # what a 32-bit device delivers
    device = find_device(list_devices(pa), MIC_FAST, "input")
    fmt = negotiate_format(pa, device, "input", 48000, 1, "int32")
    assert fmt.width == 4

    async def capture() -> list[np.ndarray]:
        stream = CaptureStream(pa, fmt, 960, asyncio.get_running_loop(), ring_seconds=30)
        mic = Microphone(stream)
        frames: list[np.ndarray] = []
        stream.start()
        try:
            async for frame in mic.frames():
                frames.append(frame)
                if len(frames) == 40:
                    break
        finally:
            stream.close()
        return frames

    got = np.concatenate(asyncio.run(capture()))
    expected = to_int16(resample_poly(voice.astype(np.float64), 1, 2))
    assert np.array_equal(got, expected[: got.size])


def test_a_32_bit_speaker_gets_the_signal_in_the_top_16_bits() -> None:
    from edgevoice.audio.devices import DeviceInfo, StreamFormat
    from edgevoice.audio.ring import SampleRing
    from edgevoice.audio.speaker import Speaker

    class Device:
        format = StreamFormat(DeviceInfo(0, "i2s", 0, 2, 24000, "ALSA"), 24000, 1, 4)
        ring = SampleRing(4800, 1, np.int32)

    speaker = Speaker(Device(), on_started=lambda item: None, on_drained=lambda: None)  # type: ignore[arg-type]
    speaker.push("a1", np.array([1000, -2000, 3000] * 400, np.int16))
    speaker._fill()
    out = np.zeros((1200, 1), np.int32)
    Device.ring.read_into(out)
    assert out.dtype == np.int32 and np.array_equal(out[:3, 0], np.array([1000, -2000, 3000]) << 16)
