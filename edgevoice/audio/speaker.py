"""The playback path: assistant audio at 24 kHz -> volume -> resampled to the device rate -> the PortAudio ring.

A pump task keeps the device ring a few frames ahead of the speaker (`target_ms`) rather than dumping a
whole answer into it, so that memory stays small on a Pi, a barge-in has little to throw away, a volume
change is heard at once, and the `PlayoutBuffer` always knows which item the speaker is playing and how far
it has got. The same positions time the speech level (`on_level`, ~20 Hz, for LEDs and lip-sync) to the
moment the sound card takes the audio, not to when it was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from edgevoice.audio.bridge import PlaybackStream
from edgevoice.audio.playout import ItemAccount, PlayoutBuffer
from edgevoice.audio.resample import StreamResampler, to_int16

log = logging.getLogger(__name__)

LEVEL_HZ = 20
LEVEL_FLOOR_DBFS = -50.0  # silence, as far as a mouth or an LED is concerned
LEVEL_CEILING_DBFS = -6.0


def speech_level(samples: np.ndarray) -> float:
    """How loud a chunk is, 0..1 on a dB scale (what a lip-sync or an LED should follow)."""
    if len(samples) == 0:
        return 0.0
    x = samples.astype(np.float32)  # one dot product: this runs on every chunk the speaker plays
    mean_square = float(np.dot(x, x)) / len(x)
    dbfs = 10 * math.log10(max(mean_square, 1e-18) / 32768**2)
    return min(1.0, max(0.0, (dbfs - LEVEL_FLOOR_DBFS) / (LEVEL_CEILING_DBFS - LEVEL_FLOOR_DBFS)))


class Speaker:
    """Plays items of assistant audio and reports when one starts and when everything has been played."""

    def __init__(
        self,
        stream: PlaybackStream,
        *,
        on_started: Callable[[str], None],
        on_drained: Callable[[], None],
        on_level: Callable[[float], None] = lambda level: None,
        rate: int = 24000,
        frame_ms: int = 20,
        target_ms: int | None = None,
    ) -> None:
        self.stream = stream
        self.ring = stream.ring
        self.rate = rate
        device_rate = stream.format.rate
        self.buffer = PlayoutBuffer(rate, device_rate)
        self._resampler = StreamResampler(rate, device_rate)
        self._chunk = rate * frame_ms // 1000
        # While playing, the pump fills the ring to `target_ms` whenever the microphone's path wakes the loop
        # (`nudge`, every 40 ms: a wake of its own would cost the loop more than the resampling it does), and
        # at the latest `_fallback_s` after the last fill. 200 ms ahead leaves 120 ms for a late wake (on a
        # slow or busy CPU the loop may wake several frames late: under an emulated Pi 4 quota, 60 ms ahead
        # ran dry now and then). A barge-in costs nothing for it: `stop` throws the ring's audio away.
        self._fallback_s = 0.08
        self._target = device_rate * (target_ms or max(200, 3 * frame_ms + 120)) // 1000
        self._on_started = on_started
        self._on_drained = on_drained
        self._on_level = on_level
        self.volume = 1.0  # linear gain, 0..1
        self._levels: deque[tuple[int, float]] = deque()  # (ring position where a chunk ends, its level)
        self._level_every = device_rate // LEVEL_HZ
        self._level_due = 0  # ring position of the next level report
        self._level_peak = 0.0
        self._wake = asyncio.Event()
        self._nudged = asyncio.Event()
        self._unannounced: list[ItemAccount] = []
        self._last: ItemAccount | None = None  # the item the resampler's tail belongs to
        self._busy = False
        self._quiet_since = time.monotonic()  # when the speaker last fell silent

    def push(self, item_id: str, samples: np.ndarray) -> None:
        """Queue int16 samples at 24 kHz of one assistant item."""
        self.buffer.push(item_id, samples)
        self._wake.set()

    def nudge(self) -> None:
        """Top the ring up soon, on this wake of the loop (call it from something that wakes it anyway)."""
        if self._busy:
            self._nudged.set()

    def stop(self) -> float:
        """Stop at once (barge-in): drop everything not yet handed to PortAudio; returns the ms dropped."""
        self.stream.audio_waiting = False
        dropped = self.ring.clear() / self.stream.format.rate * 1000
        dropped += self.buffer.stop(self.ring.total_read) * 1000 / self.rate
        self._resampler.reset()
        self._unannounced.clear()
        self._last = None
        self._levels.clear()
        self._on_level(0.0)
        self._wake.set()
        return dropped

    def played_ms(self, item_id: str) -> float:
        """Milliseconds of the item handed to the sound device (what was stopped is not counted)."""
        return self.buffer.played_ms(item_id, self.ring.total_read)

    def received_ms(self, item_id: str) -> float:
        return self.buffer.received_ms(item_id)

    @property
    def item(self) -> str | None:
        """The assistant item playing (the last one queued), None once playback was stopped."""
        return self.buffer.item

    @property
    def busy(self) -> bool:
        """Audio is queued or still in the device ring."""
        return self.buffer.pending > 0 or self.ring.available > 0

    def quiet_for(self) -> float:
        """Seconds since the speaker last played something (0 while it plays)."""
        return 0.0 if self.busy or self._busy else time.monotonic() - self._quiet_since

    async def run(self) -> None:
        """The pump: runs until cancelled."""
        while True:
            self._fill()
            self.stream.audio_waiting = self.buffer.pending > 0  # a dry ring now would be our lateness
            self._announce_started()
            self._announce_levels()
            if self.busy:
                self._busy = True
                self._nudged.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._fallback_s):
                        await self._nudged.wait()
                continue
            if self._busy:
                self._busy = False
                self._quiet_since = time.monotonic()
                self._levels.clear()
                self._on_level(0.0)
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
            if self.volume != 1.0:
                samples = samples * self.volume
            level = speech_level(samples)
            self._write(account, self._resampler.process(samples), len(samples))
            self._levels.append((self.ring.total_written, level))
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

    def _announce_levels(self) -> None:
        """Report the loudest chunk the card took since the last report, LEVEL_HZ times a second (while busy)."""
        consumed = self.ring.total_read
        while self._levels and self._levels[0][0] <= consumed:
            self._level_peak = max(self._level_peak, self._levels.popleft()[1])
        if consumed >= self._level_due:
            self._on_level(self._level_peak)
            self._level_peak = 0.0
            self._level_due = consumed + self._level_every

    def _announce_started(self) -> None:
        while self._unannounced and self.ring.total_read > (self._unannounced[0].device_start or 0):
            self._on_started(self._unannounced.pop(0).item_id)
