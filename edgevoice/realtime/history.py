"""What was said so far, kept on the device so that a new session can pick up the conversation.

A Realtime session cannot be resumed: after a drop, a rollover at the session limit or `session_expired`,
the new session starts empty. edgevoice replays the conversation into it as text items, in order, with
their original ids: user turns as `input_text` (their transcripts), assistant answers as `output_text`
(assistant audio cannot be created, its transcript can). An answer the user interrupted is replayed cut to
the share of it that was heard, as the server itself does on `conversation.item.truncate`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from edgevoice.realtime import events

MAX_ITEMS = 200  # older turns are dropped from the replay first
MAX_CHARS = 40_000  # about 10k tokens of context, re-billed on every response: keep it bounded

Role = Literal["user", "assistant"]


@dataclass
class HistoryItem:
    """One entry of the history: a user or assistant message (its transcript so far, `final` once whole) or a
    tool call with its output. Built and updated by `ConversationHistory`; `replay_text()` is the text a new
    session gets, an interrupted answer cut to the share of its words that was heard."""

    item_id: str
    role: Role | Literal["tool"]
    text: str = ""  # a message's text, or a tool call's output
    final: bool = False
    heard: float = 1.0  # the share of an assistant item the user heard (1 unless interrupted)
    call: tuple[str, str, str] | None = None  # a tool call: (call_id, name, arguments)

    def replay_text(self) -> str:
        if self.heard >= 1.0 or self.role != "assistant":
            return self.text
        words = self.text.split()
        kept = words[: int(len(words) * self.heard)]
        return " ".join(kept) + ("..." if len(kept) < len(words) else "")


class ConversationHistory:
    """The user and assistant messages of the current conversation, in order, by item id."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, HistoryItem] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def on_item(self, item_id: str, role: str | None) -> None:
        """An item was announced; user and assistant messages take their place in the order."""
        if role in ("user", "assistant") and item_id not in self._items:
            self._items[item_id] = HistoryItem(item_id, role)  # type: ignore[arg-type]
            while len(self._items) > MAX_ITEMS:
                self._items.popitem(last=False)

    def on_text(self, item_id: str, role: Role, text: str, final: bool) -> None:
        """A transcript: deltas append, a final one replaces what the deltas made."""
        item = self._items.get(item_id)
        if item is None:
            self.on_item(item_id, role)
            item = self._items.get(item_id)
            if item is None:
                return
        if final:
            item.text, item.final = text, True
        elif not item.final:
            item.text += text

    def add_text(self, item_id: str, role: Role, text: str) -> None:
        """A message the device itself put into the conversation (a typed `say`, for example)."""
        self.on_item(item_id, role)
        self.on_text(item_id, role, text, final=True)

    def add_tool_call(self, item_id: str, call_id: str, name: str, arguments: str) -> None:
        self._items[item_id] = HistoryItem(item_id, "tool", call=(call_id, name, arguments))

    def add_tool_output(self, call_id: str, output: str) -> None:
        for item in self._items.values():
            if item.call is not None and item.call[0] == call_id:
                item.text, item.final = output, True

    def on_truncate(self, item_id: str, heard_ms: float, received_ms: float) -> None:
        item = self._items.get(item_id)
        if item is not None and received_ms > 0:
            item.heard = max(0.0, min(1.0, heard_ms / received_ms))

    def replay(self) -> list[dict[str, Any]]:
        """`conversation.item.create` events rebuilding the conversation (newest kept within MAX_CHARS)."""
        chosen: list[HistoryItem] = []
        total = 0
        for item in reversed(self._items.values()):
            text = item.replay_text().strip()
            if not text and item.call is None:
                continue  # a turn without transcript (transcription off or not finished) cannot be replayed
            total += len(text) + (len(item.call[2]) if item.call else 0)
            if total > MAX_CHARS:
                break
            chosen.append(item)
        replay: list[dict[str, Any]] = []
        for item in reversed(chosen):
            if item.call is not None:
                call_id, name, arguments = item.call
                replay.append(events.function_call_item(item.item_id, call_id, name, arguments))
                if item.final:  # a call still running is answered after the replay, when its output comes
                    replay.append(events.function_call_output(call_id, item.text))
            else:
                replay.append(events.history_item(item.item_id, item.role, item.replay_text().strip()))  # type: ignore[arg-type]
        return replay

    def texts(self) -> list[tuple[str, str]]:
        """(role, text) of every item with text, in order (for tests and status)."""
        return [(i.role, i.replay_text()) for i in self._items.values() if i.call is None and i.replay_text().strip()]
