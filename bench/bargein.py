"""Local barge-in latency on an emulated Pi-class CPU: from the visitor's first word reaching the microphone to the
speaker falling silent.

    .venv/bin/python bench/bargein.py [--quota 25] [--rounds 5] [--json]

`python -m edgevoice run` (server VAD, echo cancelled, 20 ms frames, the kiosk configuration of bench/_rig.py) runs
under a cgroup CPU quota (25 % of one core by default: an emulated Pi 4 core) on a virtual sound card, and, as the
anchor, at full speed on another; the scripted emulator (its own process) answers every response with a long
voice-like answer at real-time pace. Each round, once an answer has played 2 s, the visitor's voice is written into
the microphone's script just ahead of where the daemon reads it (/proc/PID/fdinfo), from sample S of the capture
stream on (anywhere in the microphone's 40 ms wake: in either of its two 20 ms buffers). The device's own voice
detector stops the answer; the speaker's recording shows its last sample E (on a buffer boundary). The card's two
streams run in lockstep (the speaker's written position equals the microphone's read position at any moment, less
the holes of playback underflows, which the recording does not show: that offset is read before each round), so (E -
S) / rate is the time from the first word reaching the microphone (the card hands it over at the end of its 20 ms
buffer, as a real card does) to the last sample of the answer reaching the card (the recording is written as ALSA
takes the audio, after PortAudio's own buffering). A real card's output buffer, and the room, come on top. The
microphone does not hear the speaker here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path[1:1] = [str(Path(__file__).resolve().parent.parent)]  # this tree's edgevoice, before any installed one
from _probe import Controller, ProbeError  # noqa: E402  (bench/ is sys.path[0]: this file runs as a script)
from _rig import RATE, ROOT, Emulator, Process, RigError, kiosk_config, room_noise, sound_card  # noqa: E402

from edgevoice.audio.sound_devices import WAKE_MS  # noqa: E402
from edgevoice.devkit.rig import read_position, speech_like, write_at  # noqa: E402

TARGET_MS = 150.0
PLAYED_BEFORE_S = 2.0  # the visitor talks over this much of each answer
LEAD_S = 0.3  # the voice is written this far ahead of the daemon's microphone reads
SILENT = 300  # |sample| under this is silence (the answers peak near 12000)
SILENCE_S = 0.1  # the answer has stopped where this much silence begins


def log(message: str) -> None:
    print(f"[bargein] {message}", file=sys.stderr, flush=True)


def visitor(seconds: float = 1.5) -> np.ndarray:
    """A visitor's voice at 48 kHz: voice-like, a little higher than the device's."""
    return (speech_like(int(RATE * 0.8), seconds)[: int(RATE * seconds)] * 0.8).astype(np.int16)


def silence_from(speaker: np.ndarray, start: int) -> int | None:
    """The first sample at or after `start` where SILENCE_S of silence begins (the answer's end), if any."""
    loud = np.flatnonzero(np.abs(speaker[start:].astype(np.int32)) >= SILENT) + start
    if loud.size == 0:
        return start
    gaps = np.flatnonzero(np.diff(loud) > SILENCE_S * RATE)
    if gaps.size:
        return int(loud[gaps[0]]) + 1
    return None if speaker.size - loud[-1] < SILENCE_S * RATE else int(loud[-1]) + 1


def lockstep(pid: int, card: Any) -> tuple[int, int]:
    """The microphone's read position and how far the speaker's recording is ahead of it (samples). The two move
    in lockstep, one buffer at a time; a playback underflow leaves a hole the recording does not show, after
    which the recording lags: the offset is read twice, equal, between two buffers."""
    while True:
        read = read_position(pid, card.mic_file) // 2
        skew = card.speaker_file.stat().st_size // 2 - read
        if card.speaker_file.stat().st_size // 2 - read_position(pid, card.mic_file) // 2 == skew:
            return read, skew
        time.sleep(0.003)


def speaker_samples(path: Path) -> np.ndarray:
    data = path.read_bytes()
    return np.frombuffer(data[: len(data) // 2 * 2], "<i2")


def measure(quota: float, rounds: int, work: Path, emulator_url: str) -> dict[str, Any]:
    """`rounds` barge-ins on one daemon; the latencies in ms and what its audio path lost meanwhile."""
    with contextlib.ExitStack() as stack:
        card = stack.enter_context(sound_card(work / "card", room_noise(RATE, 300)))
        config = kiosk_config(emulator_url, work / "ctl.sock", vad=True)
        daemon = stack.enter_context(Process.edgevoice(ROOT, work / "daemon", card, config, quota=quota))
        daemon.wait_ready(60.0)
        ctl = stack.enter_context(Controller(work / "ctl.sock"))
        ctl.request("subscribe", events=["state"])
        ctl.request("say", text="Tell me a long story.")
        latencies: list[float] = []
        invalid = missed = 0
        # Where the word begins within the microphone's wake (two 20 ms buffers): anywhere, as for a real visitor.
        phases = np.random.default_rng(1).integers(0, RATE * WAKE_MS // 1000, rounds)
        stack.callback(lambda: sys.exc_info()[0] is None or log(f"the daemon's log:\n{daemon.stderr_tail(4000)}"))
        for n in range(rounds):
            ctl.wait_state("speaking", timeout_s=30)
            time.sleep(PLAYED_BEFORE_S)
            daemon.check()
            start, skew = lockstep(daemon.pid, card)
            start += int(LEAD_S * RATE) + int(phases[n])
            write_at(card.mic_file, start, visitor())
            try:
                ctl.wait_state("listening", timeout_s=10)  # stopped (then the server's VAD hears the rest of it)
            except ProbeError:
                missed += 1
                log(f"{describe(quota)}: round {n + 1}: the answer did not stop within 10 s")
                continue
            deadline = time.monotonic() + 5
            while (end := silence_from(speaker_samples(card.speaker_file), start + skew)) is None:
                if time.monotonic() > deadline:
                    raise RigError(f"round {n + 1}: the speaker never fell silent after the visitor spoke")
                time.sleep(0.1)
            before = speaker_samples(card.speaker_file)[max(0, start + skew - int(SILENCE_S * RATE)) : start + skew]
            if np.abs(before.astype(np.int32)).max(initial=0) < SILENT:  # a gap in the answer: nothing to stop
                invalid += 1
                log(f"{describe(quota)}: round {n + 1}: the answer was not playing when the visitor spoke (a gap)")
                continue
            latencies.append((end - start - skew) / RATE * 1000)
            log(f"{describe(quota)}: round {n + 1}: {latencies[-1]:.0f} ms")
        audio = ctl.request("status")["audio"]
    return {"latencies_ms": latencies, "invalid_rounds": invalid, "missed_rounds": missed, "audio": audio}


def describe(quota: float) -> str:
    return f"{quota:g} % of one core" if quota else "full speed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=float, default=25.0, help="%% of one core for the daemon (default 25)")
    parser.add_argument("--rounds", type=int, default=5, help="barge-ins per daemon (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="evbargein-"))
    results: dict[str, Any] = {"target_ms": TARGET_MS, "rounds": args.rounds}
    try:
        with Emulator(reply_s=30.0) as emulator:
            for label, quota in (("quota", args.quota), ("full speed", 0.0)):
                results[label] = measure(quota, args.rounds, work / label.replace(" ", "-"), emulator.url)
    except (RigError, ProbeError) as exc:
        print(f"bargein: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bargein: interrupted; everything started has been stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"Local barge-in: the visitor's first word at the microphone -> the speaker silent, {args.rounds} rounds")
    print(f"   {'':<44}{'median':>10}{'min':>8}{'max':>8}   target")
    for label, quota in (("quota", args.quota), ("full speed", 0.0)):
        ms, title = results[label]["latencies_ms"], describe(quota) + (" (emulated Pi-class CPU)" if quota else "")
        if not ms:
            print(f"   {title:<44}no round counts (see below)")
            continue
        verdict = f"<= {TARGET_MS:g} ms: {'ok' if statistics.median(ms) <= TARGET_MS else 'MISSED'}"
        title += "" if quota else " (the anchor)"
        print(f"   {title:<44}{statistics.median(ms):>7.0f} ms{min(ms):>5.0f} ms{max(ms):>5.0f} ms   {verdict}")
    print("   (to the last sample of the answer reaching the card; a real card's output buffer comes on top)")
    for label, quota in (("quota", args.quota), ("full speed", 0.0)):
        invalid, missed = results[label]["invalid_rounds"], results[label]["missed_rounds"]
        notes = f"; {invalid} round(s) not counted: the answer had a gap when the visitor spoke" if invalid else ""
        notes += f"; {missed} round(s) MISSED: the answer did not stop within 10 s" if missed else ""
        print(f"   audio path at {describe(quota)}: {results[label]['audio']}{notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
