"""Settings of the Realtime connection (the `[realtime]` and `[usage]` sections of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


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
    """Transcripts of what the user said (timeline, controllers, context replay). An empty model turns it off."""

    model: str = "gpt-4o-mini-transcribe"
    language: str = ""


@dataclass(frozen=True)
class ReconnectSettings:
    """How the session manager keeps a session alive (see edgevoice.realtime.retry)."""

    backoff_base_s: float = field(default=0.5, metadata={"min": 0.05, "max": 60.0})
    backoff_cap_s: float = field(default=30.0, metadata={"min": 1.0, "max": 600.0})
    healthy_after_s: float = field(default=60.0, metadata={"min": 1.0, "max": 3600.0})
    fatal_retry_s: float = field(default=300.0, metadata={"min": 30.0, "max": 86400.0})
    ping_interval_s: float = field(default=5.0, metadata={"min": 1.0, "max": 60.0})
    ping_timeout_s: float = field(default=5.0, metadata={"min": 1.0, "max": 60.0})
    rollover_after_s: float = field(default=3300.0, metadata={"min": 60.0, "max": 86400.0})


@dataclass(frozen=True)
class ToolSettings:
    """A tool the model may call, served by a local command (arguments as JSON on stdin, output on stdout)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    command: tuple[str, ...] = ()
    timeout_s: float = field(default=10.0, metadata={"min": 0.1, "max": 300.0})


@dataclass(frozen=True)
class RealtimeSettings:
    """`[realtime]`: which server and model to talk to, with what voice and instructions, how turns end
    (`turn_detection`), transcription, reconnection and tools. The API key is never here: `api_key_file`
    names where it is (see `edgevoice.realtime.credentials`), or `token_url` a service that mints secrets."""

    url: str = "wss://api.openai.com/v1/realtime"
    provider: Literal["openai", "azure"] = "openai"
    model: str = "gpt-realtime-2"  # the models edgevoice knows: edgevoice.realtime.models
    voice: str = "marin"
    instructions: str = "You are the voice of a friendly kiosk. Answer in one or two short spoken sentences."
    audio_format: Literal["pcm16"] = "pcm16"
    noise_reduction: Literal["far_field", "near_field", "off"] = "far_field"
    reasoning_effort: Literal["", "minimal", "low", "medium", "high", "xhigh"] = ""
    api_key_file: str = ""
    token_url: str = ""
    connect_timeout_s: float = field(default=10.0, metadata={"min": 1.0, "max": 120.0})
    speaking_append_ms: int = field(default=100, metadata={"min": 0, "max": 500})  # 0: one append per frame
    turn_detection: TurnDetectionSettings = TurnDetectionSettings()
    transcription: TranscriptionSettings = TranscriptionSettings()
    reconnect: ReconnectSettings = ReconnectSettings()
    tools: tuple[ToolSettings, ...] = ()


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, as published for a model."""

    model: str
    text_in: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})
    text_in_cached: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})
    audio_in: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})
    audio_in_cached: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})
    image_in: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})
    text_out: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})
    audio_out: float = field(default=0.0, metadata={"min": 0.0, "max": 10000.0})


@dataclass(frozen=True)
class UsageSettings:
    """Token accounting and the daily budget (0 = no budget). `prices` override the built-in table."""

    daily_budget_usd: float = field(default=0.0, metadata={"min": 0.0, "max": 1_000_000.0})
    state_dir: str = ""  # where the day's totals survive restarts; "" = $STATE_DIRECTORY if set
    prices: tuple[ModelPrice, ...] = ()
