"""The device ring and the per-item playout accounting (pure logic, no sound card)."""

from __future__ import annotations

import numpy as np

from edgevoice.audio.microphone import FrameConverter
from edgevoice.audio.playout import PlayoutBuffer
from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.audio.ring import SampleRing


def test_ring_wraps_around_and_keeps_order() -> None:
    ring = SampleRing(capacity=10)
    out = np.zeros((4, 1), np.int16)
    assert ring.write(np.arange(1, 8, dtype=np.int16)) == 7
    assert ring.read_into(out) == 4 and out[:, 0].tolist() == [1, 2, 3, 4]
    assert ring.write(np.arange(8, 16, dtype=np.int16)) == 7  # only 7 free: the 8th does not fit
    got = []
    while ring.available:
        ring.read_into(out)
        got.extend(out[:, 0].tolist())
    assert got[: 5 + 6] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0][:11]
    assert ring.total_written == 14 and ring.total_read == 14


def test_ring_pads_with_silence_and_counts_underruns() -> None:
    ring = SampleRing(capacity=8, channels=2)
    ring.write(np.array([[1, -1], [2, -2]], np.int16))
    out = np.full((3, 2), 99, np.int16)
    assert ring.read_into(out) == 2
    assert out.tolist() == [[1, -1], [2, -2], [0, 0]]
    assert ring.underruns == 1
    ring.read_into(out)  # idle silence is not an underrun
    assert ring.underruns == 1


def test_ring_clear_drops_unread_frames_only() -> None:
    ring = SampleRing(capacity=16)
    ring.write(np.arange(10, dtype=np.int16))
    ring.read_into(np.zeros((3, 1), np.int16))
    assert ring.clear() == 7
    assert ring.available == 0 and ring.total_written == ring.total_read == 3


def test_playout_counts_what_the_device_consumed_per_item() -> None:
    buf = PlayoutBuffer(rate=24000, device_rate=48000)
    buf.push("a", np.ones(2400, np.int16))  # 100 ms
    buf.push("b", np.ones(4800, np.int16))  # 200 ms
    position = 0
    while (popped := buf.pop(480)) is not None:
        account, samples = popped
        buf.note_handed(account, len(samples), position)
        position += 2 * len(samples)  # twice as many frames at 48 kHz
    assert buf.played_ms("a", device_read_pos=0) == 0
    assert buf.played_ms("a", device_read_pos=2400) == 50
    assert buf.played_ms("a", device_read_pos=10**6) == 100  # never more than was handed over
    assert buf.played_ms("b", device_read_pos=4800 + 4800) == 100
    assert buf.received_ms("b") == 200


def test_playout_stop_freezes_the_account_and_drops_the_queue() -> None:
    buf = PlayoutBuffer(rate=24000, device_rate=24000)
    buf.push("a", np.ones(24000, np.int16))  # 1 s
    account, samples = buf.pop(4800)
    buf.note_handed(account, len(samples), 0)
    assert buf.stop(device_read_pos=1200) == 24000 - 4800
    assert buf.pending == 0 and buf.pop(480) is None
    assert buf.played_ms("a", device_read_pos=99999) == 50  # frozen at the cut: 1200 samples
    assert buf.received_ms("a") == 1000


def test_frame_converter_picks_the_channel_and_cuts_exact_frames() -> None:
    rng = np.random.default_rng(0)
    left = to_int16(rng.standard_normal(48000) * 3000)
    right = np.zeros_like(left)
    interleaved = np.column_stack((right, left)).reshape(-1)  # channel 1 carries the signal
    conv = FrameConverter(48000, channels=2, channel=1, out_rate=24000, frame_ms=20)
    frames = []
    for i in range(0, interleaved.size, 2 * 441):  # 441-frame device buffers: not a multiple of 20 ms
        frames += conv.convert(interleaved[i : i + 2 * 441].reshape(-1, 2))
    assert all(f.dtype == np.int16 and f.size == 480 for f in frames)
    resampler = StreamResampler(48000, 24000)
    expected = to_int16(resampler.process(left))
    got = np.concatenate(frames)
    assert np.array_equal(got, expected[: got.size])
    assert got.size >= expected.size - 480
