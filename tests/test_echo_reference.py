"""The far-end reference: what the playback callback played, in step with the capture frames.

The unit tests drive the tap as PortAudio's callback would (buffers of the device rate, with jitter); the
last test goes through the real path: PortAudio playback on the virtual card, captured back through the
sound server's monitor of the same sink (an echo path of pure delay), cancelled with the real reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import speak
from scipy.signal import correlate

from edgevoice.audio.bridge import CaptureStream, PlaybackStream
from edgevoice.audio.devices import (
    DeviceInfo,
    StreamFormat,
    find_device,
    list_devices,
    negotiate_format,
    open_portaudio,
)
from edgevoice.audio.duplex import EchoFrontEnd
from edgevoice.audio.echo import EchoCanceller
from edgevoice.audio.echo_reference import EchoReference
from edgevoice.audio.handover import Handover
from edgevoice.audio.microphone import Microphone
from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.audio.settings import AudioSettings
from edgevoice.audio.speaker import Speaker
from edgevoice.devkit.sound_card import SPEAKER, VirtualSoundCard

DEVICE_RATE = 48000
BUFFER = 960  # 20 ms at 48 kHz, as the daemon opens the stream


@dataclass
class FakePlayback:
    """What EchoReference reads of a PlaybackStream, driven by hand instead of by PortAudio."""

    channels: int = 2
    format: StreamFormat = field(init=False)
    tap: Handover = field(init=False)

    def __post_init__(self) -> None:
        self.format = StreamFormat(DeviceInfo(0, "fake", 0, self.channels, DEVICE_RATE, "none"), DEVICE_RATE, 2)
        self.tap = Handover(DEVICE_RATE, self.channels, np.dtype(np.int16), BUFFER)

    delivered: int = 0

    def callback(self, samples: np.ndarray) -> None:
        """The playback callback handing one buffer to PortAudio (the same samples on every channel)."""
        self.delivered += 1
        self.tap.put(np.repeat(samples[:, None], self.channels, axis=1).astype(np.int16).tobytes(), self.delivered)


def program(seconds: float) -> np.ndarray:
    """A signal whose every 20 ms is different, at the device rate."""
    rng = np.random.default_rng(3)
    return to_int16(rng.standard_normal(int(DEVICE_RATE * seconds)) * 3000)


def expected_at_24k(x: np.ndarray) -> np.ndarray:
    r = StreamResampler(DEVICE_RATE, 24000)
    return to_int16(np.concatenate((r.process(x), r.flush())))


def offset_in(reference: np.ndarray, expected: np.ndarray) -> int | None:
    """Where `reference` (a stretch of frames) sits in `expected`, if it is an exact copy of a stretch of it."""
    head = reference[:64]
    for start in np.flatnonzero(expected == head[0]):
        stretch = expected[start : start + reference.size]
        if stretch.size == reference.size and np.array_equal(stretch, reference):
            return int(start)
    return None


def test_reference_is_the_played_stream_in_step_with_the_capture_despite_jitter() -> None:
    stream = FakePlayback()
    reference = EchoReference(stream, frame_samples=480)  # type: ignore[arg-type]
    x = program(6.0)
    buffers = [x[i : i + BUFFER] for i in range(0, x.size, BUFFER)]
    frames = []
    rng = np.random.default_rng(0)
    for buf in buffers:  # every 20 ms one playback callback and one capture frame, in either order
        if rng.random() < 0.5:
            stream.callback(buf)
            frames.append(reference.next_frame())
        else:
            frames.append(reference.next_frame())
            stream.callback(buf)
    # The first late callbacks grow the lead (shifting the reference once each); then it runs clean.
    got = np.concatenate(frames[len(frames) // 3 :])
    assert offset_in(got, expected_at_24k(x)) is not None, "the reference is not one continuous copy"
    assert reference.gaps <= 2
    assert reference.lead <= 24000 * 40 // 1000


def test_a_handover_takes_only_what_was_stamped_by_then() -> None:
    handover = Handover(DEVICE_RATE, 1, np.dtype(np.int16), 2)
    for stamp, value in ((1, 10), (2, 20), (3, 30)):
        handover.put(np.full(2, value, np.int16).tobytes(), stamp)
    assert handover.take(through=2)[:, 0].tolist() == [10, 10, 20, 20]
    assert handover.stamps == [1, 2]
    assert handover.take(through=2).size == 0  # buffer 3 stays until a capture stamped 3 or later asks for it
    assert handover.take()[:, 0].tolist() == [30, 30]
    assert handover.stamps == [3]


def reference_frames(stream: FakePlayback, x: np.ndarray, read_every: int, rng: np.random.Generator) -> np.ndarray:
    """The reference frames for each capture frame, the capture read by the loop every `read_every` frames,
    each playback callback landing before or after its capture callback at random (the two run on separate
    threads). Each capture buffer is stamped with the playback count at its callback, as bridge.py does."""
    reference = EchoReference(stream, frame_samples=480)  # type: ignore[arg-type]
    frames, stamps = [], []
    for k in range(x.size // BUFFER):
        buf = x[k * BUFFER : (k + 1) * BUFFER]
        late = rng.random() < 0.5
        if not late:
            stream.callback(buf)
        stamps.append(stream.delivered)  # the capture callback of frame k
        if late:
            stream.callback(buf)
        if len(stamps) == read_every:  # the loop wakes and cleans what the capture holds
            for stamp in stamps:
                reference.through = stamp
                frames.append(reference.next_frame())
            stamps.clear()
    return np.concatenate(frames)


def test_the_pairing_does_not_depend_on_how_often_the_loop_reads_the_capture() -> None:
    """Batches of one, two or three capture buffers per wake give the canceller the same reference, frame
    for frame: the stamp says what had played when each was recorded, whenever the loop gets to it."""
    x = program(4.0)
    one, two, three = (reference_frames(FakePlayback(), x, n, np.random.default_rng(0)) for n in (1, 2, 3))
    n = min(one.size, two.size, three.size)
    assert n >= 3 * 24000
    assert np.array_equal(one[:n], two[:n]) and np.array_equal(one[:n], three[:n])
    assert offset_in(one[n // 3 : n], expected_at_24k(x)) is not None, "the reference is not one continuous copy"


class FailingOnce(EchoCanceller):
    """A canceller with a fault on its third frame (standing for any bug in the DSP)."""

    frames = 0

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        self.frames += 1
        if self.frames == 3:
            raise ValueError("a bug in the DSP")
        return super().process(near, far)


def test_a_fault_in_the_echo_control_costs_a_frame_not_the_microphone(caplog: pytest.LogCaptureFixture) -> None:
    stream = FakePlayback()
    front = EchoFrontEnd(AudioSettings(), stream)  # type: ignore[arg-type]
    front.control = FailingOnce(24000, 480)
    voice = to_int16(np.random.default_rng(1).standard_normal(480) * 2000)
    out = []
    for _ in range(6):
        stream.callback(np.zeros(BUFFER, np.int16))
        out.append(front.process(voice)[0])
    assert front.failures == 1 and not out[2].any()  # the frame it failed on went on as silence
    assert all(frame.any() for frame in out[4:])  # then cleaned as before (after the canceller's 20 ms lag)
    (record,) = [r for r in caplog.records if "echo control failed" in r.getMessage()]
    assert record.exc_info is not None  # with the traceback, for the report


def test_a_late_callback_leaves_a_short_gap_and_no_lasting_shift() -> None:
    stream = FakePlayback(channels=1)
    reference = EchoReference(stream, frame_samples=480, max_lead_ms=5.0)  # type: ignore[arg-type]
    x = program(3.0)
    buffers = [x[i : i + BUFFER] for i in range(0, x.size, BUFFER)]
    frames = []
    for k, buf in enumerate(buffers):
        if k == 60:  # this callback comes late, after the capture frame it belonged with
            frames.append(reference.next_frame())
            stream.callback(buf)
            continue
        stream.callback(buf)
        frames.append(reference.next_frame())
    expected = expected_at_24k(x)
    before = offset_in(np.concatenate(frames[20:59]), expected)
    after = offset_in(np.concatenate(frames[62:140]), expected)
    assert before is not None and after is not None
    assert after - before == 62 * 480 - 20 * 480  # the same alignment on both sides of the gap
    assert reference.gaps == 1


def test_silence_when_playback_stops_and_a_fresh_start_when_it_resumes() -> None:
    stream = FakePlayback()
    reference = EchoReference(stream, frame_samples=480)  # type: ignore[arg-type]
    x = program(2.0)
    for i in range(0, DEVICE_RATE, BUFFER):
        stream.callback(x[i : i + BUFFER])
        reference.next_frame()
    quiet = [reference.next_frame() for _ in range(20)]  # the stream stopped (closed, or an error)
    assert not np.any(quiet[-1])
    for i in range(DEVICE_RATE, x.size, BUFFER):
        stream.callback(x[i : i + BUFFER])
        frame = reference.next_frame()
    assert np.any(frame)


def test_a_tap_that_overflowed_is_started_afresh() -> None:
    stream = FakePlayback()
    reference = EchoReference(stream, frame_samples=480)  # type: ignore[arg-type]
    x = program(3.0)
    for i in range(0, x.size, BUFFER):  # three seconds of callbacks while the loop was stuck: 1 s fits
        stream.callback(x[i : i + BUFFER])
    assert stream.tap.lost > 0
    frames = [reference.next_frame()]
    assert not np.any(frames[0])  # what is left in the tap is not trusted
    y = program(1.0)
    for i in range(0, y.size, BUFFER):
        stream.callback(y[i : i + BUFFER])
        frames.append(reference.next_frame())
    assert offset_in(np.concatenate(frames[5:]), expected_at_24k(y)) is not None


def test_echo_of_the_real_playback_path_is_cancelled(sound_card: VirtualSoundCard) -> None:
    """Play an answer through PortAudio, hear it back through the sound server's monitor, cancel it."""
    answer = speak("Hello! The exhibition on the ground floor shows the history of the harbour, from the piers.", 24000)

    async def scenario() -> tuple[np.ndarray, np.ndarray, EchoReference, EchoCanceller]:
        loop = asyncio.get_running_loop()
        pa = open_portaudio()
        try:
            devices = list_devices(pa)
            mic = negotiate_format(pa, find_device(devices, "pulse", "input"), "input", DEVICE_RATE, 1)
            spk = negotiate_format(pa, find_device(devices, SPEAKER, "output"), "output", DEVICE_RATE, 1)
            capture = CaptureStream(pa, mic, BUFFER, loop)
            playback = PlaybackStream(pa, spk, BUFFER, tap_seconds=1.0)
            speaker = Speaker(playback, on_started=lambda item: None, on_drained=lambda: None)
            reference = EchoReference(playback)
            canceller = EchoCanceller(24000, 480)
            playback.start()
            capture.start()
            pump = asyncio.create_task(speaker.run())
            near, out = [], []
            started = time.monotonic()
            async for frame in Microphone(capture).frames():
                near.append(frame.copy())
                out.append(canceller.process(frame, reference.next_frame()))
                if len(near) == 10:
                    speaker.push("answer", answer)
                if time.monotonic() - started > answer.size / 24000 + 0.6:
                    break
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            capture.close()
            playback.close()
        finally:
            pa.terminate()
        return np.concatenate(near), np.concatenate(out), reference, canceller

    near, out, reference, canceller = asyncio.run(scenario())
    rate, w = 24000, 2400
    assert np.sqrt(np.mean(near[rate : 3 * rate].astype(float) ** 2)) > 1000, "the answer was not heard back"
    assert canceller.delay_estimator.delay is not None  # it measured the sound server's latency
    # Once the filter has learnt the path (2 s), what is left of the answer is more than 30 dB down.
    windows = [slice(k * w, (k + 1) * w) for k in range(2 * rate // w, near.size // w)]
    loud = [s for s in windows if np.mean(near[s].astype(float) ** 2) > 1e5]
    mic_energy = sum(float(np.sum(near[s].astype(float) ** 2)) for s in loud)
    out_energy = sum(float(np.sum(out[s].astype(float) ** 2)) for s in loud)
    assert len(loud) > 10
    assert 10 * np.log10(mic_energy / max(out_energy, 1.0)) > 30
    assert reference.gaps <= 3


def test_a_visitor_talking_over_the_answer_is_heard_at_once_and_the_answer_never(sound_card: VirtualSoundCard):
    """The whole front end on the real path: the answer plays (and is heard back through the monitor),
    a visitor's voice is mixed in by a second stream; the local VAD fires for the visitor only."""
    answer = speak("The exhibition on the ground floor shows the history of the harbour, from the first "
                   "wooden piers to the container terminal of today.", 24000)  # fmt: skip
    question = (speak("Excuse me, where are the toilets?", DEVICE_RATE) * 0.5).astype(np.int16)
    visitor_at = 4.0  # s after the answer starts: past the canceller's learning time

    async def scenario() -> tuple[np.ndarray, list[int], int]:
        loop = asyncio.get_running_loop()
        pa = open_portaudio()
        try:
            devices = list_devices(pa)
            mic = negotiate_format(pa, find_device(devices, "pulse", "input"), "input", DEVICE_RATE, 1)
            spk = negotiate_format(pa, find_device(devices, SPEAKER, "output"), "output", DEVICE_RATE, 1)
            room = negotiate_format(pa, find_device(devices, "pulse", "output"), "output", DEVICE_RATE, 1)
            capture = CaptureStream(pa, mic, BUFFER, loop)
            playback = PlaybackStream(pa, spk, BUFFER, tap_seconds=1.0)
            visitor = PlaybackStream(pa, room, BUFFER)  # the visitor's mouth: no tap, it is not the device
            speaker = Speaker(playback, on_started=lambda item: None, on_drained=lambda: None)
            front = EchoFrontEnd(AudioSettings(), playback)
            for stream in (playback, visitor, capture):
                stream.start()
            pump = asyncio.create_task(speaker.run())
            near, onsets = [], []
            async for frame in Microphone(capture).frames():
                near.append(frame.copy())
                if front.process(frame)[1]:
                    onsets.append(len(near))
                if len(near) == 10:
                    speaker.push("answer", answer)
                if len(near) == 10 + round(visitor_at * 50):
                    visitor.ring.write(question)
                if len(near) > 10 + answer.size // 480 + 25:
                    break
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            for stream in (capture, playback, visitor):
                stream.close()
        finally:
            pa.terminate()
        return np.concatenate(near), onsets, front.reference.gaps

    near, onsets, gaps = asyncio.run(scenario())
    # Where the visitor's voice starts in what the microphone captured (it comes through another stream,
    # with its own latency): the lag of the best match of the question, resampled, in the capture.
    voice = StreamResampler(DEVICE_RATE, 24000).process(question.astype(np.float64))
    lag = int(np.argmax(correlate(near.astype(np.float64), voice, "valid", method="fft")))
    talk_starts = lag + int(np.flatnonzero(np.abs(voice) > 0.05 * np.abs(voice).max())[0])
    assert onsets, "the visitor was not detected"
    first = onsets[0] * 480  # the end of the frame that fired, in samples of the capture
    assert first >= talk_starts, f"fired on the answer alone, {(talk_starts - first) / 24:.0f} ms before the visitor"
    assert (first - talk_starts) / 24 <= 100, f"{(first - talk_starts) / 24:.0f} ms after the visitor started"
    assert gaps <= 3
