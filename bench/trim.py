"""What a push-to-talk turn is billed for: press, wait, speak, wait, let go; with and without trimming.

    .venv/bin/python bench/trim.py

The whole device (the daemon on the virtual sound card, paced in real time, the emulator as the server)
takes the same turn twice: first with `[conversation] trim_silence = false`, the anchor (what every turn was
billed before trimming), then with the default trimming (margins 300 ms before, 400 ms after the speech).
The microphone: room noise at -55 dBFS and a sentence (espeak-ng, about -26 dBFS while talking) `wait` after
the press; the release comes `wait` after it ends; for a wait of 0.5 s (the case reported from the field)
and 1.5 s. Printed per run: the audio the server was given and billed (the emulator counts it as the
Realtime API does: one input audio token per 100 ms), the speech the device found in it, their ratio.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _rig import room_noise  # bench/ is on sys.path: this file runs as a script
from gpiozero.pins.mock import MockFactory

from edgevoice.audio.resample import StreamResampler, to_int16
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard, read_wav

RATE = 48000
SENTENCE = "Could you tell me where the nearest train station is, please?"
PRESS_S = 0.6
WAITS_S = (0.5, 1.5)


def sentence(workdir: Path) -> np.ndarray:
    """SENTENCE spoken by espeak-ng at RATE, about -26 dBFS while talking."""
    wav = workdir / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), SENTENCE], check=True)
    samples, rate = read_wav(wav)
    resampler = StreamResampler(rate, RATE)
    x = np.concatenate((resampler.process(samples), resampler.flush())).astype(np.float64)
    x = x[np.flatnonzero(np.abs(x) > 30)[0] : np.flatnonzero(np.abs(x) > 30)[-1] + 1]  # espeak's own silence off
    active = np.abs(x) > 100
    return x * (10 ** (-26 / 20) * 32768 / np.sqrt(np.mean(x[active] ** 2)))


async def one_turn(card: VirtualSoundCard, mic: np.ndarray, release_s: float, trim: bool) -> dict[str, Any]:
    """The turn through the whole device; returns its `usage` event."""
    from edgevoice.audio.settings import AudioSettings
    from edgevoice.config import Config
    from edgevoice.control.settings import ControlSettings
    from edgevoice.conversation.settings import ConversationSettings
    from edgevoice.daemon import Daemon
    from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
    from edgevoice.hw.settings import HardwareSettings
    from edgevoice.realtime.credentials import LOCAL_PLACEHOLDER, StaticSecret
    from edgevoice.realtime.settings import RealtimeSettings, TurnDetectionSettings

    card.write_mic(mic)
    async with RealtimeEmulator(EmulatorSettings(realtime_factor=4.0, response_delay_s=0.1)) as emulator:
        config = Config(
            realtime=RealtimeSettings(url=emulator.url, turn_detection=TurnDetectionSettings(type="none")),
            audio=AudioSettings(input_device=MIC, output_device=SPEAKER, input_rate=RATE, output_rate=RATE),
            hardware=HardwareSettings(pin_factory="mock"),
            control=ControlSettings(enabled=False),
            conversation=ConversationSettings(trim_silence=trim),
        )
        factory = MockFactory()
        daemon = Daemon(config, pin_factory=factory, secrets=StaticSecret(LOCAL_PLACEHOLDER))  # never a real key
        usage: list[dict[str, Any]] = []
        daemon.subscribe(lambda e: usage.append(e) if e["event"] == "usage" else None)
        task = asyncio.create_task(daemon.run())
        button = factory.pin(config.button.pin)
        while daemon.capture_seconds < PRESS_S:
            await asyncio.sleep(0.005)
        button.drive_low()
        while daemon.capture_seconds < release_s:
            await asyncio.sleep(0.005)
        button.drive_high()
        for _ in range(1000):
            if usage:
                break
            await asyncio.sleep(0.01)
        daemon.stop()
        await task
    if not usage:
        raise SystemExit("no usage event: the turn did not complete")
    return usage[0]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="edgevoice-bench-"))
    card = VirtualSoundCard(workdir / "card")
    try:
        card.start()
        card.apply_to_process()
        said = sentence(workdir)
        print(f"push-to-talk turns: press, wait, {said.size / RATE:.2f} s sentence, wait, release; room noise -55 dBFS")
        print(f"   {'':<44}{'billed audio':>14}{'speech':>10}{'billed/speech':>15}")
        for wait in WAITS_S:
            speech_at = PRESS_S + wait
            release_s = speech_at + said.size / RATE + wait
            mic = room_noise(RATE, release_s + 30.0).astype(np.float64)
            mic[int(speech_at * RATE) : int(speech_at * RATE) + said.size] += said
            for trim, label in ((False, "trim_silence = false (anchor)"), (True, "trim_silence = true")):
                usage = asyncio.run(one_turn(card, to_int16(mic), release_s, trim))
                billed_s = usage["session"]["tokens"]["audio_in"] / 10  # 1 input audio token per 100 ms
                ratio = billed_s / usage["speech_s"] if usage["speech_s"] else float("nan")
                row = f"{wait:.1f} s waits, {label}"
                print(f"   {row:<44}{billed_s:>12.1f} s{usage['speech_s']:>8.2f} s{ratio:>15.2f}")
    finally:
        card.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
