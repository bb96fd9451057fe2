"""The items an emulator session remembers (its conversation): in order, plus what truncation and billing need."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .server_events import audio_tokens, word_tokens

USER_AUDIO_MS_PER_TOKEN = 100.0
ASSISTANT_AUDIO_MS_PER_TOKEN = 50.0


@dataclass
class StoredItem:
    """One conversation item: its wire form (what `conversation.item.*` events carry) and bookkeeping.

    `audio_ms` is the audio the item really has: for a user item what was committed, for an assistant item
    what was actually sent to the client (not what was planned), reduced by a truncate. That is what
    `conversation.item.truncate` is checked against and what the token estimate bills.
    """

    wire: dict[str, Any]
    audio_ms: float = 0.0
    transcript_marks: list[tuple[float, str]] = field(default_factory=list)
    """Assistant audio: (audio position in ms when the piece was sent, transcript piece)."""

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    @property
    def is_assistant_audio(self) -> bool:
        """True for assistant messages spoken as audio: the only items a truncate accepts."""
        return self.wire.get("role") == "assistant" and any(
            part.get("type") == "output_audio" for part in self.wire.get("content", [])
        )

    def snapshot(self) -> dict[str, Any]:
        """A copy for an outgoing event, so later changes to the item do not alter events already sent."""
        return copy.deepcopy(self.wire)

    def add_transcript(self, piece: str, at_ms: float) -> None:
        self.transcript_marks.append((at_ms, piece))
        self.wire["content"][0]["transcript"] = self.transcript

    @property
    def transcript(self) -> str:
        return "".join(piece for _, piece in self.transcript_marks)

    def truncate_audio(self, audio_end_ms: int) -> None:
        """Keep the first `audio_end_ms` of audio and the transcript sent with it, as the server does."""
        self.audio_ms = float(audio_end_ms)
        self.transcript_marks = [(at, piece) for at, piece in self.transcript_marks if at < audio_end_ms]
        self.wire["content"][0]["transcript"] = self.transcript

    def token_estimate(self) -> tuple[int, int]:
        """(text tokens, audio tokens) this item costs as input to a later response."""
        kind = self.wire.get("type")
        if kind == "function_call":
            return word_tokens(self.wire.get("name", "") + " " + self.wire.get("arguments", "")), 0
        if kind == "function_call_output":
            return word_tokens(self.wire.get("output", "")), 0
        text = 0
        for part in self.wire.get("content", []):
            text += word_tokens(part.get("text") or "")
        if self.wire.get("role") == "assistant":
            return text, audio_tokens(self.audio_ms, ASSISTANT_AUDIO_MS_PER_TOKEN)
        return text, audio_tokens(self.audio_ms, USER_AUDIO_MS_PER_TOKEN)


class ItemStore:
    """The items of one session's default conversation: an ordered list with lookups by id."""

    def __init__(self, conversation_id: str) -> None:
        self.id = conversation_id
        self._items: list[StoredItem] = []

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> StoredItem | None:
        return next((item for item in self._items if item.id == item_id), None)

    def previous_id(self, item_id: str) -> str | None:
        """Id of the item just before `item_id` (None at the start or if the item is gone)."""
        for index, item in enumerate(self._items):
            if item.id == item_id:
                return self._items[index - 1].id if index > 0 else None
        return None

    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def insert(self, item: StoredItem, after: str | None) -> str | None:
        """Insert after the item `after` ("root" = at the start, None = at the end); return the id before it.

        The caller has checked that `after` exists.
        """
        if after is None:
            previous = self.last_id()
            self._items.append(item)
            return previous
        if after == "root":
            self._items.insert(0, item)
            return None
        index = next(i for i, existing in enumerate(self._items) if existing.id == after)
        self._items.insert(index + 1, item)
        return after

    def delete(self, item_id: str) -> bool:
        for index, item in enumerate(self._items):
            if item.id == item_id:
                del self._items[index]
                return True
        return False

    def has_assistant_audio(self) -> bool:
        return any(item.is_assistant_audio and item.audio_ms > 0 for item in self._items)

    def input_token_estimate(self) -> tuple[int, int]:
        """(text, audio) tokens of the whole conversation, billed again as input on every response."""
        text = audio = 0
        for item in self._items:
            item_text, item_audio = item.token_estimate()
            text += item_text
            audio += item_audio
        return text, audio
