"""The systemd unit, checked by systemd's own tools: `systemd-analyze security` and `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "edgevoice.service"
EXEC = "/opt/edgevoice/venv/bin/edgevoice"
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def render(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    binary = tmp_path / "edgevoice"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    text = UNIT.read_text().replace(EXEC, str(binary))
    assert str(binary) in text, "ExecStart moved: update EXEC in this test"
    if extra:
        text = text.replace("[Service]\n", f"[Service]\n{extra}\n")
    unit = tmp_path / "edgevoice.service"
    unit.write_text(text)
    return unit


def exposure(unit: Path) -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    return float(match.group(1))


def verify(unit: Path) -> str:
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    return (out.stdout + out.stderr).strip() + ("" if out.returncode == 0 else f"\n(exit code {out.returncode})")


def test_the_unit_is_hardened_to_an_exposure_of_at_most_1_5(tmp_path: Path) -> None:
    score = exposure(UNIT)
    print(f"systemd-analyze security --offline=yes: exposure {score}")
    assert score <= MAX_EXPOSURE
    # The measurement can fail: the same unit with the sandbox switched off scores far worse.
    loose = tmp_path / "loose.service"
    loose.write_text(
        "\n".join(
            line
            for line in UNIT.read_text().splitlines()
            if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability", "NoNew", "Device"))
        )
    )
    assert exposure(loose) > 5


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    assert verify(render(tmp_path)) == ""
    assert "Unknown key 'WatchDogSec'" in verify(render(tmp_path, "WatchDogSec=5"))  # it does catch mistakes


def test_the_unit_has_what_the_daemon_relies_on() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StartLimitBurst=",
        "User=edgevoice",
        "SupplementaryGroups=audio gpio spi",
        "LoadCredential=openai_api_key:/etc/credstore/openai_api_key",
        "RuntimeDirectory=edgevoice",
        "StateDirectory=edgevoice",
        "DevicePolicy=closed",
        "DeviceAllow=char-alsa rw",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "MemoryMax=",
        "TasksMax=",
    ):
        assert line in text, line
    assert "Environment=OPENAI_API_KEY" not in text  # the key never travels in the environment
    assert not re.search(r"DeviceAllow=/dev/\S*\*", text)  # globs are taken literally by systemd
