"""What edgevoice costs on a Pi-class budget: the real daemon as a user runs it, each figure beside its anchor.

    .venv/bin/python bench/footprint.py [--window 20] [--settle 5] [--runs 3] [--quota 10] [--json]
                                        [--baseline-rev 21e1047 | --baseline-rev none] [--only idle,startup,duplex]
                                        [--echo aec|gate|off] [--frame-ms 20]  (the duplex phase's configuration)

`python -m edgevoice run --config FILE` runs in a subprocess on a virtual sound card (PulseAudio-paced ALSA
`file` PCMs), with the Realtime emulator in a process of its own (its CPU is not counted), mock GPIO, a
private control socket and a kiosk configuration (both streams at 48 kHz, echo = "aec", 20 ms buffers).
The same daemon from an older revision ("today", exported with git archive) runs beside it, and so do the
anchors in bench/_floor.py. Figures, measured from outside through /proc:
1. idle CPU with both streams open (push-to-talk, nobody talking) of the event-loop thread and of the process,
   beside the floor: a bare PyAudio program holding the same two streams with empty callbacks;
2. RSS (VmRSS, VmHWM) idle, beside the floor, against a 70 MB target;
3. spawn to READY=1 on the bench's NOTIFY_SOCKET (median of --runs), beside a bare interpreter importing
   numpy, at no quota and under 25 % and 10 % of one core (cgroup v1 CPU quotas: an emulated Pi-class CPU);
4. full duplex: CPU per second of audio while the assistant speaks a long answer and the microphone streams
   (server VAD; a quiet room's noise in the microphone), beside "today";
5. the daemon's threads, by name: which still carry the interpreter's generic name.
The idle processes run side by side (each on its own card), so that the machine's load weighs on all alike.
Each tree is byte-compiled first, as pip does when it installs edgevoice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[1:1] = [str(Path(__file__).resolve().parent.parent)]  # this tree's edgevoice, before any installed one
import _probe  # noqa: E402  (bench/ is sys.path[0]: this file runs as a script)
import _rig  # noqa: E402
from _probe import TICKS, Controller, ProbeError, memory, sample, thread_table  # noqa: E402
from _rig import ROOT, Emulator, Process, RigError, kiosk_config, sound_card  # noqa: E402

TARGET_LOOP_PERCENT = 0.5
TARGET_OVER_FLOOR_PERCENT = 0.5
TARGET_RSS_MB = 70.0
TARGET_START_S = {0.0: 0.6, 10.0: 5.0}
QUOTA_NAMES = {25.0: "a Pi 4 core", 10.0: "a Pi Zero 2 W core"}
MIC_SECONDS = 180  # longer than any one process listens: past its end the file plugin repeats stale data


def log(message: str) -> None:
    print(f"[footprint] {message}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def export_revision(rev: str, into: Path) -> tuple[Path, str]:
    """The tree of `rev` (git archive) in `into`, and its short hash."""
    try:
        short = git("rev-parse", "--short", "--verify", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise RigError(f"--baseline-rev {rev}: no such revision in {ROOT} (or use --baseline-rev none)") from None
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", short], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RigError(f"git archive {short} failed")
    return into, short


def compile_tree(code: Path) -> None:
    """Byte-compile the tree's edgevoice, as pip does when it installs it (scripts/provision): a machine that
    sets PYTHONDONTWRITEBYTECODE (this one, CI) would otherwise compile every module anew at each start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(code / "edgevoice")], check=True)


def check_tree(code: Path) -> None:
    """The daemon run with PYTHONPATH=code really imports edgevoice from code (not an installed copy)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    found = subprocess.run(
        [sys.executable, "-c", "import edgevoice; print(edgevoice.__file__)"],
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(found).resolve().is_relative_to(code.resolve()):
        raise RigError(f"PYTHONPATH={code} imports edgevoice from {found}: remove the other copy from the path")


def ready_timeout(args: argparse.Namespace, quota: float) -> float:
    return float(args.ready_timeout / (quota / 100 if quota else 1))


def slug(label: str) -> str:
    """A directory name for a subject: "today (21e1047)" -> "today"."""
    return label.split()[0]


def probe(proc: Process) -> _probe.CpuSample:
    """The process's CPU so far; RigError with its stderr if it has died."""
    proc.check()
    return sample(proc.pid)


# ---- the phases ---------------------------------------------------------------------------------------------


def measure_idle(args: argparse.Namespace, trees: dict[str, Path], work: Path, url: str) -> dict[str, Any]:
    """Floor, now and today side by side, each on its own card, idle; CPU over the window and RSS at its end."""
    noise = _rig.room_noise(_rig.RATE, MIC_SECONDS)
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        procs: dict[str, Process] = {}
        for label in ("floor", *trees):
            where = work / f"idle-{slug(label)}"
            card = stack.enter_context(sound_card(where / "card", noise))
            if label == "floor":
                procs[label] = Process.floor(where, card, quota=args.quota)
            else:
                config = kiosk_config(url, where / "ctl.sock")
                procs[label] = Process.edgevoice(trees[label], where, card, config, quota=args.quota)
            stack.enter_context(procs[label])
        for proc in procs.values():
            proc.wait_ready(ready_timeout(args, args.quota))
        log(f"idle: all up; settling {args.settle:g} s, then measuring {args.window:g} s")
        time.sleep(args.settle)
        before = {label: probe(p) for label, p in procs.items()}
        time.sleep(args.window)
        after = {label: probe(p) for label, p in procs.items()}
        for label, proc in procs.items():
            result[label] = {
                "loop_percent": after[label].thread_percent(before[label], proc.pid),  # TID == PID
                "loop_wakeups_per_s": after[label].thread_wakeups(before[label], proc.pid),
                "process_percent": after[label].process_percent(before[label]),
                "memory_mb": memory(proc.pid),
                "threads": thread_table(before[label], after[label]),
            }
    return result


def measure_startup(args: argparse.Namespace, trees: dict[str, Path], work: Path, url: str) -> dict[str, Any]:
    """Spawn to READY=1, `--runs` times per subject and quota (subjects interleaved), after one warm-up each."""
    result: dict[str, Any] = {}
    with sound_card(work / "startup" / "card", _rig.room_noise(_rig.RATE, MIC_SECONDS)) as card:

        def spawn(label: str, quota: float) -> Process:
            where = work / "startup" / slug(label)
            if label == "import numpy":
                return Process.numpy_import(where, quota=quota)
            if label == "floor":
                return Process.floor(where, card, quota=quota)
            return Process.edgevoice(trees[label], where, card, kiosk_config(url, where / "ctl.sock"), quota=quota)

        subjects = [*trees, "import numpy", "floor"]
        for label in subjects:  # warm-up: page cache and .pyc files
            with spawn(label, 0) as proc:
                proc.wait_ready(args.ready_timeout)
        for quota in args.startup_quotas:
            log(f"start-up: {args.runs} runs each at {describe_quota(quota)}")
            times: dict[str, list[float]] = {label: [] for label in subjects}
            for _ in range(args.runs):
                for label in subjects:
                    with spawn(label, quota) as proc:
                        times[label].append(proc.wait_ready(ready_timeout(args, quota)))
            result[str(quota)] = {
                label: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": t}
                for label, t in times.items()
            }
    return result


def measure_duplex(args: argparse.Namespace, trees: dict[str, Path], work: Path) -> dict[str, Any]:
    """A VAD conversation, the assistant speaking a long answer while the microphone streams; one tree at a time."""
    result: dict[str, Any] = {}
    noise = _rig.room_noise(_rig.RATE, MIC_SECONDS)
    with Emulator(reply_s=args.settle + args.window + 15) as emulator:
        for label, code in trees.items():
            where = work / f"duplex-{slug(label)}"
            with contextlib.ExitStack() as stack:
                card = stack.enter_context(sound_card(where / "card", noise))
                socket_path = where / "ctl.sock"
                config = kiosk_config(emulator.url, socket_path, vad=True, echo=args.echo, frame_ms=args.frame_ms)
                daemon = stack.enter_context(Process.edgevoice(code, where, card, config, quota=args.quota))
                daemon.wait_ready(ready_timeout(args, args.quota))
                ctl = stack.enter_context(Controller(socket_path))
                ctl.request("subscribe", events=["state"])
                ctl.request("say", text="Tell me a long story.")
                speaking = ctl.wait_state("speaking", timeout_s=30)
                log(f"duplex ({label}): speaking; settling {args.settle:g} s, then measuring {args.window:g} s")
                time.sleep(args.settle)
                before, mic_before, spk_before = (
                    probe(daemon),
                    emulator.appends(),
                    card.speaker_file.stat().st_size,
                )
                profiler = start_profile(args, label, daemon.pid)
                time.sleep(args.window)
                after, mic_after, spk_after = probe(daemon), emulator.appends(), card.speaker_file.stat().st_size
                if profiler is not None:
                    profiler.wait(timeout=30)
                ctl.poll()
                states = [state for at, state in ctl.states if at >= speaking]
                if set(states) != {"speaking"}:
                    raise RigError(f"duplex ({label}): the answer did not last the window (states {states})")
                seconds = after.at - before.at
                result[label] = {
                    "cpu_ms_per_audio_s": (after.ticks - before.ticks) / TICKS / seconds * 1000,
                    "loop_percent": after.thread_percent(before, daemon.pid),
                    "loop_wakeups_per_s": after.thread_wakeups(before, daemon.pid),
                    "mic_sent_s": mic_after[1] - mic_before[1],
                    "appends_per_s": (mic_after[0] - mic_before[0]) / seconds,
                    "answer_audible_fraction": audible_fraction(card.speaker_file, spk_before, spk_after),
                    "window_s": seconds,
                    "memory_mb": memory(daemon.pid),
                    "threads": thread_table(before, after),
                }
    return result


def start_profile(args: argparse.Namespace, label: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the "now" daemon over the window into --profile (collapsed stacks); it adds its own load."""
    if not args.profile or label != "now":
        return None
    if not (py_spy := shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))):
        raise RigError("--profile needs py-spy (pip install py-spy)")
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(args.window)), "--rate", "200",
               "--format", "raw", "--output", str(args.profile), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def audible_fraction(path: Path, start: int, end: int) -> float:
    """The share of 20 ms blocks of the speaker recording between two byte offsets that carry sound."""
    import numpy as np

    with path.open("rb") as f:
        f.seek(start)
        samples = np.frombuffer(f.read((end - start) // 2 * 2), "<i2").astype(np.float64)
    block = _rig.RATE * _rig.FRAME_MS // 1000
    blocks = samples[: samples.size // block * block].reshape(-1, block)
    return float(np.mean(np.sqrt(np.mean(blocks**2, axis=1)) > 100)) if blocks.size else 0.0


# ---- the report ---------------------------------------------------------------------------------------------


def describe_quota(quota: float, *, short: bool = False) -> str:
    if not quota:
        return "no quota"
    if short:
        return f"{quota:g} % of a core" + (f" (~ {QUOTA_NAMES[quota]})" if quota in QUOTA_NAMES else "")
    like = f", ~ {QUOTA_NAMES[quota]}" if quota in QUOTA_NAMES else ""
    return f"{quota:g} % of one core (emulated Pi-class CPU{like})"


def spread(times: dict[str, Any]) -> str:
    return f"{times['median_s']:.2f} ({times['min_s']:.2f}-{times['max_s']:.2f})"


def saturated(shares: list[float]) -> str:
    return "SATURATED: the quota, not the demand (see what was audible)" if max(shares) >= 95 else ""


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def row(title: str, cells: list[str], tail: str = "", width: int = 30) -> None:
    print(f"   {title:<{width}}" + "".join(f"{c:>22}" for c in cells) + (f"   {tail}" if tail else ""))


def report(results: dict[str, Any], labels: list[str]) -> None:
    if "idle" in results:
        idle, cols = results["idle"], [*labels, "floor"]
        now = idle["now"]
        print(f"\n1. Idle, both streams open, nobody talking: CPU, % of one core over {results['window_s']:g} s")
        row("", [*labels, "floor (bare PyAudio)"], "target")
        loop_ok = now["loop_percent"] <= TARGET_LOOP_PERCENT
        row("event-loop thread (TID=PID)", [f"{idle[c]['loop_percent']:.2f} %" for c in cols],
            f"<= {TARGET_LOOP_PERCENT} %: {mark(loop_ok)}")  # fmt: skip
        row("  its wakeups per second", [f"{idle[c]['loop_wakeups_per_s']:.1f}" for c in cols])
        limit = idle["floor"]["process_percent"] + TARGET_OVER_FLOOR_PERCENT
        verdict = f"<= floor + {TARGET_OVER_FLOOR_PERCENT} % = {limit:.2f} %: {mark(now['process_percent'] <= limit)}"
        row("whole process", [f"{idle[c]['process_percent']:.2f} %" for c in cols], verdict)
        if quota := results["quota_percent"]:
            shares = [idle[c]["process_percent"] / quota * 100 for c in cols]
            row("  = % of the emulated core", [f"{v:.1f} %" for v in shares], saturated(shares))
        print("\n2. Memory, idle")
        row("", [*labels, "floor (bare PyAudio)"], "target")
        for key in ("VmRSS", "VmHWM"):
            ok = now["memory_mb"][key] <= TARGET_RSS_MB
            row(key, [f"{idle[c]['memory_mb'][key]:.1f} MB" for c in cols], f"<= {TARGET_RSS_MB:g} MB: {mark(ok)}")
    if "startup" in results:
        print(f"\n3. Spawn to READY=1, seconds: median of {results['runs']} runs (min-max)")
        cols = [*labels, "import numpy", "floor"]
        row("", [*labels, "python: import numpy", "bare PyAudio streams"], "target", 36)
        for quota, figures in results["startup"].items():
            target = TARGET_START_S.get(float(quota))
            verdict = f"<= {target:g} s: {mark(figures['now']['median_s'] <= target)}" if target is not None else ""
            row(describe_quota(float(quota), short=True), [spread(figures[c]) for c in cols], verdict, 36)
        if any(float(q) for q in results["startup"]):
            print("   (quotas: an emulated Pi-class CPU, a cgroup CPU quota with a 10 ms period)")
    if "duplex" in results:
        duplex = results["duplex"]
        print(
            f"\n4. Full duplex, {results['window_s']:g} s while the assistant speaks and the microphone streams "
            f"(echo = {results['echo']!r}, frame_ms = {results['frame_ms']})"
        )
        row("", labels, width=44)
        for title, key, unit, scale in (
            ("CPU per second of full-duplex audio", "cpu_ms_per_audio_s", "ms", 1.0),
            ("  = whole process, % of one core", "cpu_ms_per_audio_s", "%", 0.1),
            ("event-loop thread, % of one core", "loop_percent", "%", 1.0),
            ("  its wakeups per second", "loop_wakeups_per_s", "", 1.0),
            ("microphone audio sent in the window", "mic_sent_s", "s", 1.0),
            ("  in appends per second", "appends_per_s", "", 1.0),
            ("answer audible in the window", "answer_audible_fraction", "%", 100.0),
            ("VmRSS after the window", "memory_mb", "MB", 1.0),
        ):
            cells = [duplex[c][key]["VmRSS"] if key == "memory_mb" else duplex[c][key] * scale for c in labels]
            row(title, [f"{v:.1f} {unit}" for v in cells], width=44)
            if scale == 0.1 and (quota := results["quota_percent"]):
                shares = [v / quota * 100 for v in cells]
                row("  = % of the emulated core", [f"{v:.1f} %" for v in shares], saturated(shares), 44)
        for label in labels[1:]:
            ratio = duplex["now"]["cpu_ms_per_audio_s"] / duplex[label]["cpu_ms_per_audio_s"]
            print(f"   now / {label}: {ratio:.2f}")
    for number, phase in (("5a", "idle"), ("5b", "duplex")):
        if phase in results:
            report_threads(number, phase, results[phase]["now"]["threads"])


def report_threads(number: str, phase: str, rows: list[dict[str, Any]]) -> None:
    generic = [r for r in rows if r["generic_name"] and not r["event_loop"]]
    print(f"\n{number}. Threads of the daemon (now), {phase}: {len(rows)}, of which {len(generic)} besides the "
          "event loop carry the interpreter's generic name")  # fmt: skip
    print(f"   {'tid':>8}  {'OS name':<13}{'Python name (py-spy)':<50}{'waits in':<24}{'CPU %':>7}{'exact %':>9}"
          f"{'wakes/s':>9}")  # fmt: skip
    for r in rows:
        note = "  <- event loop" if r["event_loop"] else ("  <- generic" if r["generic_name"] else "")
        print(f"   {r['tid']:>8}  {r['name']:<13}{r['python_name'][:48]:<50}{r['waits_in'][:22]:<24}"
              f"{r['percent']:>7.2f}{r['exact_percent']:>9.2f}{r.get('wakeups_per_s', 0):>9.0f}{note}")  # fmt: skip
    print("   CPU % from utime+stime (clock ticks); exact % from the scheduler's run time, wakes/s from its count of"
          " runs (schedstat)"
          + ("" if any(r["python_name"] for r in rows) else "; install py-spy for the Python names"))  # fmt: skip


# ---- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured (idle and duplex; default 20)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after ready before measuring (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="start-up runs per subject and quota (default 3)")
    parser.add_argument(
        "--quota",
        type=float,
        default=0.0,
        help="run every process under test with this %% of one core (an emulated Pi-class CPU); start-up is "
        "then measured at this quota only (default: no quota; start-up at none, 25 and 10)",
    )
    parser.add_argument("--baseline-rev", default="21e1047", help="the older revision to compare with ('none': skip)")
    parser.add_argument("--only", default="idle,startup,duplex", help="phases to run (comma-separated)")
    parser.add_argument(
        "--ready-timeout", type=float, default=20.0, help="seconds to READY=1 at full speed (divided by a quota)"
    )
    parser.add_argument("--echo", default="aec", choices=("aec", "gate", "off"), help="duplex: [audio] echo")
    parser.add_argument("--frame-ms", type=int, default=20, choices=(10, 20, 40), help="duplex: [audio] frame_ms")
    parser.add_argument("--profile", type=Path, help="duplex: py-spy's collapsed stacks of the daemon (now) to FILE")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    args.phases = {p.strip() for p in args.only.split(",") if p.strip()}
    if unknown := args.phases - {"idle", "startup", "duplex"}:
        parser.error(f"--only: unknown phase(s) {', '.join(sorted(unknown))}; use idle, startup, duplex")
    if not 0 <= args.quota <= 100:
        parser.error("--quota is a percentage of one core: 1 to 100 (0 = none)")
    args.startup_quotas = [args.quota] if args.quota else [0.0, 25.0, 10.0]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Line by line, so that the progress lines on stderr interleave with the figures in order.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a SIGTERM cleans up like a Ctrl-C
    work = Path(tempfile.mkdtemp(prefix="evbench-"))
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "load_average": os.getloadavg(), "now": f"{ROOT} ({git('describe', '--always', '--dirty')})",
        "quota_percent": args.quota, "window_s": args.window, "settle_s": args.settle, "runs": args.runs,
        "echo": args.echo, "frame_ms": args.frame_ms,
    }  # fmt: skip
    try:
        trees = {"now": ROOT}
        if args.baseline_rev.lower() != "none":
            code, short = export_revision(args.baseline_rev, work / "baseline")
            trees[f"today ({short})"] = code
            results["today"] = short
        for code in trees.values():
            check_tree(code)
            compile_tree(code)
        if not args.json:
            print(f"edgevoice footprint on {results['machine']}, load average {results['load_average'][0]:.2f}")
            print(f"now = {results['now']}" + (f"; today = {results['today']}" if "today" in results else ""))
            print(f"CPU: {describe_quota(args.quota)}; {args.window:g} s windows after {args.settle:g} s settling")
        if args.phases & {"idle", "startup"}:
            with Emulator() as emulator:  # `edgevoice emulator`: idle push-to-talk kiosks never connect
                if "idle" in args.phases:
                    results["idle"] = measure_idle(args, trees, work, emulator.url)
                if "startup" in args.phases:
                    results["startup"] = measure_startup(args, trees, work, emulator.url)
        if "duplex" in args.phases:
            results["duplex"] = measure_duplex(args, trees, work)
        results["bench_s"] = time.monotonic() - started
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            report(results, list(trees))
            print(f"\n(the bench took {results['bench_s']:.0f} s)")
        return 0
    except (RigError, ProbeError) as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("footprint: interrupted; everything started has been stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
