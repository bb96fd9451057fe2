"""What `edgevoice run` loads on its way to READY=1: not the parts only a conversation, a controller or another
command needs (they are loaded after READY, by `Daemon.warm_up`, or at their first use). How long start-up takes
is measured by bench/footprint.py (phase `startup`), not here."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from conftest import silence
from device import Device

from edgevoice.cli import build_parser
from edgevoice.devkit.sound_card import VirtualSoundCard

ROOT = Path(__file__).resolve().parent.parent

# Loaded after READY: the WebSocket stack and the server's events (realtime.session, by Daemon.warm_up), the
# control socket's command table and request handling (ControlServer.warm_up), the microphone's echo front end
# (SoundDevices.prepare_echo, or its first use), and what only a configuration
# with a hardware profile or a mistake in it, another command or [mqtt] needs.
AFTER_READY = (
    "websockets",
    "edgevoice.realtime.session",
    "edgevoice.realtime.server_events",
    "edgevoice.control.clients",
    "edgevoice.control.commands",
    "edgevoice.control.protocol",
    "edgevoice.control.ctl",
    "edgevoice.audio.duplex",
    "edgevoice.audio.echo",
    "edgevoice.audio.echo_filter",
    "edgevoice.audio.echo_suppressor",
    "edgevoice.audio.echo_delay",
    "edgevoice.audio.echo_reference",
    "edgevoice.audio.echo_hardware",
    "edgevoice.audio.vad",
    "edgevoice.audio.gate",
    "edgevoice.audio.quantile",
    "edgevoice.audio.fastfft",
    "edgevoice.hw.profiles",
    "edgevoice.device_fleet",
    "edgevoice.doctor",
    "edgevoice.selftest",
    "edgevoice.devkit",
    "difflib",
)

START_UP = """
import sys
from edgevoice.cli import build_parser
from edgevoice.config import parse_config
import edgevoice.service

build_parser(ctl_commands=False).parse_args(["run", "--config", "config.toml"])
parse_config('[hardware]\\npin_factory = "mock"\\n[mqtt]\\n[control]\\nsocket = "/run/ev.sock"\\n', "config.toml")
print(" ".join(sorted(m for m in sys.modules if m.startswith({later}))))
"""


def test_the_way_to_ready_leaves_the_rest_for_later() -> None:
    code = START_UP.format(later=repr(AFTER_READY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []


def test_ctl_still_gets_its_subcommands_from_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgevoice", "ctl", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert all(name in out.stdout for name in ("say", "speak", "volume", "image", "events", "tool"))
    args = build_parser().parse_args(["ctl", "say", "hello"])
    assert (args.ctl_command, args.text) == ("say", "hello")


def test_the_echo_front_end_is_built_after_ready_by_the_warm_up_and_kept(sound_card: VirtualSoundCard) -> None:
    async def scenario() -> None:
        async with Device(sound_card, mic=silence(10)) as device:
            assert device.daemon is not None and device.daemon.sound is not None
            microphone = device.daemon.sound.microphone
            assert not microphone.front_built  # READY did not wait for it
            device.daemon.warm_up()
            await device.until(lambda: microphone.front_built, what="the warm-up builds the echo front end")
            front = microphone.front
            device.press()
            await device.wait_state("listening")
            await device.wait_capture(device.daemon.capture_seconds + 0.5)
            device.release()
            await device.wait_state("idle", after="speaking")
            assert microphone.front is front  # one canceller for the life of the streams: what it learnt stays

    asyncio.run(scenario())
