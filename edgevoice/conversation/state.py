"""The conversation's state, as small values: where the talk is, what the link is doing, what needs a person.

`Conversation` (machine.py) owns one of each and derives what the device shows (`State`) from them:
faults first, then mute, then the phase seen through the link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from edgevoice.conversation.trim import SilenceTrimmer

if TYPE_CHECKING:
    import numpy as np


class State(StrEnum):
    """What the device shows: the LEDs and the control socket's `state` events use these names."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    OFFLINE = "offline"
    ERROR = "error"


class Phase(StrEnum):
    """Where the conversation is, whatever the link does."""

    IDLE = "idle"  # nobody talks, nothing is answered
    LISTENING = "listening"  # the visitor's turn (or, with a VAD, waiting for one)
    THINKING = "thinking"  # an answer was asked for and has not been heard yet
    SPEAKING = "speaking"  # the answer plays

    @property
    def answering(self) -> bool:
        return self in (Phase.THINKING, Phase.SPEAKING)


LinkState = Literal["down", "connecting", "up"]


@dataclass
class LinkView:
    """What the conversation knows of the link to the server (the session manager tells it)."""

    wanted: bool = False  # we asked for a session
    state: LinkState = "down"
    up_once: bool = False  # up at least once since this conversation started
    down_since: float | None = None  # when it went down while wanted (for the outage buffer)

    def shown(self, phase: Phase, keep_warm: bool) -> State:
        """The state to show for `phase`, as the link allows."""
        if phase is Phase.IDLE:
            return State.OFFLINE if keep_warm and self.down_since is not None else State.IDLE
        if self.state == "up":
            return State(phase.value)
        if not self.up_once and self.down_since is None:
            return State.CONNECTING
        return State.OFFLINE


@dataclass
class Faults:
    """What needs a person (no sound card, no key, a spent budget, a refused key), by origin."""

    by_origin: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_origin)

    def set(self, origin: str, message: str) -> bool:
        """Record a fault; True if it is news."""
        if self.by_origin.get(origin) == message:
            return False
        self.by_origin[origin] = message
        return True

    def clear(self, origin: str) -> bool:
        return self.by_origin.pop(origin, None) is not None

    @property
    def reason(self) -> str:
        return "; ".join(self.by_origin.values())


@dataclass
class Turn:
    """The visitor's turn as it is captured."""

    holding: bool = False  # push-to-talk: a button (or a controller's `listen`) holds the turn open
    speech: bool = False  # the server's VAD heard speech it has not committed yet
    ms: int = 0  # audio sent in this turn (what the server bills)
    # Push-to-talk: which frames go up (the silence around the speech does not), how long the speech was.
    trim: SilenceTrimmer[np.ndarray] = field(default_factory=lambda: SilenceTrimmer(20, enabled=False))
    started_at: float = 0.0
    ended_at: float | None = None  # when the visitor finished: the end-of-speech to first-audio latency
