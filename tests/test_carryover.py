"""What outlives a session (CarryOver): bounded in events and bytes, handed over whole, tool outputs never refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgevoice.realtime import events as ev
from edgevoice.realtime.carryover import MAX_WAITING_BYTES, CarryOver
from edgevoice.realtime.failures import LinkBusy


class Sink:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, event: dict[str, Any]) -> bool:
        self.sent.append(event["type"])
        return True

    def append_audio(self, frame: np.ndarray) -> None:
        self.sent.append("append")

    def commit_input(self) -> None:
        self.sent.append("commit")


def picture(megabytes: int) -> dict[str, Any]:
    return ev.user_image("data:image/png;base64," + "A" * (megabytes * 1024 * 1024))


def test_pictures_waiting_for_the_link_are_bounded_in_bytes_and_tool_outputs_always_fit() -> None:
    carry = CarryOver()
    kept = 0
    with pytest.raises(LinkBusy, match="wait for the link"):
        while True:
            carry.keep(picture(4))
            kept += 1
    assert kept * 4 * 1024 * 1024 <= MAX_WAITING_BYTES and kept >= 2
    carry.keep(ev.function_call_output("call_1", "{}"), always=True)  # the model waits for it
    sink = Sink()
    handed = carry.hand_over(sink)
    assert sink.sent == ["conversation.item.create"] * (kept + 1) and handed.items == 0
    assert carry.waiting == 0 and carry.waiting_bytes == 0
    carry.keep(picture(4))  # room again once handed over


def test_the_turn_audio_and_its_commit_are_handed_over_and_lost_audio_counted() -> None:
    carry = CarryOver(outage_buffer_s=0.1, frame_ms=20)  # five frames
    for _ in range(8):
        carry.add_audio(np.zeros(480, np.int16), sent=False)
    carry.commit_pending = True
    sink = Sink()
    handed = carry.hand_over(sink)
    assert sink.sent == ["append"] * 5 + ["commit"] and handed.audio_ms == 100 and handed.lost_ms == 60
