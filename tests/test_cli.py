"""The `edgevoice` commands as a user runs them: in their own processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CARD
from device import dominant_hz, tone_segments
from websockets.asyncio.client import connect

from edgevoice.devkit.sound_card import read_wav

EDGEVOICE = [sys.executable, "-m", "edgevoice"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEVOICE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_devices_lists_inputs_and_outputs() -> None:
    out = run("devices")
    assert out.returncode == 0, out.stderr
    assert "ev_mic" in out.stdout and "ev_spk" in out.stdout and "index" in out.stdout
    assert "jack" not in (out.stdout + out.stderr).lower()  # PortAudio's start-up noise is kept out
    devices = json.loads(run("devices", "--json").stdout)
    mic = next(d for d in devices if d["name"] == "ev_mic")
    assert mic["max_input_channels"] > 0 and mic["default_rate"] > 0


def test_run_refuses_a_bad_config_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[audio]\ninput_rate = 'fast'\n")
    out = run("run", "--config", str(config))
    assert out.returncode == 2
    assert f"{config}: [audio] input_rate = 'fast': must be a whole number" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("run", "--config", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and "no such file" in out.stderr


def test_run_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[realtime]\nurl = "ws://127.0.0.1:9/v1/realtime"\n'
        '[audio]\ninput_device = "ev_mic_fast"\noutput_device = "ev_spk_fast"\n'
        '[hardware]\npin_factory = "mock"\n'
    )
    CARD.write_mic(np.zeros(48000 * 5, np.int16), fast=True)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.Popen([*EDGEVOICE, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 20
    while not any("microphone:" in line for line in lines) and time.monotonic() < deadline:
        lines.append(proc.stderr.readline())
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=10)[1]
    assert proc.returncode == 0, "".join(lines) + rest
    assert time.monotonic() - started < 2.0
    assert "stopped" in rest


def test_demo_runs_the_whole_pipeline_and_records_the_answer(tmp_path: Path) -> None:
    out_wav = tmp_path / "answer.wav"
    out = run("demo", "--out", str(out_wav), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "idle -> connecting -> listening -> thinking -> speaking -> idle" in out.stdout
    assert "ms from end of speech to first answer audio" in out.stdout
    assert "transcript  assistant: Hello from the edgevoice emulator." in out.stdout
    assert f"recorded to {out_wav}" in out.stdout
    samples, rate = read_wav(out_wav)
    (segment,) = tone_segments(samples, rate)
    answer = samples[int(segment[0] * rate) : int(segment[1] * rate)]
    assert [round(dominant_hz(part, rate) / 10) * 10 for part in np.array_split(answer, 3)] == [440, 660, 880]


def test_emulator_command_serves_the_protocol() -> None:
    proc = subprocess.Popen([*EDGEVOICE, "emulator", "--port", "0"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        line = ""
        while "connect to" not in line:
            line = proc.stderr.readline()
            assert line, "the emulator exited"
        url = line.split("connect to ")[1].split()[0]

        async def hello() -> dict[str, object]:
            async with connect(url) as ws:
                return json.loads(await ws.recv())

        assert asyncio.run(hello())["type"] == "session.created"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


@pytest.mark.parametrize("args", [[], ["nope"]])
def test_usage_errors(args: list[str]) -> None:
    out = run(*args)
    assert out.returncode == 2 and "usage: edgevoice" in out.stderr
