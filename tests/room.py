"""A room between the device's speaker and its microphone, for full-duplex tests on the virtual card.

    with Room(card, rir=kiosk_rir(48000)) as room:
        room.say(speech, when=...)       # a visitor talks (at a given time, or after the device starts talking)
        ... run the device on ROOM_MIC / ROOM_SPEAKER ...

A thread reads what the device played (the speaker sink's monitor), convolves it with the room's impulse
response (the echo), adds the visitor's speech and a little noise, and writes the result to the sink the
device's microphone listens to. Everything goes through PulseAudio in real time, as on a real device.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pyaudio
from scipy.signal import fftconvolve

from edgevoice.audio.devices import find_device, list_devices, open_portaudio
from edgevoice.devkit.sound_card import ROOM_IN, ROOM_OUT, VirtualSoundCard

BLOCK = 960  # 20 ms at 48 kHz


def kiosk_rir(rate: int, rt60_s: float = 0.3, distance_m: float = 0.1, gain: float = 0.8, seed: int = 5) -> np.ndarray:
    """A plausible kiosk impulse response: the direct path (the microphone is close to the speaker, so it
    dominates: about +10 dB over the reverberation), then an exponentially decaying reverberant tail."""
    rng = np.random.default_rng(seed)
    n = int(rate * rt60_s)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s) * 0.01
    rir = np.zeros(n + int(rate * distance_m / 343) + 1)
    direct = int(rate * distance_m / 343)
    rir[direct] = 1.0
    rir[direct + int(0.002 * rate) :][: n - int(0.002 * rate)] += tail[: n - int(0.002 * rate)]
    return gain * rir


@dataclass
class Utterance:
    samples: np.ndarray
    at: float | None  # seconds since the room started, or None: `after_echo_s` after the device first talks
    after_echo_s: float = 0.0
    started: float | None = None  # when it started playing (room clock)


class Room:
    def __init__(self, card: VirtualSoundCard, rir: np.ndarray, noise_dbfs: float = -65.0) -> None:
        self.card = card
        self.rir = rir
        self.noise = 32768 * 10 ** (noise_dbfs / 20)
        self.utterances: list[Utterance] = []
        self.echo_started: float | None = None  # room clock when the device's voice first arrived
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tail = np.zeros(len(rir) - 1)
        self.error: BaseException | None = None

    def say(self, samples: np.ndarray, *, at: float | None = None, after_echo_s: float = 0.0) -> Utterance:
        utterance = Utterance(samples.astype(np.float64), at, after_echo_s)
        self.utterances.append(utterance)
        return utterance

    def now(self) -> float:
        return time.monotonic() - self.t0

    def __enter__(self) -> Room:
        # PortAudio must not be initialised from two threads at once: open everything here, before the device.
        self._pa = open_portaudio()
        devices = list_devices(self._pa)
        rate = self.card.rate
        self._in = self._pa.open(format=pyaudio.paInt16, channels=1, rate=rate, input=True, frames_per_buffer=BLOCK,
                                 input_device_index=find_device(devices, ROOM_IN, "input").index)  # fmt: skip
        self._out = self._pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True, frames_per_buffer=BLOCK,
                                  output_device_index=find_device(devices, ROOM_OUT, "output").index)  # fmt: skip
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="room", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._in.close()
        self._out.close()
        self._pa.terminate()

    def _run(self) -> None:
        try:
            rng = np.random.default_rng(0)
            position: dict[int, int] = {}
            while not self._stop.is_set():
                raw = self._in.read(BLOCK, exception_on_overflow=False)
                played = np.frombuffer(raw, np.int16).astype(np.float64)
                now = self.now()
                if self.echo_started is None and np.abs(played).max() > 300:
                    self.echo_started = now
                echo = fftconvolve(played, self.rir)
                echo[: len(self._tail)] += self._tail
                mic, self._tail = echo[:BLOCK], echo[BLOCK:]
                for i, u in enumerate(self.utterances):
                    start = u.at if u.at is not None else (
                        None if self.echo_started is None else self.echo_started + u.after_echo_s
                    )  # fmt: skip
                    if start is None or now < start:
                        continue
                    if u.started is None:
                        u.started = now
                    pos = position.get(i, 0)
                    piece = u.samples[pos : pos + BLOCK]
                    mic[: len(piece)] += piece
                    position[i] = pos + len(piece)
                mic += rng.standard_normal(BLOCK) * self.noise
                self._out.write(np.clip(np.rint(mic), -32768, 32767).astype(np.int16).tobytes())
        except BaseException as exc:  # surfaced by the test
            self.error = exc
