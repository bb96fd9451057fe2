"""What `edgevoice run` loads on its way to READY=1: not the parts only a conversation, a controller or another
command needs (they are loaded after READY, by `Daemon.warm_up`, or at their first use). How long start-up takes
is measured by bench/footprint.py (phase `startup`), not here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgevoice.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

# Loaded after READY: the WebSocket stack and the server's events (realtime.session, by Daemon.warm_up), the
# control socket's command table and request handling (ControlServer.warm_up), and what only a configuration
# with a hardware profile or a mistake in it, another command or [mqtt] needs.
AFTER_READY = (
    "websockets",
    "edgevoice.realtime.session",
    "edgevoice.realtime.server_events",
    "edgevoice.control.clients",
    "edgevoice.control.commands",
    "edgevoice.control.protocol",
    "edgevoice.control.ctl",
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
