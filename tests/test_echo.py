"""The echo canceller on known echo paths: convergence, path changes, delay jumps, double talk."""

from __future__ import annotations

import numpy as np
import pytest
from echo_paths import echo_path, erle_db, far_speech, noise, run, through, visitor

from edgevoice.audio.echo import EchoCanceller
from edgevoice.audio.echo_delay import DelayEstimator


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_cancels_a_room_echo_at_every_rate(rate: int) -> None:
    frame = rate // 50
    far = far_speech(rate, 8.0)
    mic = through(echo_path(rate, delay_ms=3.0), far) + noise(rate, 8.0)
    canceller = EchoCanceller(rate, frame)
    out = run(canceller.process, mic, far, frame)
    assert erle_db(mic, out, far, rate, 0.0, 1.0, lag=canceller.block) > 20  # useful from the first second
    assert erle_db(mic, out, far, rate, 3.0, 8.0, lag=canceller.block) > 40


def test_linear_stage_alone_converges() -> None:
    """Without the suppressor, what the adaptive filter achieves by itself (the bench compares it to speex)."""
    rate, frame = 24000, 480
    far = far_speech(rate, 8.0)
    mic = through(echo_path(rate, delay_ms=3.0), far) + noise(rate, 8.0)
    canceller = EchoCanceller(rate, frame, suppress=False)
    out = run(canceller.process, mic, far, frame)
    assert erle_db(mic, out, far, rate, 0.0, 2.0) > 4
    assert erle_db(mic, out, far, rate, 6.0, 8.0) > 28  # (speex: about 30 on the same signal)


def test_recovers_when_the_echo_path_changes() -> None:
    """Someone moves the device and turns the volume up: a different path, 6 dB louder."""
    rate, frame = 24000, 480
    far = far_speech(rate, 14.0)
    before = through(echo_path(rate, delay_ms=3.0, seed=1), far)
    after = through(echo_path(rate, delay_ms=5.0, seed=2, gain=1.0, rt60=0.4), far)
    change = 7 * rate
    mic = np.concatenate((before[:change], after[change:])) + noise(rate, 14.0)
    canceller = EchoCanceller(rate, frame)
    out = run(canceller.process, mic, far, frame)
    lag = canceller.block
    assert erle_db(mic, out, far, rate, 4.0, 7.0, lag) > 40
    assert erle_db(mic, out, far, rate, 8.0, 10.0, lag) > 20  # useful again within a second
    assert erle_db(mic, out, far, rate, 11.0, 14.0, lag) > 40  # and as good as before within four


@pytest.mark.parametrize(
    ("early_ms", "late_ms", "erle_after_db"),
    [
        # PortAudio re-buffers: the echo moves 100 ms later, beyond the reach of the 128 ms filter alone.
        (40.0, 140.0, 35.0),
        # 220 ms later: further than the filter is long, its taps cannot move with the path and it starts afresh
        # at the new alignment (a jump between one and two filter lengths once raised and took the microphone down).
        (20.0, 240.0, 30.0),
    ],
)
def test_follows_a_jump_of_the_playback_delay(early_ms: float, late_ms: float, erle_after_db: float) -> None:
    rate, frame = 24000, 480
    far = far_speech(rate, 14.0)
    early = through(echo_path(rate, delay_ms=early_ms), far)
    late = through(echo_path(rate, delay_ms=late_ms), far)
    jump = 6 * rate
    mic = np.concatenate((early[:jump], late[jump:])) + noise(rate, 14.0)
    canceller = EchoCanceller(rate, frame)
    delays: list[float] = []
    out = run(canceller.process, mic, far, frame, each=lambda i: delays.append(canceller.delay_ms))
    lag = canceller.block
    # The direct path, a few ms of margin before it.
    assert early_ms - 10 <= delays[jump // frame - 1] <= early_ms
    assert late_ms - 10 <= delays[-1] <= late_ms
    assert erle_db(mic, out, far, rate, 3.0, 6.0, lag) > 40
    assert erle_db(mic, out, far, rate, 10.0, 14.0, lag) > erle_after_db


def test_delay_estimator_finds_the_bulk_delay_and_ignores_silence() -> None:
    rate, frame = 16000, 320
    far = far_speech(rate, 4.0)
    mic = through(echo_path(rate, delay_ms=230.0, rt60=0.5), far) + noise(rate, 4.0)
    estimator = DelayEstimator(rate, frame)
    for _ in range(0, far.size - frame + 1, frame):
        estimator.update(np.zeros(frame, np.int16), np.zeros(frame, np.int16))
    assert estimator.delay is None  # nothing played: nothing learnt
    for i in range(0, far.size - frame + 1, frame):
        estimator.update(mic[i : i + frame].astype(np.int16), far[i : i + frame])
    assert estimator.delay is not None
    assert abs(estimator.delay - 0.230 * rate) <= 2 * estimator.factor


def test_double_talk_keeps_the_visitor_and_the_filter() -> None:
    """The visitor talks over the answer: their voice comes through, and the filter does not diverge."""
    rate, frame = 24000, 480
    far = far_speech(rate, 16.0)
    path = echo_path(rate, delay_ms=3.0)
    voice = visitor(rate, -26.0)
    start = 8 * rate
    near = np.zeros(far.size)
    near[start : start + voice.size] = voice
    mic = through(path, far) + near + noise(rate, 16.0)
    canceller = EchoCanceller(rate, frame)
    copies: list[int] = []
    out = run(canceller.process, mic, far, frame, each=lambda i: copies.append(canceller.filter.copies))
    out = out.astype(np.float64)
    lag = canceller.block
    talk = slice(start, start + voice.size)
    # The shadow filter diverges while the visitor talks; the main filter must never take it.
    assert copies[(start + voice.size) // frame] == copies[start // frame]
    cleaned = out[start + lag : start + voice.size + lag]
    # Signal-to-distortion ratio of the visitor's voice (residual echo and suppression both count).
    sdr = 10 * np.log10(np.sum(voice**2) / np.sum((cleaned - near[talk]) ** 2))
    raw = 10 * np.log10(np.sum(voice**2) / np.sum((mic[talk] - near[talk]) ** 2))
    assert raw < 0  # the echo is louder than the visitor
    assert sdr > 8
    after = (start + voice.size) / rate + 0.5
    assert erle_db(mic, out, far, rate, after, 16.0, lag) > 35  # still converged after the double talk


def test_silence_costs_no_filtering_and_passes_the_microphone() -> None:
    rate, frame = 24000, 480
    canceller = EchoCanceller(rate, frame)
    voice = np.concatenate((np.zeros(rate), visitor(rate), np.zeros(rate)))
    out = run(canceller.process, voice, np.zeros(voice.size, np.int16), frame).astype(np.float64)
    lag = canceller.block
    assert np.max(np.abs(out[lag:] - np.rint(voice[: out.size - lag]))) <= 1  # one block late, and rounded


def test_frames_of_the_wrong_size_are_refused() -> None:
    canceller = EchoCanceller(24000, 480)
    with pytest.raises(ValueError, match="480 samples"):
        canceller.process(np.zeros(479, np.int16), np.zeros(480, np.int16))
