"""Living with the speaker's echo: the three modes behind one interface, and the local voice detector."""

from __future__ import annotations

import math

import numpy as np
import pytest
from echo_paths import echo_path, far_speech, noise, through, visitor

from edgevoice.audio.duplex import EchoControl, make_echo_control
from edgevoice.audio.echo import EchoCanceller
from edgevoice.audio.gate import EchoGate, NoEchoControl
from edgevoice.audio.resample import to_int16
from edgevoice.audio.settings import AudioSettings
from edgevoice.audio.vad import LocalVad
from edgevoice.config import ConfigError, parse_config
from edgevoice.conversation.trim import SilenceTrimmer

RATE, FRAME = 24000, 480


def onsets(control: EchoControl, mic: np.ndarray, far: np.ndarray) -> list[float]:
    """Times (s, at the end of the frame) at which the local VAD says a visitor started talking."""
    vad = LocalVad(RATE, FRAME)
    mic16 = to_int16(mic)
    fired = []
    for i in range(0, mic16.size - FRAME + 1, FRAME):
        cleaned = control.process(mic16[i : i + FRAME], far[i : i + FRAME])
        if vad.process(cleaned, control.echo_level, control.far_active):
            fired.append((i + FRAME) / RATE)
    return fired


def speech_start(x: np.ndarray) -> float:
    return float(np.flatnonzero(np.abs(x) > 0.05 * np.abs(x).max())[0]) / RATE


@pytest.mark.parametrize(
    ("delay_ms", "rt60", "reverb_db"),
    [(3.0, 0.2, -10.0), (30.0, 0.4, -6.0), (80.0, 0.6, -3.0)],
)
def test_the_device_never_hears_itself_and_always_hears_a_visitor(delay_ms: float, rt60: float, reverb_db: float):
    """Echo alone never triggers the detector; a visitor talking over the answer does, within 100 ms."""
    far = far_speech(RATE, 16.0)
    echo = through(echo_path(RATE, delay_ms=delay_ms, rt60=rt60, reverb_db=reverb_db), far)
    voice = visitor(RATE, -26.0)
    start = 10 * RATE
    near = np.zeros(far.size)
    near[start : start + voice.size] = voice
    fired = onsets(EchoCanceller(RATE, FRAME), echo + near + noise(RATE, 16.0), far)
    assert fired, "the visitor was never detected"
    assert fired[0] >= start / RATE, f"fired on echo alone at {fired[0]:.2f} s"
    talk = start / RATE + speech_start(voice)
    assert fired[0] - talk <= 0.100, f"{(fired[0] - talk) * 1000:.0f} ms after the visitor started"


@pytest.mark.parametrize("echo_gain", [0.0, 0.5], ids=["no echo heard", "echo"])
def test_each_interruption_is_heard_as_soon_as_the_first(echo_gain: float) -> None:
    """A visitor interrupts the answer again and again, and talks on after the device stopped. The detector must
    not learn from that voice (neither while its onset is pending nor from the room's ringing after the device
    stopped), and the visitor's own voice must not raise the bar for their first words: where the microphone
    hears the device's voice only through the filters' estimate of it, not as the whole microphone level."""
    far = far_speech(RATE, 4.0)
    echo = through(echo_path(RATE, delay_ms=30.0, rt60=0.4, reverb_db=-6.0), far) * echo_gain
    voice = visitor(RATE, -30.0)
    talk = 2.5 + speech_start(voice)
    room = noise(RATE, 4.0, dbfs=-55.0)
    control, vad = EchoCanceller(RATE, FRAME), LocalVad(RATE, FRAME)
    for _ in range(2):  # the canceller learns the room first (no barge-in by voice meanwhile)
        for i in range(0, far.size - FRAME + 1, FRAME):
            mic = to_int16(room[i : i + FRAME] + echo[i : i + FRAME])
            vad.process(control.process(mic, far[i : i + FRAME]), control.echo_level, control.far_active)
    assert not control.learning
    delays, leaks = [], []
    for _ in range(8):
        near = room.copy()
        near[int(2.5 * RATE) :] += voice[: near.size - int(2.5 * RATE)]
        stopped = None
        for i in range(0, far.size - FRAME + 1, FRAME):
            playing = stopped is None
            mic = to_int16(near[i : i + FRAME] + (echo[i : i + FRAME] if playing else 0.0))
            cleaned = control.process(mic, far[i : i + FRAME] if playing else np.zeros(FRAME, np.int16))
            if vad.process(cleaned, control.echo_level, control.far_active) and playing and i >= 2.5 * RATE:
                stopped = (i + FRAME) / RATE  # the device stops; the visitor talks on
        assert stopped is not None, "an interruption was not heard"
        delays.append(stopped - talk)
        leaks.append(vad.leak)
    shown = [f"{d * 1000:.0f} ms" for d in delays]
    assert max(delays) <= delays[0] + 0.021 and max(delays) <= 0.100, shown
    assert leaks[-1] <= 2 * leaks[0] or echo_gain == 0.0, leaks  # with no echo, what it learns scales nothing


def test_the_detector_hears_a_visitor_in_a_quiet_room_and_ignores_the_room() -> None:
    voice = visitor(RATE, -36.0)
    hum = noise(RATE, 6.0, dbfs=-50.0)
    mic = hum.copy()
    mic[3 * RATE : 3 * RATE + voice.size] += voice
    fired = onsets(EchoCanceller(RATE, FRAME), mic, np.zeros(mic.size, np.int16))
    assert len(fired) == 1
    assert 0 <= fired[0] - (3 + speech_start(voice)) <= 0.1


def test_an_onset_is_pending_from_the_first_loud_frame_until_speech_starts() -> None:
    """What lets the microphone path wake the loop for the very next buffer (mic_path.py): the frame after a
    pending one may start speech."""
    voice = visitor(RATE, -36.0)
    mic = to_int16(noise(RATE, 4.0, dbfs=-50.0) + np.concatenate((np.zeros(2 * RATE), voice))[: 4 * RATE])
    vad = LocalVad(RATE, FRAME)
    verdicts = []  # (pending after the frame, speech started on it)
    for i in range(0, mic.size - FRAME + 1, FRAME):
        started = vad.process(mic[i : i + FRAME])
        verdicts.append((vad.onset_pending, started))
    first_start = next(i for i, (_, started) in enumerate(verdicts) if started)
    assert first_start >= 2 * RATE // FRAME
    assert verdicts[first_start - 1][0], "the frame before the onset left it pending"
    assert not verdicts[first_start][0], "once speech has started nothing is pending"
    assert not any(pending for pending, _ in verdicts[: 2 * RATE // FRAME]), "the quiet room is never pending"


def test_gate_attenuates_while_the_device_speaks_and_for_the_hang_time() -> None:
    gate = EchoGate(RATE, FRAME, hang_ms=200.0, attenuation_db=40.0)
    far = np.zeros(4 * RATE, np.int16)
    far[RATE : 2 * RATE] = far_speech(RATE, 1.0)
    far[RATE : 2 * RATE][np.abs(far[RATE : 2 * RATE]) < 50] = 50  # no pauses: one stretch of talking
    mic = to_int16(noise(RATE, 4.0, dbfs=-20.0))
    out = np.concatenate([gate.process(mic[i : i + FRAME], far[i : i + FRAME]) for i in range(0, mic.size, FRAME)])
    rms = [float(np.sqrt(np.mean(out[i : i + FRAME].astype(float) ** 2))) for i in range(0, out.size, FRAME)]
    level = float(np.sqrt(np.mean(mic.astype(float) ** 2)))
    frames_per_s = RATE // FRAME
    assert all(abs(r / level - 1) < 0.1 for r in rms[: frames_per_s - 1])  # open before
    closed = rms[frames_per_s + 1 : 2 * frames_per_s]
    assert all(r < level * 0.011 for r in closed)  # -40 dB while speaking
    # Still closed for the hang time plus the playback latency it assumes before it has measured it.
    hang_frames = round((200 + 150) / 20)
    assert all(r < level * 0.011 for r in rms[2 * frames_per_s : 2 * frames_per_s + hang_frames - 1])
    assert all(abs(r / level - 1) < 0.1 for r in rms[2 * frames_per_s + hang_frames + 1 :])  # open after
    assert not gate.closed and gate.echo_level == 0.0


def test_gate_ramps_instead_of_clicking() -> None:
    gate = EchoGate(RATE, FRAME)
    tone = to_int16(10000 * np.sin(2 * np.pi * 200 * np.arange(FRAME) / RATE))
    loud = np.full(FRAME, 3000, np.int16)
    gate.process(tone, np.zeros(FRAME, np.int16))
    out = gate.process(tone, loud).astype(float)
    assert np.max(np.abs(np.diff(out))) < np.max(np.abs(np.diff(tone.astype(float)))) * 1.01
    assert gate.closed and math.isinf(gate.echo_level)


def test_no_voice_detection_through_a_closed_gate_or_without_echo_control() -> None:
    """In `gate` and `off` nobody can barge in by voice while the device speaks (only with the button)."""
    far = far_speech(RATE, 8.0)
    echo = through(echo_path(RATE, delay_ms=3.0), far)
    voice = visitor(RATE, -10.0)  # even a loud visitor
    near = np.zeros(far.size)
    near[4 * RATE : 4 * RATE + voice.size] = voice
    for control in (EchoGate(RATE, FRAME), NoEchoControl(RATE, FRAME)):
        assert onsets(control, echo + near, far) == []


def test_off_passes_the_microphone_untouched() -> None:
    control = NoEchoControl(RATE, FRAME)
    mic = to_int16(noise(RATE, 0.02, dbfs=-20.0))
    assert np.array_equal(control.process(mic, np.zeros(FRAME, np.int16)), mic)
    assert control.echo_level == 0.0
    control.process(mic, np.full(FRAME, 3000, np.int16))
    assert math.isinf(control.echo_level)


@pytest.mark.parametrize(("mode", "kind"), [("aec", EchoCanceller), ("gate", EchoGate), ("off", NoEchoControl)])
def test_the_configured_mode_is_built(mode: str, kind: type) -> None:
    settings = parse_config(f'[audio]\necho = "{mode}"\necho_tail_ms = 256\ngate_hang_ms = 300\n').audio
    control = make_echo_control(settings, RATE, FRAME)
    assert isinstance(control, kind) and control.mode == mode
    if isinstance(control, EchoCanceller):
        assert control.tail_ms >= 256
    if isinstance(control, EchoGate):
        assert control.hang_ms == 300


def test_aec_is_the_default_and_a_wrong_mode_says_what_is_allowed() -> None:
    assert AudioSettings().echo == "aec"
    with pytest.raises(ConfigError, match=r"\[audio\] echo = 'cancel': must be one of 'aec', 'gate', 'off'"):
        parse_config('[audio]\necho = "cancel"\n')


def test_no_voice_detection_while_the_canceller_learns_then_it_listens_again() -> None:
    """The first second of the first answer: the canceller does not know the room yet, so the detector is
    told not to trust the microphone; once the device is silent again, a visitor is heard as usual."""
    far = np.zeros(4 * RATE, np.int16)
    far[:RATE] = far_speech(RATE, 1.0)  # a short first answer (less than the learning time)
    echo = through(echo_path(RATE, delay_ms=3.0), far)
    canceller = EchoCanceller(RATE, FRAME)
    voice = visitor(RATE, -26.0)
    near = np.zeros(far.size)
    near[int(0.5 * RATE) : int(0.5 * RATE) + voice.size] += voice[: int(3.5 * RATE)]
    levels = []
    vad = LocalVad(RATE, FRAME)
    mic = to_int16(echo + near + noise(RATE, 4.0))
    fired = []
    for i in range(0, mic.size, FRAME):
        cleaned = canceller.process(mic[i : i + FRAME], far[i : i + FRAME])
        levels.append(canceller.echo_level)
        if vad.process(cleaned, canceller.echo_level):
            fired.append(i / RATE)
    assert math.isinf(levels[RATE // FRAME // 2])  # learning, and the device speaks
    assert levels[-1] < 1.0  # a second after it stopped: nothing to distrust any more
    assert fired and fired[0] > 1.0  # heard (it was talking over the learning device and went on after)


@pytest.mark.parametrize(("room_dbfs", "voice_dbfs"), [(-50.0, -36.0), (-50.0, -44.0), (-70.0, -30.0)])
def test_voiced_frames_hold_every_word_and_never_the_quiet_room(room_dbfs: float, voice_dbfs: float) -> None:
    """The per-frame verdict push-to-talk trims with: with the trimmer's margins, the words all go up (at 6 dB
    over the room too), the room before and after them does not."""
    voice = visitor(RATE, voice_dbfs)
    start = 2 * RATE
    mic = noise(RATE, 4.0 + voice.size / RATE, dbfs=room_dbfs)
    mic[start : start + voice.size] += voice
    mic16, silent = to_int16(mic), np.zeros(FRAME, np.int16)
    canceller, vad = EchoCanceller(RATE, FRAME), LocalVad(RATE, FRAME)
    voiced = []
    for i in range(0, mic16.size - FRAME + 1, FRAME):
        vad.process(canceller.process(mic16[i : i + FRAME], silent), canceller.echo_level)
        voiced.append(vad.voiced)
    words = np.flatnonzero(np.abs(voice) > 0.02 * np.abs(voice).max())
    first, last = (start + words[0]) // FRAME, (start + words[-1]) // FRAME
    assert not any(voiced[: first - 1]) and not any(voiced[last + 2 :])  # the room alone is never a voice
    trimmer = SilenceTrimmer[int](1000 * FRAME // RATE)
    sent = [f for i, v in enumerate(voiced) for f in trimmer.push(i, v)] + trimmer.finish()
    assert sent[0] <= first and sent[-1] >= last, "a word was cut"
    assert sent == list(range(sent[0], sent[-1] + 1))
    assert len(sent) < len(voiced) - 150  # 3 s of the 4 s of room around the words were not sent
