"""Benchmark of the echo canceller against speexdsp and WebRTC's APM, on simulated kiosk rooms.

    .venv/bin/python bench/echo.py [--quick] [--rates 16000,24000,48000]    (after scripts/dev-setup --bench)

Every room is made with pyroomacoustics (image sources): the device's speaker and microphone a few cm
apart, a visitor about a metre away. The device speaks (espeak-ng) for 26 s; from 12 to 16 s the visitor
talks over it (double talk); at 20 s the device is moved and its volume turned up 6 dB (an echo path
change). The same signals go through each canceller at 16, 24 and 48 kHz, 20 ms frames (10 ms for the APM,
whose interface takes nothing else):

- edgevoice:  `EchoCanceller(rate, frame)`, everything (delay estimation, filter, suppressor);
- edgevoice linear: the same without the residual echo suppressor, the like-for-like match for speexdsp;
- speexdsp:   `speex_echo_cancellation`, 128 ms tail (the Python binding has no residual suppressor);
- webrtc:     WebRTC APM's AEC3 through livekit (`AudioProcessingModule(echo_cancellation=True)`), far end
              through `process_reverse_stream`, stream delay 0 (it estimates the delay itself).

Figures (per room, canceller and rate):
- ERLE dB, 10 log(mic energy / output energy) over 100 ms windows where the echo is within 30 dB of its
  loudest, far-end-only stretches: `whole` = 0-12 s and 16-20 s (convergence included), `conv` = 4-12 s,
  `postDT` = 16.5-20 s (did double talk derail it?), `moved` = 22-26 s (after the path change);
- `t20`: seconds until a 0.5 s window first reaches 20 dB of ERLE (from the start, and after the change);
- `DT SDR` dB: the visitor's voice during double talk against the output (best lag up to 30 ms), so residual
  echo and suppression of the voice both count; the raw microphone's figure is printed as the anchor;
- CPU % of one core of this machine per second of audio (process time of the canceller's calls alone).
Then the local voice detector (edgevoice's barge-in) on the same rooms at 24 kHz, and the full per-frame
cost of edgevoice in the device at 48 kHz capture.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
from scipy.signal import fftconvolve

from edgevoice.audio.echo import EchoCanceller
from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.audio.vad import LocalVad
from edgevoice.devkit.sound_card import read_wav

TOTAL_S, DT_S, CHANGE_S = 26.0, (12.0, 16.0), 20.0
FAR_TEXT = (
    "Welcome to the museum. The exhibition on the ground floor shows the history of the harbour, from the "
    "first wooden piers to the container terminal of today. Guided tours start every hour at the main desk, "
    "and the cafe on the second floor is open until six. If you need help, ask any member of staff. Please "
    "do not touch the models of the ships, they are fragile and very old."
)
NEAR_TEXT = "Excuse me, where can I find the toilets and the cloakroom please?"
FAR_DBFS, ECHO_DBFS, NEAR_DBFS, MIC_NOISE_DBFS = -16.0, -20.0, -26.0, -75.0


@dataclass(frozen=True)
class Room:
    name: str
    size: tuple[float, float, float]
    rt60: float
    distance: float  # speaker to microphone, m
    clip: float = 0.0  # speaker soft clipping: tanh(clip x) / tanh(clip) on the normalised signal
    noise_dbfs: float = -200.0  # room noise at the microphone (on top of the microphone's own)
    delay_ms: float = 0.0  # playback + capture latency on top of the acoustics


ROOMS = (
    Room("booth 0.2s 3cm", (3.0, 3.0, 2.5), 0.2, 0.03),
    Room("office 0.4s 10cm", (4.0, 5.0, 2.8), 0.4, 0.10),
    Room("lobby 0.6s 20cm", (6.0, 8.0, 3.0), 0.6, 0.20),
    Room("hall 0.8s 30cm", (10.0, 12.0, 4.0), 0.8, 0.30),
    Room("office clip+noise", (4.0, 5.0, 2.8), 0.4, 0.10, clip=2.0, noise_dbfs=-50.0),
    Room("lobby 60ms latency", (6.0, 8.0, 3.0), 0.6, 0.05, delay_ms=60.0),
)
QUICK_ROOMS = (ROOMS[1], ROOMS[4])


# ---- signals -------------------------------------------------------------------------------------------

_speech: dict[tuple[str, str, int], np.ndarray] = {}


def speech(text: str, voice: str, rate: int) -> np.ndarray:
    if (text, voice, rate) not in _speech:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(wav), text], check=True)
            x, source_rate = read_wav(wav)
        r = StreamResampler(source_rate, rate)
        _speech[(text, voice, rate)] = np.concatenate((r.process(x), r.flush()))
    return _speech[(text, voice, rate)]


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    active = np.abs(x) > 1e-3 * np.abs(x).max()
    return x * (10 ** (dbfs / 20) * 32768 / np.sqrt(np.mean(x[active] ** 2)))


def responses(room: Room, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Impulse responses: speaker -> mic, speaker -> mic after the device moved, visitor -> mic."""

    def simulate(speaker: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
        absorption, max_order = pra.inverse_sabine(room.rt60, list(room.size))
        shoebox = pra.ShoeBox(list(room.size), fs=rate, materials=pra.Material(absorption), max_order=max_order)
        mic = speaker + room.distance * np.array([np.cos(angle), np.sin(angle), 0.1])
        shoebox.add_source(speaker)
        shoebox.add_source(mic + np.array([0.9, 0.4, 0.3]))  # the visitor, about a metre away
        shoebox.add_microphone(mic)
        shoebox.compute_rir()
        return np.asarray(shoebox.rir[0][0]), np.asarray(shoebox.rir[0][1])

    w, d, _ = room.size
    echo, talker = simulate(np.array([0.3 * w, 0.25 * d, 1.2]), 0.7)
    moved, _ = simulate(np.array([0.35 * w, 0.3 * d, 1.25]), 2.2)
    return echo, moved, talker


@dataclass
class Scene:
    rate: int
    far: np.ndarray  # int16: the reference
    mic: np.ndarray  # int16
    echo: np.ndarray  # float: the echo part of the microphone signal
    near: np.ndarray  # float: the visitor's part


def scene(room: Room, rate: int) -> Scene:
    n = int(TOTAL_S * rate)
    voice = speech(FAR_TEXT, "en-us", rate)
    pause = np.zeros(int(0.3 * rate))
    far = np.tile(np.concatenate((voice, pause)), int(np.ceil(n / (voice.size + pause.size))))[:n]
    far = np.clip(level(far, FAR_DBFS), -32767, 32767)
    played = far / 32768
    if room.clip:
        played = np.tanh(room.clip * played) / np.tanh(room.clip)
    h_echo, h_moved, h_talker = responses(room, rate)
    change = int(CHANGE_S * rate)
    echo = np.concatenate((fftconvolve(played, h_echo)[:change], 2.0 * fftconvolve(played, h_moved)[change:n]))
    lag = int(room.delay_ms * rate / 1000)
    echo = np.concatenate((np.zeros(lag), echo[: n - lag]))
    talking = np.abs(far[:change]) > 100
    echo *= 10 ** (ECHO_DBFS / 20) * 32768 / np.sqrt(np.mean(echo[:change][talking] ** 2))
    question = level(speech(NEAR_TEXT, "en-gb+f3", rate), 0.0)
    start = int(DT_S[0] * rate)
    source = np.zeros(n)
    source[start : start + question.size] = question[: n - start]
    near = fftconvolve(source, h_talker)[:n]
    near = level(near, NEAR_DBFS) if np.any(near) else near
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(n) * 10 ** (MIC_NOISE_DBFS / 20) * 32768
    if room.noise_dbfs > -200:
        hum = np.cumsum(rng.standard_normal(n))  # brown noise: the rumble of a room
        hum -= np.convolve(hum, np.ones(rate // 50) / (rate // 50), "same")
        noise += level(hum, room.noise_dbfs)
    return Scene(rate, to_int16(far), to_int16(echo + near + noise), echo, near)


# ---- the cancellers ------------------------------------------------------------------------------------

Process = Callable[[np.ndarray, np.ndarray], np.ndarray]


def run_frames(process: Process, s: Scene, frame: int) -> tuple[np.ndarray, float]:
    """Output and CPU seconds of `process` called frame by frame."""
    out = np.zeros_like(s.mic)
    cpu = 0.0
    for i in range(0, s.mic.size - frame + 1, frame):
        near, far = s.mic[i : i + frame], s.far[i : i + frame]
        t = time.process_time()
        out[i : i + frame] = process(near, far)
        cpu += time.process_time() - t
    return out, cpu


def edgevoice(s: Scene, suppress: bool = True) -> tuple[np.ndarray, float]:
    frame = s.rate // 50
    canceller = EchoCanceller(s.rate, frame, suppress=suppress)
    return run_frames(canceller.process, s, frame)


def speex(s: Scene) -> tuple[np.ndarray, float]:
    from speexdsp import EchoCanceller as SpeexCanceller

    frame = s.rate // 50
    canceller = SpeexCanceller.create(frame, s.rate * 128 // 1000, s.rate)
    return run_frames(lambda n, f: np.frombuffer(canceller.process(n.tobytes(), f.tobytes()), np.int16), s, frame)


def webrtc(s: Scene) -> tuple[np.ndarray, float]:
    from livekit import rtc

    frame = s.rate // 100
    apm = rtc.AudioProcessingModule(echo_cancellation=True)

    def process(near: np.ndarray, far: np.ndarray) -> np.ndarray:
        apm.process_reverse_stream(rtc.AudioFrame(far.tobytes(), s.rate, 1, frame))
        apm.set_stream_delay_ms(0)
        captured = rtc.AudioFrame(near.tobytes(), s.rate, 1, frame)
        apm.process_stream(captured)
        return np.frombuffer(captured.data, np.int16)

    return run_frames(process, s, frame)


CANCELLERS: dict[str, Callable[[Scene], tuple[np.ndarray, float]]] = {
    "edgevoice": edgevoice,
    "edgevoice linear": lambda s: edgevoice(s, suppress=False),
    "speexdsp": speex,
    "webrtc": webrtc,
}


# ---- figures -------------------------------------------------------------------------------------------


def figures(s: Scene, out: np.ndarray, cpu: float) -> dict[str, float]:
    rate, w = s.rate, s.rate // 10
    n = out.size // w
    mic = (s.mic[: n * w].astype(np.float64).reshape(n, w) ** 2).sum(axis=1)
    res = (out[: n * w].astype(np.float64).reshape(n, w) ** 2).sum(axis=1)
    echo = (s.echo[: n * w].reshape(n, w) ** 2).sum(axis=1)
    t = np.arange(n) * 0.1
    usable = (echo > echo.max() * 1e-3) & ~((t >= DT_S[0] - 0.1) & (t < DT_S[1] + 0.5))

    def erle(a: float, b: float) -> float:
        m = usable & (t >= a) & (t < b)
        return float(10 * np.log10(mic[m].sum() / max(res[m].sum(), 1.0)))

    def reach_20db(start: float) -> float:
        for i in np.flatnonzero(t >= start):
            m = usable & (t >= t[i]) & (t < t[i] + 0.5)
            if m.sum() >= 2 and 10 * np.log10(mic[m].sum() / max(res[m].sum(), 1.0)) >= 20:
                return float(t[i] - start)
        return float("nan")

    a, b = int(DT_S[0] * rate), int(DT_S[1] * rate)
    near = s.near[a:b]
    sdr = max(
        10 * np.log10(np.sum(near**2) / np.sum((out[a + lag : b + lag] - near) ** 2))
        for lag in range(0, int(0.03 * rate))
    )
    whole = usable & (t < CHANGE_S)
    return {
        "whole": float(10 * np.log10(mic[whole].sum() / max(res[whole].sum(), 1.0))),
        "conv": erle(4.0, DT_S[0]),
        "postDT": erle(DT_S[1] + 0.5, CHANGE_S),
        "moved": erle(CHANGE_S + 2.0, TOTAL_S),
        "t20": reach_20db(0.0),
        "t20 moved": reach_20db(CHANGE_S),
        "DT SDR": float(sdr),
        "cpu %": 100 * cpu / TOTAL_S,
    }


COLUMNS = ("whole", "conv", "postDT", "moved", "t20", "t20 moved", "DT SDR", "cpu %")


def row(name: str, values: dict[str, float]) -> str:
    cells = "".join(f"{values[c]:>10.2f}" if c.startswith(("t20", "cpu")) else f"{values[c]:>10.1f}" for c in COLUMNS)
    return f"   {name:<20}{cells}"


def bench_cancellers(rooms: tuple[Room, ...], rates: list[int]) -> None:
    print("1. Echo cancellers on the same signals (ERLE and SDR in dB, t20 in s, CPU in % of one core)")
    summary: dict[tuple[int, str], list[dict[str, float]]] = {}
    for rate in rates:
        print(f"\n   {rate} Hz{'':<13}" + "".join(f"{c:>10}" for c in COLUMNS))
        for room in rooms:
            s = scene(room, rate)
            raw = 10 * np.log10(np.sum(s.near**2) / np.sum((s.mic.astype(np.float64) - s.near)[s.near != 0] ** 2))
            print(f"   {room.name}   (microphone's own DT SDR {raw:.1f} dB)")
            for name, cancel in CANCELLERS.items():
                values = figures(s, *cancel(s))
                summary.setdefault((rate, name), []).append(values)
                print(row("  " + name, values))
    print("\n   Mean over the rooms (t20: rooms that reached 20 dB)")
    print(f"   {'':<20}" + "".join(f"{c:>10}" for c in COLUMNS))
    for (rate, name), runs in summary.items():
        mean = {c: float(np.nanmean([r[c] for r in runs])) for c in COLUMNS}
        print(row(f"{rate // 1000} kHz {name}", mean))


def bench_vad(rooms: tuple[Room, ...]) -> None:
    """The local barge-in detector at 24 kHz: how soon it hears the visitor, and whether echo fools it."""
    rate, frame = 24000, 480
    print("\n2. Local voice detector on edgevoice's output, 24 kHz (the device's setting)")
    print(f"   {'room':<22}{'onset ms':>10}{'false, steady':>15}{'false, moved':>14}   (false = fired on echo alone)")
    for room in rooms:
        s = scene(room, rate)
        canceller, vad = EchoCanceller(rate, frame), LocalVad(rate, frame)
        fired = []
        for i in range(0, s.mic.size - frame + 1, frame):
            cleaned = canceller.process(s.mic[i : i + frame], s.far[i : i + frame])
            if vad.process(cleaned, canceller.echo_level, canceller.far_active):
                fired.append((i + frame) / rate)
        start = DT_S[0] + np.flatnonzero(np.abs(s.near[int(DT_S[0] * rate) :]) > 0.05 * np.abs(s.near).max())[0] / rate
        onset = [f - start for f in fired if start <= f < start + 1.0]
        steady = [f for f in fired if f < DT_S[0] or DT_S[1] + 0.5 < f < CHANGE_S]
        moved = [f for f in fired if f >= CHANGE_S]
        shown = f"{onset[0] * 1000:.0f}" if onset else "missed"
        print(f"   {room.name:<22}{shown:>10}{len(steady):>15}{len(moved):>14}")
    print("   steady: 17.5 s of the device talking alone per room; moved: the 6 s after the path change")


def bench_device_cost() -> None:
    """What echo cancellation adds per second in the device at 48 kHz capture and playback."""
    from edgevoice.audio.gate import EchoGate

    rate = 48000
    room = ROOMS[1]
    s48 = scene(room, rate)
    down = StreamResampler(rate, 24000)
    ref_down = StreamResampler(rate, 24000)
    canceller, vad = EchoCanceller(24000, 480), LocalVad(24000, 480)
    mic24 = to_int16(np.concatenate((down.process(s48.mic), down.flush())))
    frames = [
        (mic24[i // 2 : i // 2 + 480], s48.far[i : i + 960]) for i in range(0, s48.mic.size - 959, 960)
    ]  # fmt: skip
    start = time.process_time()
    for near, far48 in frames:  # what the device adds: the reference back to 24 kHz, the canceller, the VAD
        far = to_int16(ref_down.process(far48))
        if far.size == 480:
            vad.process(canceller.process(near, far), canceller.echo_level, canceller.far_active)
    aec = time.process_time() - start
    native = EchoCanceller(rate, 960)
    start = time.process_time()
    for i in range(0, s48.mic.size - 959, 960):
        native.process(s48.mic[i : i + 960], s48.far[i : i + 960])
    full48 = time.process_time() - start
    gate = EchoGate(24000, 480)
    start = time.process_time()
    for near, far48 in frames:
        gate.process(near, far48[::2])
    gated = time.process_time() - start
    anchor = StreamResampler(rate, 24000)
    start = time.process_time()
    for i in range(0, s48.mic.size - 959, 960):
        to_int16(anchor.process(s48.mic[i : i + 960]))
    resample = time.process_time() - start
    print("\n3. Cost in the device, % of one core per second of audio (48 kHz sound card)")
    print(f"   {'aec: reference 48->24 kHz + canceller at 24 kHz + VAD':<58}{100 * aec / TOTAL_S:>7.2f}")
    print(f"   {'aec at 48 kHz itself (the interface allows it; not used)':<58}{100 * full48 / TOTAL_S:>7.2f}")
    print(f"   {'gate (anchor: the cheapest mode)':<58}{100 * gated / TOTAL_S:>7.2f}")
    print(f"   {'anchor: the microphone resampler 48->24 kHz (always there)':<58}{100 * resample / TOTAL_S:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two rooms only")
    parser.add_argument("--rates", default="16000,24000,48000")
    args = parser.parse_args()
    rooms = QUICK_ROOMS if args.quick else ROOMS
    rates = [int(r) for r in args.rates.split(",")]
    machine = f"{os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    print(
        f"edgevoice echo benchmark on {machine}: {TOTAL_S:.0f} s per room, double talk "
        f"{DT_S[0]:.0f}-{DT_S[1]:.0f} s, device moved and 6 dB louder at {CHANGE_S:.0f} s\n"
    )
    bench_cancellers(rooms, rates)
    bench_vad(rooms)
    bench_device_cost()


if __name__ == "__main__":
    main()
