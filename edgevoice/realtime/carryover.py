"""What a new Realtime session needs to carry the conversation on, kept while sessions come and go.

A session cannot be resumed: after a drop, a rollover or `session_expired` the next one starts empty.
`CarryOver` keeps, between sessions,

- the conversation's history (`ConversationHistory`), replayed as items into every new session;
- the audio of the visitor's turn that the server has not acknowledged yet (bounded by the outage buffer:
  the oldest frames fall out, and the loss is reported once the link is back);
- a commit the server has not acknowledged;
- events that had to wait for a session (a picture), bounded in count and bytes: a request that does not fit
  is refused (`LinkBusy`). (A typed `say` and a tool's output are not kept here: the history replays them.)

`hand_over(session)` gives a fresh session all of it, in that order.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgevoice.realtime.failures import LinkBusy
from edgevoice.realtime.history import ConversationHistory

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100  # the server refuses to commit less audio than this
MAX_WAITING_EVENTS = 64  # events held for the next session
MAX_WAITING_BYTES = 12 * 1024 * 1024  # (a picture's data URL is up to 5.6 MB)


class SessionSink(Protocol):
    """The sending side of a session (`RealtimeSession`): never blocks."""

    def send(self, event: dict[str, Any]) -> bool: ...
    def append_audio(self, frame: np.ndarray) -> None: ...
    def commit_input(self) -> None: ...


@dataclass(frozen=True)
class HandOver:
    """What `hand_over` gave a new session."""

    items: int  # history items replayed
    audio_ms: int  # turn audio re-sent
    lost_ms: int  # turn audio that had fallen out of the outage buffer


def _size(event: dict[str, Any]) -> int:
    """Roughly what an event holds in memory: its longest strings (a picture's data URL dominates)."""
    item = event.get("item")
    content = item.get("content", []) if isinstance(item, dict) else []
    parts = [p for p in content if isinstance(p, dict)]
    return (
        256
        + sum(len(str(p.get("image_url", ""))) + len(str(p.get("text", ""))) for p in parts)
        + len(str(item.get("output", "")) if isinstance(item, dict) else "")
    )


class CarryOver:
    """The state that outlives a session (see the module docstring)."""

    def __init__(self, outage_buffer_s: float = 10.0, frame_ms: int = 20) -> None:
        self.history = ConversationHistory()
        self.frame_ms = frame_ms
        self._turn_audio: deque[np.ndarray] = deque(maxlen=max(1, int(outage_buffer_s * 1000 / frame_ms)))
        self._lost_frames = 0
        self.commit_pending = False
        self._waiting: deque[dict[str, Any]] = deque()
        self.waiting_bytes = 0

    def forget(self) -> None:
        """The conversation is over: the next one starts fresh."""
        self.history.clear()
        self.clear_turn()
        self._waiting.clear()
        self.waiting_bytes = 0

    # ---- the visitor's turn ---------------------------------------------------------------------------

    def add_audio(self, frame: np.ndarray, *, sent: bool) -> None:
        """A frame of the turn; `sent` says whether a session took it (else it waits in the outage buffer)."""
        if not sent and len(self._turn_audio) == self._turn_audio.maxlen:
            self._lost_frames += 1  # the oldest unsent frame falls out of the outage buffer
        self._turn_audio.append(frame)

    def clear_turn(self) -> None:
        self._turn_audio.clear()
        self.commit_pending = False

    def on_committed(self) -> None:
        """The server acknowledged the turn: its audio is no longer ours to keep."""
        self._turn_audio.clear()
        self.commit_pending = False

    # ---- events that wait for a session -----------------------------------------------------------------

    def keep(self, event: dict[str, Any], *, always: bool = False) -> None:
        """Hold `event` for the next session; LinkBusy when it does not fit (unless `always`)."""
        size = _size(event)
        if not always and (len(self._waiting) >= MAX_WAITING_EVENTS or self.waiting_bytes + size > MAX_WAITING_BYTES):
            raise LinkBusy(
                f"{len(self._waiting)} requests ({self.waiting_bytes // 1024} KiB) already wait for the link to the "
                "server to come back: try again once it is up"
            )
        self._waiting.append(event)
        self.waiting_bytes += size

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # ---- a new session ------------------------------------------------------------------------------------

    def hand_over(self, session: SessionSink) -> HandOver:
        """Give a fresh session the history, the unacknowledged turn, its commit, and the waiting events."""
        replay = self.history.replay()
        for event in replay:
            session.send(event)
        audio_ms = len(self._turn_audio) * self.frame_ms
        for frame in self._turn_audio:
            session.append_audio(frame)
        if self.commit_pending:
            if audio_ms >= MIN_COMMIT_MS:
                session.commit_input()
            else:
                self.commit_pending = False
        while self._waiting:
            session.send(self._waiting.popleft())
        self.waiting_bytes = 0
        lost_ms, self._lost_frames = self._lost_frames * self.frame_ms, 0
        return HandOver(len(replay), audio_ms, lost_ms)
