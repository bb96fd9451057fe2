"""Settings and scripted replies of the Realtime emulator.

These live apart from `server.py` so that the per-connection state machine (`session.py`) can
use them without importing the server. Import them from `edgevoice.devkit.emulator`, which re-exports
them; that is the public place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Tone:
    """One segment of a spoken answer: a sine at `freq_hz` (0.0 = silence) lasting `seconds`.

    Tests elsewhere recognise the emulator's answer by these frequencies, so the audio is deliberately
    synthetic rather than speech.
    """

    freq_hz: float
    seconds: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.freq_hz) and 0.0 <= self.freq_hz < 12_000.0):
            raise ValueError(f"Tone.freq_hz must be in [0, 12000) Hz, got {self.freq_hz!r}")
        if not (math.isfinite(self.seconds) and 0.0 <= self.seconds <= 600.0):
            raise ValueError(f"Tone.seconds must be in [0, 600], got {self.seconds!r}")


@dataclass(frozen=True)
class SpokenReply:
    """A response that speaks: `text` becomes the transcript, `tones` the audio.

    `pcm` (int16 samples at 24 kHz, little-endian bytes) replaces the tones with a recording, for tests that
    need speech-like audio (an echo canceller learns a room from broadband speech, not from pure tones).
    """

    text: str = "Hello from the edgevoice emulator."
    tones: tuple[Tone, ...] = (Tone(440.0, 0.3), Tone(660.0, 0.3), Tone(880.0, 0.3))
    pcm: bytes = b""


@dataclass(frozen=True)
class FunctionCallReply:
    """A response that calls a tool instead of speaking.

    `arguments` is JSON text, streamed in several `response.function_call_arguments.delta` events the way
    the real server streams it; `call_id` is generated when None.
    """

    name: str
    arguments: str = "{}"
    call_id: str | None = None


Reply = SpokenReply | FunctionCallReply


@dataclass(frozen=True)
class ResponseFailure:
    """How the next response fails (see `RealtimeEmulator.fail_next_response`)."""

    code: str
    message: str


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything that shapes the emulator's behaviour; frozen so that a running server's settings only
    change through its explicit methods (`set_delay`)."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read the real one from `RealtimeEmulator.port`."""
    api_key: str | None = None
    """None accepts any credentials; else `Authorization: Bearer <key>` or `api-key: <key>` must match."""
    bad_key_mode: Literal["http401", "close3000"] = "http401"
    """How a wrong key is refused: HTTP 401 at the handshake, or (as OpenAI did in 2024) an accepted
    socket that gets an `invalid_api_key` error and a close with code 3000."""
    response_delay_s: float = 0.25
    """Latency from the response trigger to the first audio (or argument) delta."""
    realtime_factor: float = 4.0
    """Audio is streamed at N x real time; 0 sends it as fast as the socket takes it."""
    chunk_ms: int = 100
    """Audio per `response.output_audio.delta`."""
    amplitude: float = 0.3
    """Tone peak as a fraction of full scale."""
    user_transcript: str | None = None
    """Text of input transcriptions; None gives "(N.N seconds of speech)"."""
    session_max_s: float | None = None
    """Server-side session limit: `session_expired` error, then close 1001. None = no limit."""
    vad_floor_dbfs: float = -60.0
    """Energy VAD: a 20 ms frame is speech when its RMS exceeds `vad_floor_dbfs + 50 * threshold` dBFS
    (threshold 0.5 -> -35 dBFS by default)."""
    refused_tools: tuple[str, ...] = ()
    """Function tools whose schema the emulator refuses, as the real server refuses a schema it cannot use:
    a `session.update` declaring one gets an `invalid_request_error` (code `invalid_function_parameters`,
    param `session.tools[i].parameters`) and changes nothing (see `RealtimeEmulator.refuse_tools`)."""
    record_events: bool = True
    """Keep every event in `RealtimeEmulator.received` / `.sent`. Tests want this; a long-running
    `edgevoice emulator` should turn it off, or the lists grow by the audio it streams (~0.2 GB/hour)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65_535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.bad_key_mode not in ("http401", "close3000"):
            raise ValueError(f"bad_key_mode must be 'http401' or 'close3000', got {self.bad_key_mode!r}")
        _check_range("response_delay_s", self.response_delay_s, 0.0, 3600.0)
        _check_range("realtime_factor", self.realtime_factor, 0.0, 1000.0)
        _check_range("amplitude", self.amplitude, 0.0, 1.0)
        _check_range("vad_floor_dbfs", self.vad_floor_dbfs, -120.0, 0.0)
        if not 10 <= self.chunk_ms <= 10_000:
            raise ValueError(f"chunk_ms must be in 10..10000, got {self.chunk_ms}")
        if self.session_max_s is not None:
            _check_range("session_max_s", self.session_max_s, 0.001, 7 * 24 * 3600.0)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
