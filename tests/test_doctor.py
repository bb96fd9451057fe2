"""`edgevoice doctor` against the emulator and the virtual sound card, working and broken."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from busy import hold_the_interpreter
from conftest import CARD

from edgevoice.config import Config
from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
from edgevoice.devkit.sound_card import MIC, MIC_FAST, SPEAKER, SPEAKER_FAST
from edgevoice.doctor import Context, Finding, diagnose, local, report
from edgevoice.hw.detect import check_board
from edgevoice.hw.settings import HardwareSettings

KEY = "sk-" + "proj-doctor0123456789abcdef"
RATE = 48000


def tone(seconds: float = 3.0, amplitude: int = 3000) -> np.ndarray:
    return (np.sin(2 * np.pi * 440 * np.arange(int(RATE * seconds)) / RATE) * amplitude).astype(np.int16)


def write_config(path: Path, url: str, input_device: str = MIC_FAST, output_device: str = SPEAKER_FAST) -> str:
    path.write_text(
        f'[realtime]\nurl = "{url}"\n'
        f'[audio]\ninput_device = "{input_device}"\noutput_device = "{output_device}"\ninput_rate = {RATE}\n'
        '[hardware]\npin_factory = "mock"\n'
    )
    return str(path)


def run_checks(config: str, emulator: EmulatorSettings, key: str) -> dict[str, Finding]:
    async def scenario() -> list[Finding]:
        async with RealtimeEmulator(emulator) as emu:
            path = write_config(Path(config), emu.url)
            return await diagnose(Context(path, listen_s=0.3))

    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = key
    try:
        findings = asyncio.run(scenario())
    finally:
        if old is None:
            os.environ.pop("OPENAI_API_KEY")
        else:
            os.environ["OPENAI_API_KEY"] = old
    text = report(findings, False) + report(findings, True)
    assert KEY not in text and KEY[:-4] not in text  # the key is used, never shown
    return {f.check: f for f in findings}


def test_a_working_device_passes_and_loopback_skips_dns_and_tls(tmp_path: Path) -> None:
    CARD.write_mic(tone(), fast=True)
    found = run_checks(str(tmp_path / "config.toml"), EmulatorSettings(api_key=KEY), KEY)
    assert found["config"].status == "pass"
    assert found["audio"].status == "pass" and f"{MIC_FAST!r} at 48000 Hz" in found["audio"].detail
    assert "no overflow or underflow in 1.0 s of capture and playback together" in found["audio"].detail
    assert found["microphone"].status == "pass" and "peak -21 dBFS" in found["microphone"].detail
    assert found["gpio"].status == "warn" and "mock pins" in found["gpio"].detail
    assert found["dns"].detail.startswith("skipped: loopback") and found["tls"].detail.startswith("skipped: loopback")
    assert found["realtime"].status == "pass" and "session sess_" in found["realtime"].detail
    assert "key from OPENAI_API_KEY" in found["realtime"].detail
    assert found["disk"].status in ("pass", "warn")
    assert not [f for f in found.values() if f.status == "fail"]


def test_a_refused_key_a_silent_microphone_and_a_missing_device_fail_with_what_to_do(tmp_path: Path) -> None:
    CARD.write_mic(np.zeros(RATE * 3, np.int16), fast=True)
    found = run_checks(str(tmp_path / "config.toml"), EmulatorSettings(api_key="sk-" + "the-right-one-123456"), KEY)
    assert found["realtime"].status == "fail" and "refused the API key (HTTP 401)" in found["realtime"].detail
    assert found["microphone"].status == "fail" and "digital silence" in found["microphone"].detail
    assert "alsamixer" in found["microphone"].fix

    async def missing_mic() -> list[Finding]:
        path = write_config(tmp_path / "missing.toml", "ws://127.0.0.1:9/v1/realtime", input_device="USB PnP")
        return await diagnose(Context(path, listen_s=0.3), only={"config", "audio", "microphone"})

    config, audio, microphone = asyncio.run(missing_mic())
    assert config.status == "pass"
    assert audio.status == "fail" and "no input device whose name contains 'USB PnP'" in audio.detail
    assert MIC_FAST in audio.detail and "edgevoice devices" in audio.fix  # it lists what is there
    assert microphone.status == "skip"


def test_a_key_file_the_daemon_refuses_is_reported_with_its_reason(tmp_path: Path) -> None:
    """Regression: doctor said only "no API key" where the daemon refuses a key file that others can read."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    config = tmp_path / "config.toml"
    config.write_text(f'[realtime]\nurl = "ws://127.0.0.1:9/v1/realtime"\napi_key_file = "{key_file}"\n')
    old = os.environ.pop("OPENAI_API_KEY", None)
    try:
        found = {f.check: f for f in asyncio.run(diagnose(Context(str(config)), only={"config", "dns", "realtime"}))}
    finally:
        if old is not None:
            os.environ["OPENAI_API_KEY"] = old
    assert found["realtime"].status == "fail"
    assert "readable by other users (mode 0644); run: chmod 600" in found["realtime"].detail


def test_the_control_socket_check_looks_where_the_configuration_puts_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path}/ctl/c.sock"\n')
    (tmp_path / "ctl").mkdir()
    _, found = asyncio.run(diagnose(Context(str(config)), only={"config", "control socket"}))
    assert found.status == "pass" and str(tmp_path / "ctl") in found.detail


def test_the_audio_check_runs_both_streams_in_real_time_and_warns_of_a_card_served_too_late(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    CARD.write_mic(tone(), fast=False)
    path = write_config(tmp_path / "config.toml", "ws://127.0.0.1:9/v1/realtime", MIC, SPEAKER)  # paced devices

    def audio_check() -> Finding:
        config, audio = asyncio.run(diagnose(Context(path), only={"config", "audio"}))
        assert config.status == "pass"
        return audio

    healthy = audio_check()
    assert healthy.status == "pass" and "no overflow or underflow in 1.0 s" in healthy.detail

    def busy_run(*args: Any) -> local.DuplexRun:
        busy = hold_the_interpreter(after_s=0.2, seconds=0.6)  # a CPU too busy, in the middle of the run
        try:
            return real_run(*args)
        finally:
            busy.join()

    real_run = local.run_duplex
    monkeypatch.setattr(local, "run_duplex", busy_run)
    late = audio_check()
    assert late.status == "warn" and "underflow(s)" in late.detail and "overflow(s)" in late.detail
    assert " 0 playback underflow(s)" not in late.detail  # the speaker ran out while the callbacks were held up
    assert "stop what else uses the CPU" in late.fix and "USB port" in late.fix


def test_the_hardware_profile_is_checked_against_the_sound_cards(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cards, model = tmp_path / "cards", tmp_path / "model"
    model.write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    monkeypatch.setattr(
        local, "profile_checker", functools.partial(check_board, cards_path=str(cards), model_path=str(model))
    )
    ctx = Context(None)
    ctx.config = Config(hardware=HardwareSettings(pin_factory="mock", profile="respeaker-4mic"))
    cards.write_text(
        " 0 [Device         ]: USB-Audio - USB PnP Sound Device\n   C-Media USB PnP Sound Device at usb-1\n"
    )
    found = local.check_profile(ctx)
    assert found.status == "fail" and "seeed4micvoicec" in found.detail and "USB PnP Sound Device" in found.detail
    cards.write_text(" 1 [seeed4micvoicec]: seeed-4mic-voi - seeed-4mic-voicecard\n   seeed-4mic-voicecard\n")
    assert local.check_profile(ctx).status == "pass"
    ctx.config = Config(hardware=HardwareSettings(pin_factory="mock", profile="no-such-board"))
    assert local.check_profile(ctx).status == "fail"
    ctx.config = Config()
    assert local.check_profile(ctx).detail == "no [hardware] profile set"


def test_the_command_exits_zero_when_nothing_fails_and_one_otherwise(tmp_path: Path) -> None:
    CARD.write_mic(tone(), fast=True)
    emulator = subprocess.Popen([sys.executable, "-m", "edgevoice", "emulator", "--port", "0"], stderr=subprocess.PIPE)
    assert emulator.stderr is not None
    try:
        line = b""
        while b"connect to" not in line:
            line = emulator.stderr.readline()
            assert line, "the emulator exited"
        url = line.decode().split("connect to ")[1].split()[0]
        config = write_config(tmp_path / "config.toml", url)
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        out = subprocess.run(
            [sys.executable, "-m", "edgevoice", "doctor", "--config", config, "--json"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout)
        assert result["failed"] == 0 and {c["check"] for c in result["checks"]} >= {"config", "audio", "realtime"}
        (tmp_path / "bad.toml").write_text("[audio]\ninput_rate = 'fast'\n")
        out = subprocess.run(
            [sys.executable, "-m", "edgevoice", "doctor", "--config", str(tmp_path / "bad.toml")],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert out.returncode == 1
        assert "FAIL  config" in out.stdout and "input_rate = 'fast': must be a whole number" in out.stdout
        assert "SKIP  audio          needs a valid configuration" in out.stdout
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(10)


@pytest.mark.parametrize(("gain_db", "status"), [(-35.0, "pass"), (0.0, "fail")])
def test_the_echo_a_device_that_cancels_leaves_is_measured(gain_db: float, status: str) -> None:
    from test_selftest import CONFIG, script_room

    script_room(gain=10 ** (gain_db / 20))  # the processed channel: the room's echo (-10 dB) gain_db further down
    ctx = Context(None)
    ctx.config = CONFIG.replace(audio=dataclasses.replace(CONFIG.audio, hardware_aec=True))
    found = local.check_echo(ctx)
    assert found.status == status, found
    if status == "pass":
        assert found.detail.startswith("the device's echo cancellation works: a test sweep played through")
        assert "comes back -45 dB down" in found.detail
    else:
        assert "does not work" in found.detail and "comes back -10 dB down" in found.detail
        assert "processed channel" in found.fix
    ctx.config = CONFIG  # edgevoice's own canceller: nothing for this check to measure
    assert local.check_echo(ctx).status == "skip"
