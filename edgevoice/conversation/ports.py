"""What the conversation drives and asks, as small interfaces the daemon plugs real parts into.

- `Link`: the session manager, seen as a link that never fails (it carries everything across reconnects);
- `Responses`: the manager's response lifecycle, which the conversation asks instead of keeping its own books;
- `Playback`: the speaker (which item it plays, how much of it was heard);
- `PreRoll`: the microphone's recent past, so that a turn starts at the moment of the press (its frames
  are `HeardFrame`s: the samples and the voice detector's verdict on them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from edgevoice.realtime.usage import TurnAudio


class NotNow(Exception):
    """A request that does not fit the moment (a controller's `stop` while nothing listens, say)."""


class Busy(NotNow):
    """A request refused because too many like it already wait (a controller's `speak` after eight others)."""


class Responses(Protocol):
    """The one owner of the response lifecycle (`edgevoice.realtime.responses.ResponseTracker`)."""

    @property
    def answer_streaming(self) -> bool: ...
    @property
    def answers_coming(self) -> int: ...
    @property
    def awaiting_tools(self) -> bool: ...
    @property
    def full(self) -> bool: ...
    def asked_for(self, response_id: str) -> bool: ...
    def dropped(self, response_id: str) -> bool: ...


class Link(Protocol):
    """What the conversation sends and asks of the session manager; nothing here blocks or fails."""

    @property
    def responses(self) -> Responses: ...

    def connect(self) -> None: ...
    def disconnect(self, *, forget: bool = True) -> None: ...
    def refusal(self) -> str | None: ...
    def append_audio(self, frame: np.ndarray) -> None: ...
    def commit_input(self) -> None: ...
    def clear_input(self) -> None: ...
    def create_response(
        self, instructions: str | None = None, *, turn: TurnAudio | None = None, owner: str | None = None
    ) -> None:
        """Ask for an answer; `turn`: what the visitor's turn it answers sent and said (for the usage event);
        `owner`: the controller that asked for it (its waiting answers are dropped when it leaves)."""
        ...

    def drop_requests(self, owner: str) -> int:
        """The controller `owner` left: drop the answers it asked for that still wait; returns how many."""
        ...

    def send_text(self, text: str) -> None: ...
    def send_image(self, image_url: str, prompt: str | None = None) -> None: ...
    def cancel_response(self, *, server_cancels: bool = False) -> None: ...
    def truncate(self, item_id: str, audio_end_ms: int, received_ms: float) -> None: ...


class Playback(Protocol):
    """The speaker: plays items of assistant audio and knows how much of each was heard."""

    def push(self, item_id: str, samples: np.ndarray) -> None: ...
    def stop(self) -> float: ...
    def played_ms(self, item_id: str) -> float: ...
    def received_ms(self, item_id: str) -> float: ...
    @property
    def item(self) -> str | None: ...
    @property
    def busy(self) -> bool: ...


class NullPlayback:
    """Playback while no speaker is open: plays nothing, never busy."""

    item: str | None = None
    busy = False

    def push(self, item_id: str, samples: np.ndarray) -> None:
        pass

    def stop(self) -> float:
        return 0.0

    def played_ms(self, item_id: str) -> float:
        return 0.0

    def received_ms(self, item_id: str) -> float:
        return 0.0


class HeardFrame(Protocol):
    """A cleaned 24 kHz microphone frame and whether the device's voice detector heard a voice in it."""

    @property
    def samples(self) -> np.ndarray: ...
    @property
    def voiced(self) -> bool: ...


class PreRoll(Protocol):
    """The microphone's recent past (cleaned 24 kHz frames), kept while nothing is sent."""

    def since(self, t: float) -> Iterable[HeardFrame]:
        """The frames that began at or after monotonic time `t`, oldest first."""
        ...


class NoPreRoll:
    """No recent past (a microphone not open yet)."""

    def since(self, t: float) -> Iterable[HeardFrame]:
        return ()
