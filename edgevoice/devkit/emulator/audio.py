"""Audio for the Realtime emulator: wire formats, the synthetic spoken answer, and an energy VAD.

Nothing here knows about WebSockets or events; these are pure functions on bytes and numpy arrays so
they can be tested on their own. The emulator is a leaf module, so the G.711 codec is a small local copy
rather than an import from `edgevoice.audio`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PCM_RATE_HZ = 24_000
G711_RATE_HZ = 8_000
VAD_FRAME_MS = 20
RAMP_S = 0.010
"""Raised-cosine fade at both ends of every tone, so segment edges do not click (and do not smear energy
into other frequencies, which would confuse the tests that look for the tones)."""


# --- G.711 (ITU-T G.711, the classic Sun reference algorithm) ------------------------------------------
def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW_TO_PCM = _ulaw_decode_table()
_ALAW_TO_PCM = _alaw_decode_table()


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples -> G.711 mu-law bytes (14-bit magnitude, bias 33, as in the reference code)."""
    x = samples.astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 33
    segment = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), magnitude)
    value = (np.minimum(segment, 7) << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    value = np.where(segment >= 8, 0x7F, value)
    return ((value ^ mask) & 0xFF).astype(np.uint8).tobytes()


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples -> G.711 A-law bytes."""
    x = samples.astype(np.int32) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    x = np.where(x >= 0, x, -x - 1)
    segment = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), x)
    shift = np.where(segment < 2, 1, segment)
    value = (np.minimum(segment, 7) << 4) | ((x >> shift) & 0x0F)
    value = np.where(segment >= 8, 0x7F, value)
    return ((value ^ mask) & 0xFF).astype(np.uint8).tobytes()


@dataclass(frozen=True)
class WireFormat:
    """One of the three GA audio formats, with what the emulator needs to turn it into samples and back."""

    type: str  # "audio/pcm", "audio/pcmu", "audio/pcma"
    rate_hz: int
    bytes_per_sample: int

    @property
    def bytes_per_ms(self) -> float:
        return self.rate_hz * self.bytes_per_sample / 1000.0

    def duration_ms(self, byte_count: int) -> float:
        return byte_count / self.bytes_per_ms

    def decode(self, data: bytes) -> np.ndarray:
        """Wire bytes -> int16 samples (PCM16 is little-endian on the wire)."""
        if self.type == "audio/pcm":
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        table = _ULAW_TO_PCM if self.type == "audio/pcmu" else _ALAW_TO_PCM
        return table[np.frombuffer(data, dtype=np.uint8)]

    def encode(self, samples: np.ndarray) -> bytes:
        """int16 samples -> wire bytes."""
        if self.type == "audio/pcm":
            return samples.astype("<i2").tobytes()
        return ulaw_encode(samples) if self.type == "audio/pcmu" else alaw_encode(samples)


PCM16 = WireFormat("audio/pcm", PCM_RATE_HZ, 2)
PCMU = WireFormat("audio/pcmu", G711_RATE_HZ, 1)
PCMA = WireFormat("audio/pcma", G711_RATE_HZ, 1)


def wire_format(fmt: dict[str, Any]) -> WireFormat:
    """The WireFormat of a validated session format object such as `{"type": "audio/pcm", "rate": 24000}`."""
    return {"audio/pcm": PCM16, "audio/pcmu": PCMU, "audio/pcma": PCMA}[fmt["type"]]


# --- the spoken answer -------------------------------------------------------------------------------
def synthesize_tones(tones: tuple[Any, ...], amplitude: float, rate_hz: int) -> np.ndarray:
    """The reply audio as int16 samples: each Tone a sine with raised-cosine ramps; freq 0 is silence."""
    segments: list[np.ndarray] = []
    for tone in tones:
        count = round(tone.seconds * rate_hz)
        if count == 0:
            continue
        if tone.freq_hz <= 0.0:
            segments.append(np.zeros(count))
            continue
        t = np.arange(count) / rate_hz
        wave = amplitude * np.sin(2.0 * np.pi * tone.freq_hz * t)
        ramp_len = min(round(RAMP_S * rate_hz), count // 2)
        if ramp_len > 0:
            ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp_len) / ramp_len)
            wave[:ramp_len] *= ramp
            wave[-ramp_len:] *= ramp[::-1]
        segments.append(wave)
    if not segments:
        return np.zeros(0, dtype=np.int16)
    return np.round(np.concatenate(segments) * 32767.0).astype(np.int16)


# --- energy VAD --------------------------------------------------------------------------------------
def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (full-scale sine = -3 dBFS); digital silence gives -inf."""
    if samples.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -math.inf


@dataclass(frozen=True)
class SpeechStarted:
    """`EnergyVad` heard speech begin; the emulator answers with `input_audio_buffer.speech_started` (its
    `audio_start_ms` is this onset less the prefix padding)."""

    onset_ms: float
    """Start of the first speech frame, on the session's input timeline."""


@dataclass(frozen=True)
class SpeechStopped:
    """`EnergyVad` heard `silence_ms` of silence after speech; the emulator answers with
    `input_audio_buffer.speech_stopped` and commits the turn."""

    end_ms: float
    """End of the last speech frame, on the session's input timeline."""


@dataclass
class EnergyVad:
    """Frame-energy voice activity detection, a stand-in for the server's model-based VAD.

    Speech starts after `start_ms` of consecutive speech frames and stops after `silence_ms` of
    consecutive non-speech frames. Positions are reported on the session's input timeline (all audio
    ever appended), which is where the real server's `audio_start_ms` / `audio_end_ms` live.
    """

    threshold_dbfs: float
    silence_ms: int
    rate_hz: int
    start_ms: int = 60
    position_ms: float = 0.0
    """Timeline position of the first sample not yet consumed."""
    in_speech: bool = field(default=False, init=False)
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16), init=False)
    _speech_run_ms: int = field(default=0, init=False)
    _silence_run_ms: int = field(default=0, init=False)
    _last_speech_end_ms: float = field(default=0.0, init=False)

    def feed(self, samples: np.ndarray) -> list[SpeechStarted | SpeechStopped]:
        """Consume samples; return the transitions they caused, in order."""
        frame_len = self.rate_hz * VAD_FRAME_MS // 1000
        data = np.concatenate((self._pending, samples)) if self._pending.size else samples
        whole = data.size - data.size % frame_len
        self._pending = data[whole:].copy()
        transitions: list[SpeechStarted | SpeechStopped] = []
        for start in range(0, whole, frame_len):
            frame_start_ms = self.position_ms
            self.position_ms += VAD_FRAME_MS
            if rms_dbfs(data[start : start + frame_len]) > self.threshold_dbfs:
                self._speech_run_ms += VAD_FRAME_MS
                self._silence_run_ms = 0
                self._last_speech_end_ms = self.position_ms
                if not self.in_speech and self._speech_run_ms >= self.start_ms:
                    self.in_speech = True
                    onset = frame_start_ms + VAD_FRAME_MS - self._speech_run_ms
                    transitions.append(SpeechStarted(onset_ms=onset))
            else:
                self._speech_run_ms = 0
                self._silence_run_ms += VAD_FRAME_MS
                if self.in_speech and self._silence_run_ms >= self.silence_ms:
                    self.in_speech = False
                    transitions.append(SpeechStopped(end_ms=self._last_speech_end_ms))
        return transitions

    def reset(self, position_ms: float) -> None:
        """Forget any speech in progress (after a commit or clear) and continue from `position_ms`."""
        self.position_ms = position_ms
        self.in_speech = False
        self._pending = np.zeros(0, dtype=np.int16)
        self._speech_run_ms = 0
        self._silence_run_ms = 0


class InputAudioBuffer:
    """The uncommitted input audio, placed on the session's input timeline (all audio ever appended).

    The real server reports `audio_start_ms` / `audio_end_ms` on that timeline, so the buffer remembers
    where its first byte sits (`start_ms`), not only the bytes. The optional VAD watches every append.
    """

    def __init__(self, fmt: WireFormat, vad: EnergyVad | None, timeline_ms: float = 0.0) -> None:
        self.fmt = fmt
        self.vad = vad
        self.timeline_ms = timeline_ms
        """End of all audio appended in the session so far."""
        self.start_ms = timeline_ms
        """Timeline position of the buffer's first byte."""
        self._data = bytearray()

    @property
    def duration_ms(self) -> float:
        return self.fmt.duration_ms(len(self._data))

    def append(self, data: bytes) -> list[SpeechStarted | SpeechStopped]:
        """Add audio (whole samples); return the VAD transitions it caused."""
        self._data += data
        self.timeline_ms += self.fmt.duration_ms(len(data))
        return self.vad.feed(self.fmt.decode(data)) if self.vad is not None else []

    def drop_before(self, position_ms: float) -> None:
        """Discard audio before `position_ms` on the timeline (whole samples only)."""
        drop = int((position_ms - self.start_ms) * self.fmt.bytes_per_ms)
        drop = min(drop - drop % self.fmt.bytes_per_sample, len(self._data))
        if drop > 0:
            del self._data[:drop]
            self.start_ms += self.fmt.duration_ms(drop)

    def take(self) -> float:
        """Empty the buffer (commit or clear) and restart the VAD; return the duration it held in ms."""
        duration_ms = self.duration_ms
        self._data.clear()
        self.start_ms = self.timeline_ms
        if self.vad is not None:
            self.vad.reset(self.timeline_ms)
        return duration_ms
