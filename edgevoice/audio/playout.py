"""The assistant's audio waiting to be played, and how much of each item the speaker really played.

The server sends audio faster than real time and cannot know what the listener heard. When the user
interrupts, the conversation must tell the server (`conversation.item.truncate`) how many milliseconds of
the assistant's item were actually played, never more than were received. This buffer keeps that account
per item: samples received, samples handed to the device, and where in the device's sample stream (the
`SampleRing` positions) the item started. Pure logic, no I/O: the `Speaker` drives it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

KEEP_ITEMS = 32  # accounts of finished items kept for late questions (truncate after the fact)


@dataclass
class ItemAccount:
    """How much of one assistant item's audio was received, handed to the device and really played; what the
    truncate after an interruption is computed from. Kept and updated by `PlayoutBuffer`: read it, never set
    its fields yourself. Counts are in samples at the stream rate, positions in device frames."""

    item_id: str
    received: int = 0  # samples at the stream rate received from the server
    handed: int = 0  # samples passed on towards the device
    device_start: int | None = None  # device frame position of the item's first frame
    stopped_at: int | None = None  # device read position when playback was cut short

    def played(self, device_read_pos: int, ratio: float) -> int:
        """Samples (stream rate) the device has consumed; `ratio` is stream rate / device rate."""
        if self.device_start is None:
            return 0
        pos = device_read_pos if self.stopped_at is None else min(device_read_pos, self.stopped_at)
        return max(0, min(self.handed, int((pos - self.device_start) * ratio)))


class PlayoutBuffer:
    """FIFO of int16 audio chunks tagged with the item they belong to, plus per-item accounts."""

    def __init__(self, rate: int = 24000, device_rate: int = 24000) -> None:
        self.rate = rate
        self.ratio = rate / device_rate
        self._chunks: deque[tuple[ItemAccount, np.ndarray]] = deque()
        self._accounts: OrderedDict[str, ItemAccount] = OrderedDict()
        self.pending = 0  # samples queued and not yet handed on
        self.item: str | None = None  # the item playing (the last one pushed), until playback is stopped

    def push(self, item_id: str, samples: np.ndarray) -> None:
        account = self._accounts.get(item_id)
        if account is None:
            account = self._accounts[item_id] = ItemAccount(item_id)
            while len(self._accounts) > KEEP_ITEMS:
                self._accounts.popitem(last=False)
        account.received += len(samples)
        self.item = item_id
        if len(samples):
            self._chunks.append((account, samples))
            self.pending += len(samples)

    def pop(self, max_samples: int) -> tuple[ItemAccount, np.ndarray] | None:
        """Up to `max_samples` of the oldest item's audio (never mixing two items in one chunk)."""
        if not self._chunks:
            return None
        account, samples = self._chunks[0]
        if len(samples) <= max_samples:
            self._chunks.popleft()
        else:
            self._chunks[0] = (account, samples[max_samples:])
            samples = samples[:max_samples]
        self.pending -= len(samples)
        return account, samples

    def note_handed(self, account: ItemAccount, samples: int, device_pos: int) -> None:
        """`samples` of `account` were written to the device starting at frame `device_pos`."""
        if account.device_start is None:
            account.device_start = device_pos
        account.handed += samples

    def stop(self, device_read_pos: int) -> int:
        """Cut playback at the device's read position: drop the queue, freeze the accounts. Returns samples dropped."""
        dropped = self.pending
        self._chunks.clear()
        self.pending = 0
        self.item = None
        for account in self._accounts.values():
            if account.stopped_at is None and account.device_start is not None:
                account.stopped_at = device_read_pos
            account.handed = account.played(device_read_pos, self.ratio)
        return dropped

    def account(self, item_id: str) -> ItemAccount | None:
        return self._accounts.get(item_id)

    def played_ms(self, item_id: str, device_read_pos: int) -> float:
        account = self._accounts.get(item_id)
        return 0.0 if account is None else account.played(device_read_pos, self.ratio) * 1000 / self.rate

    def received_ms(self, item_id: str) -> float:
        account = self._accounts.get(item_id)
        return 0.0 if account is None else account.received * 1000 / self.rate
