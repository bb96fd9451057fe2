"""The playback path: assistant audio at 24 kHz -> resampled to the device rate -> the PortAudio ring.

A pump task keeps the device ring a few frames ahead of the speaker (`target_ms`) rather than dumping a
whole answer into it, so that memory stays small on a Pi, a barge-in has little to throw away, and the
`PlayoutBuffer` always knows which item the speaker is playing and how far it has got.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from edgevoice.audio.bridge import PlaybackStream
from edgevoice.audio.playout import ItemAccount, PlayoutBuffer
from edgevoice.audio.resample import StreamResampler, to_int16

log = logging.getLogger(__name__)


class Speaker:
    """Plays items of assistant audio and reports when one starts and when everything has been played."""

    def __init__(
        self,
        stream: PlaybackStream,
        *,
        on_started: Callable[[str], None],
        on_drained: Callable[[], None],
        rate: int = 24000,
        frame_ms: int = 20,
        target_ms: int = 60,
    ) -> None:
        self.stream = stream
        self.ring = stream.ring
        self.rate = rate
        device_rate = stream.format.rate
        self.buffer = PlayoutBuffer(rate, device_rate)
        self._resampler = StreamResampler(rate, device_rate)
        self._chunk = rate * frame_ms // 1000
        self._tick = frame_ms / 2000
        self._target = device_rate * target_ms // 1000
        self._on_started = on_started
        self._on_drained = on_drained
        self._wake = asyncio.Event()
        self._unannounced: list[ItemAccount] = []
        self._last: ItemAccount | None = None  # the item the resampler's tail belongs to
        self._busy = False

    def push(self, item_id: str, samples: np.ndarray) -> None:
        """Queue int16 samples at 24 kHz of one assistant item."""
        self.buffer.push(item_id, samples)
        self._wake.set()

    def stop(self) -> float:
        """Stop at once (barge-in): drop everything not yet handed to PortAudio; returns the ms dropped."""
        dropped = self.ring.clear() / self.stream.format.rate * 1000
        dropped += self.buffer.stop(self.ring.total_read) * 1000 / self.rate
        self._resampler.reset()
        self._unannounced.clear()
        self._last = None
        self._wake.set()
        return dropped

    def played_ms(self, item_id: str) -> float:
        """Milliseconds of the item handed to the sound device (what was stopped is not counted)."""
        return self.buffer.played_ms(item_id, self.ring.total_read)

    def received_ms(self, item_id: str) -> float:
        return self.buffer.received_ms(item_id)

    @property
    def busy(self) -> bool:
        """Audio is queued or still in the device ring."""
        return self.buffer.pending > 0 or self.ring.available > 0

    async def run(self) -> None:
        """The pump: runs until cancelled."""
        while True:
            self._fill()
            self._announce_started()
            if self.busy:
                self._busy = True
                await asyncio.sleep(self._tick)
                continue
            if self._busy:
                self._busy = False
                self._on_drained()
            self._wake.clear()
            await self._wake.wait()

    def _fill(self) -> None:
        while self.ring.available < self._target:
            popped = self.buffer.pop(self._chunk)
            if popped is None:
                if self._last is not None:  # the answer ended: push out the resampler's last samples
                    self._write(self._last, self._resampler.flush(), 0)
                    self._last = None
                return
            account, samples = popped
            self._write(account, self._resampler.process(samples), len(samples))
            self._last = account

    def _write(self, account: ItemAccount, samples: np.ndarray, stream_samples: int) -> None:
        frames = to_int16(samples)
        if self.ring.dtype == np.int32:  # a 32-bit device: the same signal in the top 16 bits
            frames = frames.astype(np.int32) << 16
        if self.ring.channels > 1:
            frames = np.repeat(frames[:, None], self.ring.channels, axis=1)
        position = self.ring.total_written
        if account.device_start is None:
            self._unannounced.append(account)
        self.buffer.note_handed(account, stream_samples, position)
        self.ring.write(frames)

    def _announce_started(self) -> None:
        while self._unannounced and self.ring.total_read > (self._unannounced[0].device_start or 0):
            self._on_started(self._unannounced.pop(0).item_id)
