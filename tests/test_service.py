"""`edgevoice run` as systemd runs it: READY/STATUS/WATCHDOG on a real NOTIFY_SOCKET, a hung sound card,
SIGHUP reloads (good and bad), SIGTERM; and the stop path in the middle of an answer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import CARD, silence, speak
from device import Device
from notify_socket import NotifySocket

from edgevoice.devkit.emulator import EmulatorSettings, SpokenReply, Tone
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard

RATE = 48000
CONFIG = f"""
[realtime]
url = "ws://127.0.0.1:9/v1/realtime"
[audio]
input_device = "{MIC}"
output_device = "{SPEAKER}"
input_rate = 48000
output_rate = 48000
[hardware]
pin_factory = "mock"
"""


def pings(notify: NotifySocket, start: float, end: float) -> int:
    return sum(start <= t < end for t, _ in notify.having("WATCHDOG", "1"))


def test_run_under_systemd_ready_watchdog_reload_and_stop(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    CARD.write_mic(silence(120))
    with NotifySocket() as notify:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        env.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")  # a ping every 0.25 s
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgevoice", "run", "--config", str(config)],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            ready = notify.wait_for("READY", "1")
            time.sleep(1.0)
            assert pings(notify, ready, ready + 1.0) >= 3
            # Every thread but the main one has a name of its own in `top -H` (the sound server's client
            # library names its own, "threaded-ml"); none is left as the interpreter's.
            tasks = Path(f"/proc/{proc.pid}/task")
            names = {int(t.name): (t / "comm").read_text().strip() for t in tasks.iterdir()}
            others = sorted(name for tid, name in names.items() if tid != proc.pid)
            assert others and all(n.startswith("ev-") or n == "threaded-ml" for n in others), others
            assert notify.statuses()[-1] == "idle"

            # A hung sound card: the microphone's callbacks stop, so the pings stop and STATUS says why.
            CARD.freeze()
            frozen = time.monotonic()
            try:
                notify.wait_for("STATUS", "error: microphone stalled", since=frozen, timeout=5)
                stalled = time.monotonic()
                time.sleep(1.0)
            finally:
                CARD.freeze(False)
            assert pings(notify, stalled, stalled + 1.0) == 0
            notify.wait_for("WATCHDOG", "1", since=time.monotonic(), timeout=5)  # the card came back

            # SIGHUP with a broken file: reported, the running configuration kept, still alive.
            config.write_text(CONFIG + "[audio.oops]\n")
            hup = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            notify.wait_for("STATUS", "reload refused", since=hup)
            time.sleep(0.6)
            assert pings(notify, hup + 0.1, hup + 0.6) >= 1 and proc.poll() is None
            assert not notify.having("RELOADING", since=hup)

            # SIGHUP with a good file: RELOADING=1, the daemon restarts its parts, READY=1 again.
            config.write_text(CONFIG.replace("[hardware]", '[logging]\nlevel = "debug"\n[hardware]'))
            hup = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            reloading = notify.wait_for("RELOADING", "1", since=hup)
            assert notify.wait_for("READY", "1", since=reloading) > reloading

            term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            err = proc.communicate(timeout=10)[1]
            took = time.monotonic() - term
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        print(f"SIGTERM to exit: {took * 1000:.0f} ms")
        assert proc.returncode == 0, err
        assert took < 2.0
        assert notify.having("STOPPING", "1", since=term)
        assert "reload refused, still running with the previous configuration" in err
        assert "unknown key [audio] oops" in err
        assert "reloading with" in err and "stopped" in err


# `edgevoice run` with one fault planted: the daemon's clock tick raises once the device has been ready a moment.
FAULTY_RUN = """
import sys, time
from edgevoice.conversation.machine import Conversation
started = time.monotonic()
tick = Conversation.tick
def faulty_tick(self):
    if time.monotonic() - started > 2.0:
        raise RuntimeError("a planted fault")
    tick(self)
Conversation.tick = faulty_tick
from edgevoice.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


def test_a_task_that_fails_stops_the_service_with_an_error_for_systemd_to_restart(tmp_path: Path) -> None:
    """A task of the daemon that dies (here its clock) must not leave a process that looks alive, pings the
    watchdog (the sound card's callbacks still run) and does nothing: it exits 1 (Restart=on-failure)."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    CARD.write_mic(silence(30))
    with NotifySocket() as notify:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        env.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
        proc = subprocess.Popen(
            [sys.executable, "-c", FAULTY_RUN, str(config)], stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            notify.wait_for("READY", "1")
            err = proc.communicate(timeout=15)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, err
    assert "the tick task failed: RuntimeError: a planted fault; stopping (systemd restarts edgevoice)" in err
    assert "Traceback" in err and "stopped" in err
    assert any(status.startswith("failed: the tick task failed") for status in notify.statuses())


def test_stopping_mid_answer_cancels_it_closes_the_session_and_is_quick(sound_card: VirtualSoundCard) -> None:
    speech = speak("Tell me a story.")
    mic = np.concatenate((silence(0.5), speech, silence(20)))
    long_reply = SpokenReply("A long story.", (Tone(500.0, 3.0),))

    async def scenario() -> tuple[Device, float]:
        device = Device(sound_card, mic=mic, emulator=EmulatorSettings(realtime_factor=1.0, response_delay_s=0.1))
        async with device:
            device.emulator.queue_reply(long_reply)
            await device.wait_capture(0.3)
            device.press()
            await device.wait_capture(0.5 + len(speech) / RATE + 0.2)
            device.release()
            await device.wait_state("speaking")
            await asyncio.sleep(0.3)
            started = time.monotonic()
            assert device.daemon is not None and device._task is not None
            device.daemon.stop()
            await device._task
            took = time.monotonic() - started
            await asyncio.sleep(0.2)
            assert device.emulator.connection_count == 0
        return device, took

    device, took = asyncio.run(scenario())
    print(f"daemon stop mid-answer: {took * 1000:.0f} ms")
    assert took < 2.0
    assert len(device.sent("response.cancel")) == 1
    assert any("stopped" in line for line in device.log.lines)
