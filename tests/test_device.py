"""Whole conversation turns through the real components: ALSA/PortAudio (virtual card), gpiozero mock
pins, the daemon, a real WebSocket to the emulator. `Device` checks every test's wire conformance."""

from __future__ import annotations

import asyncio
import base64
import math

import numpy as np
import pytest
from conftest import silence, speak
from device import Device, dominant_hz, tone_segments
from scipy.signal import resample_poly

from edgevoice.audio.settings import AudioSettings
from edgevoice.config import Config
from edgevoice.devkit.emulator import EmulatorSettings, SpokenReply, Tone
from edgevoice.devkit.sound_card import VirtualSoundCard

RATE = 48000
LEAD = 0.5
LONG_REPLY = SpokenReply("This is a long answer that goes on.", (Tone(500.0, 1.5), Tone(700.0, 1.5)))


def uplink_audio(device: Device) -> np.ndarray:
    chunks = [base64.b64decode(e["audio"]) for e in device.sent("input_audio_buffer.append")]
    return np.frombuffer(b"".join(chunks), dtype="<i2")


def exact_stretch(sent: np.ndarray, mic: np.ndarray) -> int:
    """Where in the microphone's signal (resampled 48 -> 24 kHz) the uplink is, sample for sample; fails if the
    uplink is not one exact stretch of it."""
    expected = np.clip(np.rint(resample_poly(mic[: 30 * RATE].astype(np.float64), 1, 2)), -32768, 32767).astype(
        np.int16
    )
    j = int(np.flatnonzero(sent)[0])  # align on the first sound (leading silence matches anywhere)
    probe = sent[j : j + 480]
    offsets = [i for i in np.flatnonzero(expected == probe[0]) if np.array_equal(expected[i : i + 480], probe)]
    assert len(offsets) == 1, "the uplink's first sound is not (once) in the microphone's signal"
    start = offsets[0] - j
    assert start >= 0 and np.array_equal(sent, expected[start : start + len(sent)])
    return start


def test_push_to_talk_turn_end_to_end(sound_card: VirtualSoundCard) -> None:
    speech = speak("What time is it?")
    mic = np.concatenate((silence(LEAD), speech, silence(20)))
    speech_end = LEAD + len(speech) / RATE

    pressed_at: list[float] = []

    async def scenario() -> Device:
        async with Device(sound_card, mic=mic) as device:
            await device.wait_capture(LEAD - 0.2)
            assert device.daemon is not None
            pressed_at.append(device.daemon.capture_seconds)
            device.press()
            await device.wait_capture(speech_end + 0.2)
            device.release()
            await device.wait_state("idle", after="speaking")
            sent_when_idle = len(device.sent("input_audio_buffer.append"))
            await asyncio.sleep(1.0)
            assert len(device.sent("input_audio_buffer.append")) == sent_when_idle  # idle: nothing goes up
        return device

    device = asyncio.run(scenario())
    assert device.states == ["idle", "connecting", "listening", "thinking", "speaking", "idle"]
    kinds = [e["type"] for e in device.emulator.received]
    assert kinds[0] == "session.update" and kinds[-2:] == ["input_audio_buffer.commit", "response.create"]
    # The uplink is exactly the microphone's samples, resampled 48 -> 24 kHz, in one append per wake of the
    # microphone (40 ms, two 20 ms frames; the release sends what is left of a batch).
    sizes = [len(base64.b64decode(f["audio"])) for f in device.sent("input_audio_buffer.append")]
    assert set(sizes) <= {960, 1920} and sizes.count(960) <= 1, sizes
    sent = uplink_audio(device)
    start = exact_stretch(sent, mic)
    # The turn starts where the finger went down, though a hold is only recognised 250 ms later: the press came
    # 200 ms before the first word, within the 300 ms kept before speech, so the pre-roll's frames all go up
    # (and the release 200 ms after the last, within the 400 ms kept after it; trimming: the next test).
    assert abs(start / 24000 - pressed_at[0]) < 0.08, (start / 24000, pressed_at[0])
    assert len(sent) / 24000 > len(speech) / RATE  # the whole phrase went up
    # The answer (the emulator's 440/660/880 Hz tones) came out of the speaker, once, in full.
    played = sound_card.read_speaker()
    segments = tone_segments(played, RATE)
    assert len(segments) == 1, segments
    start_s, end_s = segments[0]
    assert abs((end_s - start_s) - 0.9) < 0.05
    thirds = np.array_split(played[int(start_s * RATE) : int(end_s * RATE)], 3)
    assert [round(dominant_hz(t, RATE) / 10) * 10 for t in thirds] == [440, 660, 880]
    latency = device.of("latency")
    assert len(latency) == 1 and 0 < latency[0]["ms"] < 1500
    transcripts = [(e["role"], e["text"]) for e in device.of("transcript") if e["final"]]
    assert ("assistant", "Hello from the edgevoice emulator.") in transcripts
    assert any(role == "user" for role, _ in transcripts)
    assert [e["pattern"] for e in device.of("led")][:3] == ["off", "blink 0.1s on / 0.4s off", "on"]


def test_push_to_talk_sends_the_speech_not_the_waits_around_it(sound_card: VirtualSoundCard) -> None:
    """Press, wait, speak, wait, let go: the server gets the microphone's exact samples from 300 ms before the
    first word to 400 ms after the last, not the waits, and the usage event says what that cost."""
    speech = speak("What time is it?")
    wait_before, wait_after = 0.8, 1.0
    speech_start = LEAD + wait_before
    speech_end = speech_start + len(speech) / RATE
    mic = np.concatenate((silence(speech_start), speech, silence(20)))
    sound = np.flatnonzero(np.abs(speech) > 30)  # espeak's own output begins and ends with a little silence
    voice_start, voice_end = speech_start + sound[0] / RATE, speech_start + sound[-1] / RATE

    async def scenario() -> Device:
        async with Device(sound_card, mic=mic) as device:
            await device.wait_capture(LEAD)
            device.press()
            await device.wait_capture(speech_end + wait_after)
            device.release()
            await device.wait_state("idle", after="speaking")
            await device.until(lambda: device.of("usage"), 5, "the usage event")
        return device

    device = asyncio.run(scenario())
    assert device.states == ["idle", "connecting", "listening", "thinking", "speaking", "idle"]
    sent = uplink_audio(device)
    start = exact_stretch(sent, mic)  # one stretch of the microphone, sample for sample: the pause is kept whole
    begin_s, end_s = start / 24000, (start + len(sent)) / 24000
    # The lead margin (300 ms before the first voiced frame, a frame's rounding either way), not the 0.8 s wait.
    assert voice_start - 0.34 <= begin_s <= voice_start - 0.26, (begin_s, voice_start)
    # The trailing margin (400 ms after the frame that holds the last sound, or one more), not the 1 s wait.
    assert voice_end + 0.38 <= end_s <= voice_end + 0.46, (end_s, voice_end)
    (usage,) = device.of("usage")
    sent_ms = len(sent) / 24
    assert usage["input_audio_s"] == round(sent_ms / 1000, 2)
    assert abs(usage["speech_s"] - (voice_end - voice_start)) <= 0.12, (usage["speech_s"], voice_end - voice_start)
    assert usage["session"]["tokens"]["audio_in"] == math.ceil(sent_ms / 100)  # what the server billed
    assert usage["today"]["input_per_speech"] == round(usage["input_audio_s"] / usage["speech_s"], 2)
    held_s = speech_end + wait_after - LEAD  # what trimming saved: the press to the release, less what went up
    assert held_s - sent_ms / 1000 > 1.2, (held_s, sent_ms)


def test_server_vad_turn_and_barge_in_by_voice(sound_card: VirtualSoundCard) -> None:
    first, second = speak("Tell me a story."), speak("Stop, please.")
    gap = 1.9  # the second phrase starts while the (3 s) first answer is playing
    mic = np.concatenate((silence(LEAD), first, silence(gap), second, silence(20)))

    async def scenario() -> Device:
        realtime = EmulatorSettings(realtime_factor=1.0, response_delay_s=0.1)  # still streaming at the barge-in
        async with Device(sound_card, mic=mic, vad=True, emulator=realtime) as device:
            device.emulator.queue_reply(LONG_REPLY)
            await device.wait_capture(LEAD - 0.3)
            device.press()
            await asyncio.sleep(0.1)
            device.release()
            await device.until(lambda: device.of("interrupted"), 15, "the barge-in")
            await device.wait_state("idle", after="speaking")
            await asyncio.sleep(0.2)
        return device

    device = asyncio.run(scenario())
    states = device.states
    assert states[:5] == ["idle", "connecting", "listening", "thinking", "speaking"]
    assert states[5:] == ["listening", "thinking", "speaking", "listening", "idle"]
    # The device's own detector heard the visitor first (the virtual card's microphone does not hear the speaker,
    # so the canceller trusts it as soon as the answer starts): it stopped the answer and cancelled it, once, and
    # the server's own interruption that followed (interrupt_response) raised no error. (When the server is first,
    # edgevoice only truncates: tests/test_conversation.py.)
    assert len(device.sent("response.cancel")) == 1
    assert any("local barge-in" in line for line in device.log.lines)
    assert not [e for e in device.emulator.sent if e["type"] == "error"]
    (truncate,) = device.sent("conversation.item.truncate")
    interrupted = device.of("interrupted")[0]
    assert truncate["audio_end_ms"] == interrupted["played_ms"]
    # What the speaker really played of the first answer is what the server was told was heard.
    segments = tone_segments(sound_card.read_speaker(), RATE)
    assert len(segments) == 2, segments
    heard_ms = (segments[0][1] - segments[0][0]) * 1000
    assert 200 < truncate["audio_end_ms"] < 2500
    assert abs(heard_ms - truncate["audio_end_ms"]) < 100, (heard_ms, truncate)
    cancelled = [
        e for e in device.emulator.sent if e["type"] == "response.done" and e["response"]["status"] == "cancelled"
    ]
    assert len(cancelled) == 1
    # While the answer played the microphone went up in 100 ms appends ([realtime] speaking_append_ms), else in
    # one append per wake of the microphone (40 ms, two frames); a batch cut short went as it was.
    sizes = [len(base64.b64decode(e["audio"])) for e in device.sent("input_audio_buffer.append")]
    assert all(size % 960 == 0 and size <= 4800 for size in sizes), sorted(set(sizes))
    assert sizes.count(4800) >= 10 and sizes.count(1920) >= 25, (sizes.count(4800), sizes.count(1920))


@pytest.mark.parametrize("answer_gap_s", [0.6, 1.5, 2.6])
def test_button_interrupts_the_answer_and_starts_a_new_turn(sound_card: VirtualSoundCard, answer_gap_s: float) -> None:
    """Barge-in early, midway and late in a 3 s answer: the truncate says what the speaker really played."""
    question, follow_up = speak("Tell me a story."), speak("Never mind.")
    mic = np.concatenate((silence(LEAD), question, silence(answer_gap_s), follow_up, silence(20)))
    follow_start = LEAD + len(question) / RATE + answer_gap_s
    follow_end = follow_start + len(follow_up) / RATE
    slow = EmulatorSettings(realtime_factor=1.0, response_delay_s=0.1)  # the response is still streaming
    xruns: list[object] = []

    async def scenario() -> Device:
        async with Device(sound_card, mic=mic, emulator=slow) as device:
            device.emulator.queue_reply(LONG_REPLY)
            await device.wait_capture(LEAD - 0.2)
            device.press()
            await device.wait_capture(follow_start - answer_gap_s + 0.1)
            device.release()
            await device.wait_state("speaking")
            await device.wait_capture(follow_start - 0.2)
            device.press()  # talk over the answer
            await device.until(lambda: device.of("interrupted"), 5, "the barge-in")
            await device.wait_capture(follow_end + 0.2)
            device.release()
            await device.wait_state("idle", after="speaking")
            await device.wait_state("idle", after="thinking")
            await asyncio.sleep(0.2)
            assert device.daemon is not None
            xruns.append(device.daemon.xruns())
        return device

    device = asyncio.run(scenario())
    assert device.states == [
        "idle", "connecting", "listening", "thinking", "speaking", "listening", "thinking", "speaking", "idle",
    ]  # fmt: skip
    assert len(device.sent("response.cancel")) == 1  # push-to-talk: nobody else cancels it
    (truncate,) = device.sent("conversation.item.truncate")
    segments = tone_segments(sound_card.read_speaker(), RATE)
    assert len(segments) == 2, segments
    heard_ms = (segments[0][1] - segments[0][0]) * 1000
    assert abs(heard_ms - truncate["audio_end_ms"]) < 100, (heard_ms, truncate)
    # Nothing of the interrupted answer played after the cut: the second segment is the default reply.
    assert abs((segments[1][1] - segments[1][0]) - 0.9) < 0.05, (segments, xruns)


def test_malformed_server_events_are_logged_and_the_turn_completes(sound_card: VirtualSoundCard) -> None:
    speech = speak("Hello there.")
    mic = np.concatenate((silence(LEAD), speech, silence(20)))

    async def scenario() -> Device:
        async with Device(sound_card, mic=mic) as device:
            await device.wait_capture(LEAD - 0.2)
            device.press()
            await device.wait_state("listening")
            for garbage in (
                "not json",
                "[]",
                '{"type": "response.output_audio.delta", "delta": "***"}',
                '{"type": "input_audio_buffer.speech_started", "audio_start_ms": "soon"}',
                '{"type": "error", "error": {"type": "server_error", "code": "oops", "message": "a hiccup"}}',
            ):
                await device.emulator.inject(garbage)
            await device.wait_capture(LEAD + len(speech) / RATE + 0.2)
            device.release()
            await device.wait_state("idle", after="speaking")
        return device

    device = asyncio.run(scenario())
    assert device.states[-3:] == ["thinking", "speaking", "idle"]
    assert sum("ignoring a malformed server event" in line for line in device.log.lines) == 4
    assert any(e["code"] == "oops" and e["message"] == "a hiccup" for e in device.of("error"))


def test_unreachable_endpoint_shows_offline_and_a_press_retries(sound_card: VirtualSoundCard) -> None:
    async def scenario() -> Device:
        url, why = "ws://127.0.0.1:9/v1/realtime", "the endpoint is unreachable"
        async with Device(sound_card, mic=silence(30), url=url, sends_nothing=why) as device:
            await device.wait_capture(0.2)
            device.press()
            await device.wait_state("offline")
            device.release()
            await asyncio.sleep(0.3)
            device.press()
            await device.until(
                lambda: device.daemon.manager.connects == 0 and len(device.daemon.manager.attempt_log) >= 2
            )
            device.release()
        return device

    device = asyncio.run(scenario())
    assert device.states[:3] == ["idle", "connecting", "offline"] and "error" not in device.states
    errors = [e for e in device.of("error") if e["code"] == "link_down"]
    assert errors and all("cannot reach 127.0.0.1" in e["message"] for e in errors)


def test_refused_key_shows_error_and_never_reaches_the_logs(sound_card: VirtualSoundCard) -> None:
    secret = "sk-wrong-" + "Zq7" * 12
    for mode in ("http401", "close3000"):
        emulator = EmulatorSettings(api_key="sk-" + "right-key-0123456789", bad_key_mode=mode)

        async def scenario(emulator: EmulatorSettings = emulator) -> Device:
            why = "the emulator refuses the key before it reads any event"
            async with Device(
                sound_card, mic=silence(30), emulator=emulator, api_key=secret, sends_nothing=why
            ) as device:
                await device.wait_capture(0.2)
                device.press()
                await device.wait_state("error")
                device.release()
            return device

        device = asyncio.run(scenario())
        assert device.states == ["idle", "connecting", "error"]
        message = device.of("error")[-1]["message"]
        assert "API key" in message or "invalid_api_key" in message, message
        assert len(device.log.lines) > 10
        assert not any(secret in line for line in device.log.lines)


def test_missing_microphone_is_an_error_that_lists_the_devices(sound_card: VirtualSoundCard) -> None:
    config = Config(audio=AudioSettings(input_device="no-such-microphone", output_device="ev_spk"))

    async def scenario() -> Device:
        async with Device(sound_card, mic=silence(5), config=config, sends_nothing="there is no microphone") as device:
            await device.wait_state("error")
            device.press()  # the daemon is alive and still answers the button
            await asyncio.sleep(0.1)
        return device

    device = asyncio.run(scenario())
    message = device.of("error")[0]["message"]
    assert "no input device whose name contains 'no-such-microphone'" in message
    assert "ev_mic" in message and "Set [audio] input_device" in message


def test_a_16khz_stereo_microphone_and_a_44khz_speaker(sound_card: VirtualSoundCard) -> None:
    """A HAT-like device: the voice on the second channel at 16 kHz, the speaker at 44.1 kHz."""
    rate_in, rate_out = 16000, 44100
    speech = speak("Good morning.", rate_in)
    voice = np.concatenate((silence(LEAD, rate_in), speech, silence(20, rate_in)))
    hiss = (np.random.default_rng(1).standard_normal(voice.size) * 100).astype(np.int16)
    config = Config(
        audio=AudioSettings(
            input_device="ev_mic",
            output_device="ev_spk",
            input_rate=rate_in,
            input_channels=2,
            input_channel=1,
            output_rate=rate_out,
        )
    )

    async def scenario() -> Device:
        async with Device(sound_card, mic=np.column_stack((hiss, voice)).reshape(-1), config=config) as device:
            await device.wait_capture(LEAD - 0.2)
            device.press()
            await device.wait_capture(LEAD + len(speech) / rate_in + 0.2)
            device.release()
            await device.wait_state("idle", after="speaking")
            await asyncio.sleep(0.2)
        return device

    device = asyncio.run(scenario())
    sent = uplink_audio(device)
    expected = np.clip(np.rint(resample_poly(voice.astype(np.float64), 3, 2)), -32768, 32767).astype(np.int16)
    j = int(np.flatnonzero(sent)[0])
    start = next(
        i for i in np.flatnonzero(expected == sent[j]) if np.array_equal(expected[i : i + 480], sent[j : j + 480])
    )
    assert np.array_equal(sent, expected[start - j : start - j + len(sent)])  # channel 1, not the hiss
    played = sound_card.read_speaker()  # mono int16 at 44.1 kHz
    (segment,) = tone_segments(played, rate_out)
    answer = played[int(segment[0] * rate_out) : int(segment[1] * rate_out)]
    assert [round(dominant_hz(p, rate_out) / 10) * 10 for p in np.array_split(answer, 3)] == [440, 660, 880]


def test_the_key_goes_in_a_bearer_header_and_opens_the_session(sound_card: VirtualSoundCard) -> None:
    key = "sk-" + "right-key-0123456789"

    async def scenario() -> Device:
        emulator = EmulatorSettings(api_key=key)  # the emulator refuses any other credentials with HTTP 401
        async with Device(sound_card, mic=silence(30), emulator=emulator, api_key=key) as device:
            await device.wait_capture(0.2)
            device.press()
            await device.wait_state("listening")
            device.release()
        return device

    device = asyncio.run(scenario())
    (handshake,) = device.emulator.handshakes
    assert handshake.status == 101 and handshake.query["model"] == "gpt-realtime-2"
    assert handshake.headers["authorization"].startswith("Bearer ") and "openai-beta" not in handshake.headers


def test_a_double_press_mutes_the_microphone(sound_card: VirtualSoundCard) -> None:
    async def scenario() -> Device:
        mic = np.concatenate((silence(0.5), speak("Secret."), silence(20)))
        async with Device(sound_card, mic=mic, sends_nothing="the microphone is muted") as device:
            await device.wait_capture(0.2)
            for _ in range(2):  # a double press
                device.press()
                await asyncio.sleep(0.08)
                device.release()
                await asyncio.sleep(0.08)
            await device.wait_state("muted")
            device.press()  # holding to talk while muted: refused, nothing is sent
            await asyncio.sleep(1.0)
            device.release()
            await asyncio.sleep(0.3)
        return device

    device = asyncio.run(scenario())
    assert device.states == ["idle", "muted"]
    assert [e["action"] for e in device.of("button")][:1] == ["mute"]
    assert not device.sent("input_audio_buffer.append") and device.emulator.sessions_started == 0
    assert any("muted" in e.get("message", "") for e in device.of("notice"))
