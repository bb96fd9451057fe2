"""Whole conversations on an emulated Pi Zero 2 W core (and a Pi 4's), through the real audio path.

`python -m edgevoice run` runs in a cgroup v1 CPU group allowing 10 % of one core (period 10 ms; 25 % for a Pi 4;
TESTING.md section 8) on the tests' virtual sound card (paced in real time), driven through its control socket as
a robot would drive it. Only the daemon is throttled: the emulator runs in this process and the card's sound server
in its own, both at full speed. The microphone is scripted live: speech is written into its file just ahead of
where the daemon reads it (/proc/PID/fdinfo says where), so that a question or an interruption falls where the
scenario wants it, however long the start-up took. The speaker's recording shows what was heard.
Nothing is timed but SIGTERM's 3 s, the service's contract; how fast things are is bench/footprint.py's business.

At 10 % the scenarios mostly fail, and are marked so (not strictly: now and then one passes). While an answer
plays the daemon cleans the microphone too (the echo canceller follows the room), and that costs about 11-12 % of
one core here (bench/footprint.py, duplex), of which about 3 % is the virtual card's own plumbing: more than the
quota, so the speaker underflows now and then and an answer loses 50-100 ms (the conversations themselves go as
they should).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conformance import validate_client_event
from conftest import speak
from device import state_reached, tone_segments

from edgevoice.control.client import ControlClient
from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator, SpokenReply
from edgevoice.devkit.rig import (
    Process,
    cpu_quota_problem,
    kiosk_config,
    read_position,
    room_noise,
    speech_like,
    write_at,
)
from edgevoice.devkit.sound_card import VirtualSoundCard

pytestmark = pytest.mark.skipif(cpu_quota_problem() is not None, reason=f"no CPU quota: {cpu_quota_problem()}")

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000
TOO_SLOW = (
    "an answer with the microphone cleaned meanwhile needs 11-12 % of one core here, more than the 10 % quota: "
    "the speaker underflows now and then and an answer loses 50-100 ms (see the module docstring)"
)
QUOTAS = [
    pytest.param(10, id="pi-zero-2w-10pct", marks=pytest.mark.xfail(strict=False, reason=TOO_SLOW)),
    pytest.param(25, id="pi-4-25pct"),
]
STOP_CONTRACT_S = 3.0  # SIGTERM to exit (the unit allows 5 s; the daemon promises less)
WAIT_S = 30.0  # for anything the daemon does: generous, a hang detector rather than a figure
LEAD_S = 0.3  # speech is written this far ahead of the daemon's microphone reads


def spoken(text: str, seconds: float) -> SpokenReply:
    """An answer of `seconds` of voice-like sound (one stretch, no pause: the speaker's recording shows where it
    stops). Not the emulator's tones: with a pure tone playing, a visitor talking over it and no echo in the
    microphone, the canceller learns a false echo path and puts the tone into the cleaned microphone, where the
    local voice detector takes it for a visitor (a false barge-in, seen at full speed too)."""
    return SpokenReply(text, pcm=speech_like(24000, seconds).astype("<i2").tobytes())


ANSWER = spoken("Here is the answer.", 2.0)
LONG_ANSWER = spoken("A long answer that goes on and on.", 6.0)


class SlowKiosk:
    """`edgevoice run` under a CPU quota on the card, with the emulator here and a controller connected."""

    def __init__(self, card: VirtualSoundCard, workdir: Path, quota: int, *, vad: bool) -> None:
        self.card, self.workdir, self.quota, self.vad = card, workdir, quota, vad
        self.emulator = RealtimeEmulator(EmulatorSettings(realtime_factor=2.0, response_delay_s=0.2))
        self.events: list[dict[str, Any]] = []
        self.daemon: Process | None = None
        self.client: ControlClient | None = None
        self._collector: asyncio.Task[None] | None = None
        self.log = ""  # the daemon's, once it has stopped

    async def __aenter__(self) -> SlowKiosk:
        self.card.write_mic(room_noise(RATE, 180))  # a quiet room between the scripted words
        await self.emulator.start()
        socket_path = Path(self.workdir / "ctl.sock")
        more = "[conversation]\nfollow_up_s = 2.0\n"
        config = kiosk_config(self.emulator.url, socket_path, vad=self.vad, more=more)
        self.daemon = Process.edgevoice(ROOT, self.workdir / "daemon", self.card, config, quota=self.quota)
        await asyncio.to_thread(self.daemon.wait_ready, 60.0)
        self.client = ControlClient(str(socket_path))
        await self.client.connect()
        subscribed = asyncio.Event()

        async def collect() -> None:
            assert self.client is not None
            async for event in self.client.events():
                self.events.append(event)
                subscribed.set()

        self._collector = asyncio.create_task(collect())
        await asyncio.wait_for(subscribed.wait(), WAIT_S)  # the first event is the state snapshot
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._collector is not None:
            self._collector.cancel()
        with contextlib.suppress(Exception):
            if self.client is not None:
                await self.client.close()
        if self.daemon is not None:
            self.daemon.stop()
            self.log = self.daemon.stderr_tail(100_000)
        await self.emulator.stop()
        if exc_type is not None:
            print(f"--- the daemon's log ---\n{self.log[-6000:]}")
            return
        for event in self.emulator.received:  # a slow CPU changes no event on the wire: all valid GA events
            validate_client_event(event)

    # ---- driving ----------------------------------------------------------------------------------------

    async def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.client is not None
        return await self.client.request(cmd, **args)

    async def until(self, condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.daemon is not None
            self.daemon.check()
            assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s; states: {self.states}"
            await asyncio.sleep(0.02)

    async def wait_state(self, state: str, *, after: str | None = None) -> None:
        what = f"state {state!r}" + (f" after {after!r}" if after else "")
        await self.until(lambda: state_reached(self.states, state, after), what)

    def mic_position(self) -> int:
        """Samples of the microphone script the daemon has read so far."""
        assert self.daemon is not None
        return read_position(self.daemon.pid, self.card.mic_file) // 2

    async def say(self, speech: np.ndarray) -> int:
        """Put `speech` into the microphone just ahead of the daemon; returns when it has all been read."""
        start = self.mic_position() + int(LEAD_S * RATE)
        write_at(self.card.mic_file, start, speech)
        end = start + len(speech)
        await self.until(lambda: self.mic_position() > end, "microphone reading past the speech")
        return end

    def speaker(self) -> np.ndarray:
        """What the speaker has played so far (int16 at 48 kHz)."""
        data = self.card.speaker_file.read_bytes()
        return np.frombuffer(data[: len(data) // 2 * 2], "<i2")

    def heard_s(self) -> float:
        """Seconds of sound (the answers) in the speaker's recording so far."""
        return sum(end - start for start, end in tone_segments(self.speaker(), RATE))

    async def terminate(self) -> float:
        """SIGTERM; seconds until the daemon has exited (it must exit 0)."""
        assert self.daemon is not None
        sent = time.monotonic()
        self.daemon.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.daemon.process.wait, 20)
        took = time.monotonic() - sent
        assert code == 0, self.daemon.stderr_tail()
        return took

    # ---- what happened ------------------------------------------------------------------------------------

    @property
    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e.get("event") == "state"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """Client events of `kind` the emulator received."""
        return [e for e in self.emulator.received if e.get("type") == kind]

    def uplink(self) -> np.ndarray:
        """Everything the daemon streamed to the server (int16 at 24 kHz)."""
        chunks = [base64.b64decode(e["audio"]) for e in self.sent("input_audio_buffer.append")]
        return np.frombuffer(b"".join(chunks), "<i2")

    def received_ms(self, item_id: str) -> float:
        """Milliseconds of the item's audio the emulator sent."""
        deltas = [
            e for e in self.emulator.sent if e["type"] == "response.output_audio.delta" and e["item_id"] == item_id
        ]
        return sum(len(base64.b64decode(e["delta"])) // 2 for e in deltas) / 24

    async def audio_status(self) -> dict[str, Any]:
        """The `audio` object of `status`: what the audio path lost so far."""
        return dict((await self.request("status"))["audio"])


def cut_and_next(kiosk: SlowKiosk, audio: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The speaker's two stretches of sound: the answer cut short and the next one (more: the speaker had a gap)."""
    segments = tone_segments(kiosk.speaker(), RATE)
    assert len(segments) == 2, (segments, audio)
    return segments[0], segments[1]


def assert_nothing_lost(kiosk: SlowKiosk, audio: dict[str, Any]) -> None:
    """No capture overflow, no playback underflow (nor any other loss of the audio path): checked last in every
    scenario, so that a failure here means the behaviour was right and only the sound suffered. The daemon's
    warnings say in which state the losses began."""
    warnings = [line for line in kiosk.log.splitlines() if "WARNING edgevoice.daemon: audio:" in line]
    assert audio["open"] and audio["capture_overflows"] == 0 and audio["playback_underflows"] == 0, (audio, warnings)
    assert audio["capture_dropped"] == 0 and audio["playback_gaps"] == 0, (audio, warnings)


def speech_stretch_s(samples: np.ndarray, rate: int) -> float:
    """Seconds from the first to the last 20 ms block louder than -40 dBFS (what a voice makes; the room is -55)."""
    block = rate // 50
    blocks = samples[: len(samples) // block * block].reshape(-1, block).astype(np.float64)
    loud = np.flatnonzero(np.sqrt(np.mean(blocks**2, axis=1)) > 32768 * 10 ** (-40 / 20))
    return float((loud[-1] - loud[0] + 1) / 50) if loud.size else 0.0


@pytest.mark.parametrize("quota", QUOTAS)
def test_a_push_to_talk_turn_through_the_control_socket(
    sound_card: VirtualSoundCard, tmp_path: Path, quota: int
) -> None:
    question = speak("What time is it in Lisbon?")

    async def scenario() -> tuple[SlowKiosk, dict[str, Any], float]:
        async with SlowKiosk(sound_card, tmp_path, quota, vad=False) as kiosk:
            kiosk.emulator.queue_reply(ANSWER)
            await kiosk.request("listen")
            await kiosk.wait_state("listening")
            await kiosk.say(question)
            await kiosk.request("stop")
            await kiosk.wait_state("idle", after="speaking")
            audio = await kiosk.audio_status()
            return kiosk, audio, await kiosk.terminate()

    kiosk, audio, stop_s = asyncio.run(scenario())
    assert kiosk.states == ["idle", "connecting", "listening", "thinking", "speaking", "idle"]
    answer = tone_segments(kiosk.speaker(), RATE)
    assert len(answer) == 1 and answer[0][1] - answer[0][0] > 1.95, answer  # all of it, without a gap
    sent_s = speech_stretch_s(kiosk.uplink(), 24000)
    assert abs(sent_s - speech_stretch_s(question, RATE)) < 0.15, sent_s  # the question went up, whole
    assert [e["type"] for e in kiosk.emulator.received][-2:] == ["input_audio_buffer.commit", "response.create"]
    assert stop_s < STOP_CONTRACT_S
    assert_nothing_lost(kiosk, audio)


@pytest.mark.parametrize("quota", QUOTAS)
def test_a_visitor_talks_over_the_answer_with_server_vad(
    sound_card: VirtualSoundCard, tmp_path: Path, quota: int
) -> None:
    question = speak("Can you tell me about the museum?")
    interruption = speak("Wait, where is the exit?")

    async def scenario() -> tuple[SlowKiosk, dict[str, Any], float]:
        async with SlowKiosk(sound_card, tmp_path, quota, vad=True) as kiosk:
            kiosk.emulator.queue_reply(LONG_ANSWER)
            kiosk.emulator.queue_reply(ANSWER)
            await kiosk.request("listen")  # as a press: the conversation starts, the server finds the turns
            await kiosk.wait_state("listening")
            await kiosk.say(question)
            await kiosk.wait_state("speaking")
            await kiosk.until(lambda: kiosk.heard_s() > 1.0, "a second of the answer")
            await kiosk.say(interruption)  # mid-answer: 1 s into the 6 s of it
            await kiosk.wait_state("speaking", after="listening")  # the answer to the interruption
            await kiosk.wait_state("listening", after="speaking")  # played to its end: a follow-up may come
            audio = await kiosk.audio_status()
            return kiosk, audio, await kiosk.terminate()

    kiosk, audio, stop_s = asyncio.run(scenario())
    (truncate,) = kiosk.sent("conversation.item.truncate")
    first_item = truncate["item_id"]
    assert 500 < truncate["audio_end_ms"] < kiosk.received_ms(first_item) - 500, truncate
    assert [e["item_id"] for e in kiosk.of("interrupted")] == [first_item]
    assert kiosk.states.count("speaking") == 2
    cut, second = cut_and_next(kiosk, audio)
    assert cut[1] - cut[0] < 6.0 - 1.0 and second[1] - second[0] > 1.95  # the first cut short, the second whole
    assert stop_s < STOP_CONTRACT_S
    assert_nothing_lost(kiosk, audio)


@pytest.mark.parametrize("quota", QUOTAS)
def test_listen_while_the_assistant_speaks_interrupts_it_and_starts_a_turn(
    sound_card: VirtualSoundCard, tmp_path: Path, quota: int
) -> None:
    question = speak("And what about tomorrow?")

    async def scenario() -> tuple[SlowKiosk, float, dict[str, Any], float]:
        async with SlowKiosk(sound_card, tmp_path, quota, vad=False) as kiosk:
            kiosk.emulator.queue_reply(LONG_ANSWER)
            kiosk.emulator.queue_reply(ANSWER)
            await kiosk.request("say", text="Tell me about the weather.")
            await kiosk.wait_state("speaking")
            await kiosk.until(lambda: kiosk.heard_s() > 1.0, "a second of the answer")
            await kiosk.request("listen")  # what a press does
            await kiosk.wait_state("listening", after="speaking")
            interrupted_at_s = kiosk.heard_s()
            await kiosk.say(question)
            await kiosk.request("stop")
            await kiosk.wait_state("idle", after="speaking")
            audio = await kiosk.audio_status()
            return kiosk, interrupted_at_s, audio, await kiosk.terminate()

    kiosk, interrupted_at_s, audio, stop_s = asyncio.run(scenario())
    (truncate,) = kiosk.sent("conversation.item.truncate")
    assert 500 < truncate["audio_end_ms"] < kiosk.received_ms(truncate["item_id"]) - 500, truncate
    assert interrupted_at_s < 6.0 - 1.0  # the answer stopped when the turn began
    cut, second = cut_and_next(kiosk, audio)
    assert cut[1] - cut[0] < 6.0 - 1.0 and second[1] - second[0] > 1.95
    assert kiosk.states[-5:] == ["speaking", "listening", "thinking", "speaking", "idle"]
    assert [e["type"] for e in kiosk.emulator.received][-2:] == ["input_audio_buffer.commit", "response.create"]
    assert stop_s < STOP_CONTRACT_S
    assert_nothing_lost(kiosk, audio)
