"""`edgevoice demo`: the whole device on any Linux machine, with no hardware and no API key.

A simulated button press (gpiozero's mock pins) starts a turn; a spoken phrase (espeak-ng) plays into the
real ALSA/PortAudio capture path through a virtual sound card; it is resampled to 24 kHz and streamed to
the built-in Realtime emulator over a real WebSocket; the emulator's spoken answer streams back and plays
through the real PortAudio playback path into a WAV file. The terminal shows the timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.audio.settings import AudioSettings
from edgevoice.config import Config
from edgevoice.control.settings import ControlSettings
from edgevoice.conversation.settings import ConversationSettings
from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard, read_wav, write_wav
from edgevoice.hw.settings import HardwareSettings
from edgevoice.realtime.settings import RealtimeSettings, TurnDetectionSettings

DEFAULT_PHRASE = "Hello! What can you tell me about this place?"
LEAD_IN_S = 0.8  # silence before the visitor speaks
TAIL_S = 60.0  # silence after (the file plugin repeats stale audio past the end of its file)


def speech(phrase: str, rate: int, workdir: Path) -> np.ndarray:
    """The phrase spoken by espeak-ng at `rate` (int16), or a speech-like stand-in without espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("  (espeak-ng not found: using a synthetic voice-like signal)", file=sys.stderr)
        t = np.arange(int(rate * 2.0)) / rate
        voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
        syllables = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, 1)
        return to_int16(8000 * voice * syllables)
    wav_path = workdir / "phrase.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "155", "-w", str(wav_path), phrase], check=True)
    samples, source_rate = read_wav(wav_path)
    resampler = StreamResampler(source_rate, rate)
    return to_int16(np.concatenate((resampler.process(samples), resampler.flush())))


class Timeline:
    """Prints the device's events as they happen, with the time since the demo started."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.t0 = time.monotonic()
        self.out = out
        self.states: list[str] = []
        self.latency_ms: int | None = None
        self.answer_transcript = ""

    def line(self, what: str, text: str) -> None:
        print(f"  {time.monotonic() - self.t0:7.3f} s  {what:<11} {text}", file=self.out, flush=True)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "state":
            self.states.append(event["state"])
            self.line("state", event["state"] + (f"  ({event['reason']})" if event.get("reason") else ""))
        elif kind == "led":
            self.line("led", event["pattern"])
        elif kind == "transcript" and event.get("final"):
            self.line("transcript", f"{event['role']}: {event['text']}")
            if event["role"] == "assistant":
                self.answer_transcript = event["text"]
        elif kind == "latency":
            self.latency_ms = event["ms"]
            self.line("latency", f"{event['ms']} ms from end of speech to first answer audio")
        elif kind in ("session", "notice", "error", "interrupted", "conversation_ended"):
            detail = {k: v for k, v in event.items() if k != "event"}
            self.line(kind, " ".join(f"{k}={v}" for k, v in detail.items()))


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _run(card: VirtualSoundCard, phrase: str, speech_s: float, vad: bool, timeline: Timeline) -> None:
    from gpiozero.pins.mock import MockFactory

    from edgevoice.daemon import Daemon  # imported late: PortAudio must not start before the card is set up
    from edgevoice.realtime.credentials import LOCAL_PLACEHOLDER, StaticSecret

    async with RealtimeEmulator(EmulatorSettings(user_transcript=phrase)) as emulator:
        config = Config(
            realtime=RealtimeSettings(
                url=emulator.url,
                turn_detection=TurnDetectionSettings(type="server_vad" if vad else "none"),
            ),
            audio=AudioSettings(input_device=MIC, output_device=SPEAKER, input_rate=card.rate, output_rate=card.rate),
            hardware=HardwareSettings(pin_factory="mock"),
            conversation=ConversationSettings(follow_up_s=1.0),
            control=ControlSettings(socket=str(card.workdir / "control.sock"), group=""),
        )
        factory = MockFactory()
        daemon = Daemon(config, pin_factory=factory, secrets=StaticSecret(LOCAL_PLACEHOLDER))  # never a real key
        daemon.subscribe(timeline.on_event)
        ready = asyncio.Event()
        task = asyncio.create_task(daemon.run(on_ready=ready.set))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            button = factory.pin(config.button.pin)
            await _until(lambda: daemon.capture_seconds >= LEAD_IN_S - 0.4, 10, "the microphone")
            timeline.line("button", "pressed")
            button.drive_low()
            if vad:
                await asyncio.sleep(0.15)
                timeline.line("button", "released (server VAD decides when the turn ends)")
                button.drive_high()
            else:
                end = LEAD_IN_S + speech_s + 0.3
                await _until(lambda: daemon.capture_seconds >= end, speech_s + 10, "the end of the phrase")
                timeline.line("button", "released")
                button.drive_high()
            await _until(lambda: "speaking" in timeline.states, 30, "the answer")
            await _until(lambda: timeline.states[-1] == "idle", 60, "the end of the answer")
            await asyncio.sleep(0.3)  # the last frames reach the speaker file
        finally:
            daemon.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def run_demo(out: Path, *, vad: bool = False, phrase: str = DEFAULT_PHRASE) -> int:
    """Run the demo; the recorded speaker goes to `out`. Returns the process exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="edgevoice-demo-"))
    card = VirtualSoundCard(workdir)
    timeline = Timeline()
    try:
        card.start()
        card.apply_to_process()
        voice = speech(phrase, card.rate, workdir)
        lead, tail = (
            np.zeros(int(LEAD_IN_S * card.rate), np.int16),
            np.zeros(int(TAIL_S * card.rate), np.int16),
        )
        card.write_mic(np.concatenate((lead, voice, tail)))
        speech_s = len(voice) / card.rate
        mode = "server VAD" if vad else "push-to-talk"
        print(f"edgevoice demo ({mode}): the visitor says {phrase!r} ({speech_s:.1f} s)\n")
        asyncio.run(_run(card, phrase, speech_s, vad, timeline))
        recorded = card.read_speaker()
        out.parent.mkdir(parents=True, exist_ok=True)
        write_wav(out, recorded, card.rate)
    except Exception as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        card.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    loud = np.abs(recorded.astype(np.int32)) > 300
    answer_s = float(np.count_nonzero(loud)) / card.rate
    print("\nsummary")
    print(f"  states      {' -> '.join(timeline.states)}")
    if timeline.latency_ms is not None:
        print(f"  latency     {timeline.latency_ms} ms from end of speech to first answer audio")
    print(f"  answer      {answer_s:.2f} s of audio played: {timeline.answer_transcript!r}")
    print(f"  speaker     recorded to {out.resolve()} ({len(recorded) / card.rate:.1f} s at {card.rate} Hz)")
    return 0
