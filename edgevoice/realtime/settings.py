"""Settings of the Realtime connection (the `[realtime]` section of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

KNOWN_MODELS = ("gpt-realtime-2", "gpt-realtime", "gpt-realtime-mini")


@dataclass(frozen=True)
class TurnDetectionSettings:
    """How the end of the user's turn is found. `none` is push-to-talk: releasing the button ends it."""

    type: Literal["none", "server_vad", "semantic_vad"] = "none"
    threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    prefix_padding_ms: int = field(default=300, metadata={"min": 0, "max": 5000})
    silence_duration_ms: int = field(default=500, metadata={"min": 100, "max": 10000})
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    interrupt_response: bool = True


@dataclass(frozen=True)
class TranscriptionSettings:
    """Transcripts of what the user said (timeline, controllers). An empty model turns it off."""

    model: str = "gpt-4o-mini-transcribe"
    language: str = ""


@dataclass(frozen=True)
class RealtimeSettings:
    url: str = "wss://api.openai.com/v1/realtime"
    provider: Literal["openai", "azure"] = "openai"
    model: str = "gpt-realtime-2"
    voice: str = "marin"
    instructions: str = "You are the voice of a friendly kiosk. Answer in one or two short spoken sentences."
    audio_format: Literal["pcm16"] = "pcm16"
    noise_reduction: Literal["far_field", "near_field", "off"] = "far_field"
    reasoning_effort: Literal["", "minimal", "low", "medium", "high", "xhigh"] = ""
    api_key_file: str = ""
    connect_timeout_s: float = field(default=10.0, metadata={"min": 1.0, "max": 120.0})
    turn_detection: TurnDetectionSettings = TurnDetectionSettings()
    transcription: TranscriptionSettings = TranscriptionSettings()
