"""Benchmark of the audio pipeline: the resampler, the uplink and downlink CPU, and the whole device.

    .venv/bin/python bench/pipeline.py        (after scripts/dev-setup --bench)

Every figure is printed beside the anchor it is compared with, measured in the same run on the same
input: the resampler beside soxr.ResampleStream (and naive per-chunk resample_poly); the pipelines
beside the same pipeline with soxr doing the resampling; the running device beside the same device idle.
CPU is process time (all threads of this process); the emulator peer runs in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
from scipy.signal import resample_poly

from edgevoice.audio.microphone import FrameConverter
from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.realtime import events, server_events
from edgevoice.realtime.session import RealtimeSession
from edgevoice.realtime.settings import RealtimeSettings, TranscriptionSettings, TurnDetectionSettings

FRAME_MS = 20
PTT = RealtimeSettings(turn_detection=TurnDetectionSettings(type="none"), transcription=TranscriptionSettings(model=""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def peer(reply_s: float = 1.0):  # type: ignore[no-untyped-def]
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_peer.py")), str(port), str(reply_s)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        proc.terminate()
        proc.wait(10)


def test_signal(rate: int, seconds: float) -> np.ndarray:
    """Speech-like test signal: harmonics of a wandering pitch, syllable envelope, a little noise."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.2 + 0.8 * np.clip(np.sin(2 * np.pi * 3 * t), 0, 1)
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.01
    return to_int16(9000 * (voice * envelope + noise))


# ---- 1. resampler ------------------------------------------------------------------------------------


def per_frame_us(process: Callable[[np.ndarray], object], frames: list[np.ndarray], repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for frame in frames:
            process(frame)
        runs.append((time.perf_counter() - t) / len(frames) * 1e6)
    return statistics.median(runs)


def bench_resampler() -> None:
    print("1. Resampler, cost per 20 ms frame (median of 5 runs over 10 s of audio)")
    print(f"   {'rates':<16}{'edgevoice':>12}{'soxr HQ':>12}{'soxr VHQ':>12}{'naive':>12}   (us per frame)")
    for rin, rout in ((48000, 24000), (44100, 24000), (16000, 24000), (24000, 48000)):
        x = test_signal(rin, 10.0)
        n = rin * FRAME_MS // 1000
        frames = [x[i : i + n] for i in range(0, x.size - n + 1, n)]
        ours = StreamResampler(rin, rout)
        hq = soxr.ResampleStream(rin, rout, 1, dtype="int16", quality="HQ")
        vhq = soxr.ResampleStream(rin, rout, 1, dtype="int16", quality="VHQ")
        g = np.gcd(rin, rout)
        cols = [
            per_frame_us(lambda f, ours=ours: to_int16(ours.process(f)), frames),
            per_frame_us(hq.resample_chunk, frames),
            per_frame_us(vhq.resample_chunk, frames),
            per_frame_us(lambda f, up=rout // g, down=rin // g: resample_poly(f, up, down), frames),
        ]
        print(f"   {f'{rin} -> {rout}':<16}" + "".join(f"{c:>12.1f}" for c in cols))
    print("   naive = scipy resample_poly on each frame alone (what the stream must not do: clicks at every edge)")


# ---- 2. uplink and downlink --------------------------------------------------------------------------


class SoxrConverter:
    """FrameConverter with soxr doing the resampling: the anchor for the uplink figure."""

    def __init__(self, rate: int) -> None:
        self._stream = soxr.ResampleStream(rate, 24000, 1, dtype="int16", quality="HQ")
        self._pending = np.zeros(0, np.int16)

    def convert(self, block: np.ndarray) -> list[np.ndarray]:
        out = self._stream.resample_chunk(block[:, 0])
        pending = np.concatenate((self._pending, out))
        n = len(pending) // 480
        self._pending = pending[n * 480 :].copy()
        return [pending[i * 480 : (i + 1) * 480] for i in range(n)]


async def uplink_cpu(url: str, converter: FrameConverter | SoxrConverter, seconds: float) -> float:
    """CPU ms per second of 48 kHz capture: pick channel, resample, base64/JSON encode, send."""
    x = test_signal(48000, seconds)
    raws = [x[i : i + 960].reshape(-1, 1) for i in range(0, x.size - 959, 960)]  # device frames, as captured
    session = RealtimeSession(PTT.__class__(**{**PTT.__dict__, "url": url}), "bench", lambda e: None)
    await session.open()
    start = time.process_time()
    for i, raw in enumerate(raws):
        for frame in converter.convert(raw):
            session.append_audio(frame)
        if i % 10 == 0:
            await asyncio.sleep(0)
    while session._outbox.qsize():
        await asyncio.sleep(0.001)
    cpu = time.process_time() - start
    await session.close()
    return cpu * 1000 / (len(raws) * FRAME_MS / 1000)


async def receive_answer(url: str) -> tuple[float, list[tuple[str, np.ndarray]]]:
    """CPU ms per second of answer audio to receive, parse and base64-decode it; returns the decoded audio."""
    done = asyncio.Event()
    deltas: list[tuple[str, np.ndarray]] = []

    def on_event(event: server_events.ServerEvent) -> None:
        if isinstance(event, server_events.AudioDelta):
            deltas.append((event.item_id, event.samples))
        elif isinstance(event, server_events.ResponseDone):
            done.set()

    session = RealtimeSession(PTT.__class__(**{**PTT.__dict__, "url": url}), "bench", on_event)
    await session.open()
    start = time.process_time()
    session.send(events.response_create())
    await done.wait()
    cpu = time.process_time() - start
    await session.close()
    return cpu * 1000 / (sum(len(d) for _, d in deltas) / 24000), deltas


def play_out_cpu(deltas: list[tuple[str, np.ndarray]], use_soxr: bool) -> float:
    """CPU ms per second of answer audio to play it out: PlayoutBuffer, resample to 48 kHz, the device ring,
    and the PortAudio callback's copy out of the ring (everything but PortAudio itself)."""
    from edgevoice.audio.devices import DeviceInfo, StreamFormat
    from edgevoice.audio.ring import SampleRing
    from edgevoice.audio.speaker import Speaker

    class Device:  # what the Speaker needs of a PlaybackStream
        format = StreamFormat(DeviceInfo(0, "bench", 0, 1, 48000, "none"), 48000, 1)
        ring = SampleRing(48000 * 2, 1)

    speaker = Speaker(Device(), on_started=lambda item: None, on_drained=lambda: None)  # type: ignore[arg-type]
    if use_soxr:
        stream = soxr.ResampleStream(24000, 48000, 1, dtype="float64", quality="HQ")
        speaker._resampler.process = lambda x: stream.resample_chunk(np.asarray(x, np.float64))  # type: ignore[method-assign]
    out = np.zeros((960, 1), np.int16)
    start = time.process_time()
    for item, samples in deltas:
        speaker.push(item, samples)
    while speaker.busy:
        speaker._fill()  # the pump's work, without its 10 ms pacing sleeps
        Device.ring.read_into(out)  # the callback's share: one copy per 20 ms
    cpu = time.process_time() - start
    return cpu * 1000 / (sum(len(d) for _, d in deltas) / 24000)


def bench_pipelines() -> None:
    print("\n2. Pipelines without the sound card, CPU per second of audio (ms of one core = 0.1 % per ms)")
    with peer(reply_s=30.0) as url:
        up = asyncio.run(uplink_cpu(url, FrameConverter(48000, 1), 30.0))
        up_soxr = asyncio.run(uplink_cpu(url, SoxrConverter(48000), 30.0))
        receive, deltas = asyncio.run(receive_answer(url))
    play, play_soxr = play_out_cpu(deltas, use_soxr=False), play_out_cpu(deltas, use_soxr=True)
    down, down_soxr = receive + play, receive + play_soxr
    print(f"   {'':<54}{'edgevoice':>10}{'with soxr':>11}")
    print(f"   {'uplink: 48 kHz capture -> resample -> encode -> send':<54}{up:>10.1f}{up_soxr:>11.1f}")
    print(f"   {'downlink: receive -> decode -> play out -> 48 kHz':<54}{down:>10.1f}{down_soxr:>11.1f}")
    print(f"   {'  of which receive + parse + base64 decode':<54}{receive:>10.1f}{receive:>11.1f}")


# ---- 3. the whole device ------------------------------------------------------------------------------


def bench_device() -> None:
    """The real daemon on the virtual sound card, in its own process (alsa-lib reads its config once)."""
    print("\n3. The running device (real PortAudio/ALSA path, 48 kHz, paced in real time), CPU % of one core")
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("device.py"))], capture_output=True, text=True, timeout=300
    )
    print(result.stdout.rstrip() if result.returncode == 0 else "   failed: " + result.stderr[-2000:])


def main() -> None:
    machine = f"{os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    print(f"edgevoice pipeline benchmark on {machine}\n")
    bench_resampler()
    bench_pipelines()
    bench_device()


if __name__ == "__main__":
    main()
