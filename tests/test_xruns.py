"""The audio path's losses: counted when they happen (and only then), read in one place (`SoundDevices.xruns`),
shown in the control socket's `status` and warned about at most once a minute. Real PortAudio streams on the
virtual card; the losses are caused for real, by an event loop that does not read or is held up."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import numpy as np
from busy import hold_the_interpreter
from conftest import silence
from device import Device

from edgevoice.audio.settings import AudioSettings
from edgevoice.audio.sound_devices import SoundDevices
from edgevoice.audio.xruns import XRuns, XRunWatch
from edgevoice.control.client import ControlClient
from edgevoice.devkit.emulator import SpokenReply, Tone
from edgevoice.devkit.sound_card import MIC, MIC_FAST, SPEAKER, SPEAKER_FAST, VirtualSoundCard

RATE = 48000


def test_the_watch_warns_at_once_then_at_most_once_a_minute_with_the_count_since_its_last_line() -> None:
    watch = XRunWatch(every_s=60)
    assert watch.check(XRuns(), 0.0) is None  # nothing lost, nothing said
    first = watch.check(XRuns(capture_overflows=3, playback_gaps=1), 10.0)
    assert first is not None and first.startswith("audio: 3 capture overflows, 1 playback gap since the sound devices")
    assert "the CPU is too slow or too busy" in first and "sound card or its USB link" in first
    assert watch.check(XRuns(capture_overflows=5, playback_gaps=1), 40.0) is None  # within the minute: held back
    assert watch.check(XRuns(capture_overflows=5, playback_gaps=1), 69.0) is None
    later = watch.check(XRuns(capture_overflows=5, playback_gaps=1, capture_dropped=4), 71.0)
    assert later is not None
    assert later.startswith("audio: 2 capture overflows, 4 microphone buffers dropped in the last 61 s")
    assert watch.check(XRuns(capture_overflows=5, playback_gaps=1, capture_dropped=4), 200.0) is None  # no news
    gaps_only = watch.check(XRuns(capture_overflows=5, playback_gaps=2, capture_dropped=4), 201.0)
    assert gaps_only is not None and "1 playback gap in the last 130 s" in gaps_only
    assert "the daemon fell behind the audio" in gaps_only


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def open_sound(mic: str, speaker: str, on_drained: Callable[[], None] = lambda: None) -> SoundDevices:
    settings = AudioSettings(input_device=mic, output_device=speaker, input_rate=RATE, output_rate=RATE)
    return SoundDevices(
        settings,
        asyncio.get_running_loop(),
        on_started=lambda item: None,
        on_drained=on_drained,
        on_level=lambda level: None,
        mic_needed=lambda: False,
    )


def test_microphone_buffers_count_as_dropped_only_when_the_loop_wanted_them(sound_card: VirtualSoundCard) -> None:
    sound_card.write_mic(np.zeros(RATE * 5, np.int16), fast=True)

    async def scenario() -> tuple[XRuns, XRuns]:
        sound = open_sound(MIC_FAST, SPEAKER_FAST)  # unpaced: the ring overfills within milliseconds
        sound.start()
        try:
            # At rest the hand-over keeps the last 2 s for the next turn's pre-roll: older buffers fall out by design.
            await until(lambda: sound.capture.dropped > 10, "the ring at rest to overfill")
            at_rest = sound.xruns()
            sound.capture.wanted = True  # the loop now wants every buffer, and reads none
            await until(lambda: sound.xruns().capture_dropped > 10, "wanted buffers to be lost")
            return at_rest, sound.xruns()
        finally:
            sound.close()

    at_rest, behind = asyncio.run(scenario())
    assert at_rest.capture_dropped == 0
    assert behind.capture_dropped > 10 and behind.playback_gaps == 0


def test_a_held_up_loop_leaves_the_speaker_gaps_and_an_answers_end_is_not_one(sound_card: VirtualSoundCard) -> None:
    sound_card.write_mic(silence(30))
    tone = (3000 * np.sin(2 * np.pi * 440 * np.arange(24240) / 24000)).astype(np.int16)  # 50.5 buffers at 48 kHz

    async def scenario() -> tuple[XRuns, int, XRuns]:
        drained = asyncio.Event()
        sound = open_sound(MIC, SPEAKER, on_drained=drained.set)  # paced in real time
        sound.start()
        pump = asyncio.create_task(sound.speaker.run())
        try:
            sound.speaker.push("item_a", tone)
            await asyncio.wait_for(drained.wait(), 10)
            after_a, ring_dry_reads = sound.xruns(), sound.playback.ring.underruns
            drained.clear()
            sound.speaker.push("item_b", np.concatenate((tone, tone)))
            await until(lambda: sound.speaker.played_ms("item_b") > 300, "the second answer to play")
            time.sleep(0.4)  # the event loop is held up (a CPU too busy): the pump cannot refill the speaker
            await asyncio.wait_for(drained.wait(), 10)
            return after_a, ring_dry_reads, sound.xruns()
        finally:
            pump.cancel()
            sound.close()

    after_a, ring_dry_reads, after_b = asyncio.run(scenario())
    # The first answer ended part-way through a buffer (the ring ran dry), which is no gap: nothing waited.
    assert ring_dry_reads >= 1 and after_a == XRuns()
    # The ring holds 120 ms: most of the 400 ms stall was played as silence while the answer waited.
    assert 5 <= after_b.playback_gaps <= 21, after_b
    assert after_b.capture_dropped == 0  # 0.4 s is well within the microphone's 2 s hand-over


def test_the_daemon_shows_its_losses_in_status_and_warns_once_a_minute(sound_card: VirtualSoundCard) -> None:
    long = SpokenReply("A long answer.", (Tone(500.0, 2.0), Tone(700.0, 2.0)))

    async def scenario(device: Device) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        robot = ControlClient(str(device.socket_path))
        await robot.connect()
        try:
            before = (await robot.request("status"))["audio"]
            device.emulator.queue_reply(long)
            await robot.request("say", text="Tell me a story.")
            await device.wait_state("speaking", after="thinking")
            await asyncio.sleep(0.5)
            time.sleep(0.4)  # the whole daemon is held up (it shares this event loop): the speaker runs dry
            await asyncio.sleep(0.6)  # a tick or two: the warning is logged
            first = (await robot.request("status"))["audio"]
            time.sleep(0.4)  # again, within the minute: counted, not logged again
            await device.wait_state("idle", after="speaking")
            await asyncio.sleep(0.6)
            last = (await robot.request("status"))["audio"]
            return before, first, last
        finally:
            await robot.close()

    async def main() -> tuple[Device, tuple[dict[str, object], dict[str, object], dict[str, object]]]:
        async with Device(sound_card, mic=silence(30)) as device:
            await device.wait_capture(0.1)
            return device, await scenario(device)

    device, (before, first, last) = asyncio.run(main())
    zero = {"open": True, "capture_overflows": 0, "capture_dropped": 0, "playback_underflows": 0, "playback_gaps": 0}
    assert before == zero
    assert isinstance(first["playback_gaps"], int) and isinstance(last["playback_gaps"], int)
    assert first["playback_gaps"] > 0 and last["playback_gaps"] > first["playback_gaps"]
    assert last["capture_dropped"] == 0
    warnings = [line for line in device.log.lines if line.startswith("edgevoice.daemon: audio:")]
    assert len(warnings) == 1, warnings
    # The warning counts the gaps up to its tick; a gap or two may land between it and the status request.
    logged = re.search(r"audio: (\d+) playback gaps? since", warnings[0])
    assert logged is not None and 0 < int(logged.group(1)) <= first["playback_gaps"], warnings[0]
    assert "the daemon fell behind" in warnings[0]


def test_a_late_buffer_of_silence_between_answers_is_no_underflow_and_one_of_an_answer_is(
    sound_card: VirtualSoundCard,
) -> None:
    sound_card.write_mic(silence(30))
    tone = (3000 * np.sin(2 * np.pi * 440 * np.arange(48000) / 24000)).astype(np.int16)  # 2 s

    async def scenario() -> tuple[int, int, int, int]:
        sound = open_sound(MIC, SPEAKER)  # paced in real time
        sound.start()
        pump = asyncio.create_task(sound.speaker.run())
        try:
            await asyncio.sleep(0.3)
            hold_the_interpreter(after_s=0.0, seconds=0.5).join()  # at rest: the card plays silence late
            await asyncio.sleep(0.3)
            at_rest = (sound.playback.underflows, sound.playback.silent_underflows)
            sound.speaker.push("item_a", tone)
            await until(lambda: sound.speaker.played_ms("item_a") > 300, "the answer to play")
            hold_the_interpreter(after_s=0.0, seconds=0.5).join()  # while it plays: the visitor hears a gap
            await asyncio.sleep(0.3)
            return *at_rest, sound.playback.underflows, sound.playback.silent_underflows
        finally:
            pump.cancel()
            sound.close()

    rest_heard, rest_silent, playing_heard, playing_silent = asyncio.run(scenario())
    assert rest_heard == 0 and rest_silent >= 1
    assert playing_heard >= 1 and playing_silent == rest_silent
