"""Does edgevoice's memory stay flat over many turns? Every per-item, per-turn and per-response table must be
pruned, or a kiosk that runs for months grows until it is killed.

    .venv/bin/python bench/soak.py [--turns 200] [--warmup 20]

The real daemon (`python -m edgevoice run`) on a private virtual sound card, the emulator in its own process;
each turn is a controller's `say` (a user message, an answer spoken to the end), and every so often the
conversation ends (`end`), as visitors come and go. VmRSS is read from /proc after the warm-up turns and then
every 25 turns; the anchor is the RSS after the warm-up (the first turns load what a conversation needs). Also
printed: the Python objects the daemon's own tables hold cannot be read from outside, so the growth is the figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _rig
from _probe import Controller, memory
from _rig import ROOT, Emulator, Process, kiosk_config, sound_card

GROWTH_TARGET_MB = 2.0  # "flat": less than this over the run, after the warm-up
TURNS_PER_CONVERSATION = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgevoice-soak-") as tmp:
        work = Path(tmp)
        noise = _rig.room_noise(_rig.RATE, 60)
        with Emulator() as emulator, sound_card(work / "card", noise) as card:
            config = kiosk_config(emulator.url, work / "ctl.sock")
            with Process.edgevoice(ROOT, work, card, config) as daemon:
                daemon.wait_ready(30)
                ctl = Controller(work / "ctl.sock")
                ctl.request("subscribe", events=["state"])
                samples: list[tuple[int, float]] = []
                started = time.monotonic()
                for turn in range(1, args.warmup + args.turns + 1):
                    ctl.request("say", text=f"Turn {turn}: tell me something short.")
                    ctl.wait_state("speaking", timeout_s=30)
                    ctl.wait_state("idle", timeout_s=30)
                    if turn % TURNS_PER_CONVERSATION == 0:
                        ctl.request("end")
                    done = turn - args.warmup
                    if done == 0 or (done > 0 and done % 25 == 0):
                        samples.append((done, memory(daemon.pid)["VmRSS"]))
                        print(f"[soak] {done} turns after the warm-up: VmRSS {samples[-1][1]:.1f} MB", file=sys.stderr)
                took = time.monotonic() - started
                ctl.close()
    base = samples[0][1]
    growth = samples[-1][1] - base
    print(f"\nedgevoice memory over {args.turns} turns ({args.turns // TURNS_PER_CONVERSATION} conversations), "
          f"after {args.warmup} warm-up turns; {took:.0f} s")  # fmt: skip
    print(f"   {'turns':>6}  {'VmRSS':>9}  {'since the warm-up':>18}")
    for done, rss in samples:
        print(f"   {done:>6}  {rss:>6.1f} MB  {rss - base:>+15.1f} MB")
    verdict = "ok" if growth < GROWTH_TARGET_MB else "MISSED"
    print(f"   growth {growth:+.1f} MB, target: flat (< {GROWTH_TARGET_MB:g} MB): {verdict}")
    return 0 if growth < GROWTH_TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
