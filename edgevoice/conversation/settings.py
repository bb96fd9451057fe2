"""Settings of the conversation (the `[conversation]` section of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConversationSettings:
    """How long a conversation (and its Realtime session, with its context) lives, and its turns."""

    idle_timeout_s: float = field(default=60.0, metadata={"min": 5.0, "max": 3600.0})
    follow_up_s: float = field(default=8.0, metadata={"min": 0.0, "max": 120.0})
    keep_warm: bool = False  # connect at start instead of at the first press
    max_turn_s: float = field(default=60.0, metadata={"min": 1.0, "max": 600.0})
    outage_buffer_s: float = field(default=10.0, metadata={"min": 0.0, "max": 120.0})
    # Push-to-talk: the silence before and after the speech is not sent (nor billed), but for these margins.
    trim_silence: bool = True
    trim_lead_ms: int = field(default=300, metadata={"min": 100, "max": 2000})
    trim_trail_ms: int = field(default=400, metadata={"min": 100, "max": 2000})
