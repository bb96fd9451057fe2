"""Doctor checks of the device itself: configuration, hardware profile, sound, microphone, GPIO, control socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyaudio

from edgevoice.audio.bridge import open_stream
from edgevoice.audio.devices import (
    AudioDeviceError,
    StreamFormat,
    find_device,
    list_devices,
    negotiate_format,
    open_portaudio,
)
from edgevoice.config import ConfigError, load_config
from edgevoice.config_warnings import config_warnings
from edgevoice.doctor import Context, Finding
from edgevoice.hw.detect import check_board
from edgevoice.hw.gpio import HardwareError, explain_gpio_error, make_pin_factory

CONTROL_SOCKET = "/run/edgevoice/control.sock"
SILENT_PEAK = 33  # int16 peak below -60 dBFS: nothing is reaching the microphone
CLIPPED_FRACTION = 0.01  # more than 1 % of samples at full scale
DUPLEX_S = 1.0  # how long the audio check runs the microphone and the speaker together

# A board check for `[hardware] profile`: called with the profile's name, returns a problem or None.
# edgevoice.hw.detect.check_board; tests may set another.
ProfileChecker = Callable[[str], "str | None"]
profile_checker: ProfileChecker | None = None


def service_is_active() -> bool:
    """The edgevoice service is running (it holds the sound card and the GPIO pins)."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return False
    out = subprocess.run(["systemctl", "is-active", "--quiet", "edgevoice.service"], capture_output=True)
    return out.returncode == 0


def _needs_config(ctx: Context, check: str) -> Finding | None:
    if ctx.config is None:
        return Finding(check, "skip", "needs a valid configuration (see the config check)")
    if ctx.service_active and check in ("audio", "microphone", "echo", "gpio"):
        return Finding(
            check,
            "skip",
            "the edgevoice service is running and holds the device",
            "systemctl stop edgevoice to test it",
        )
    return None


def check_config(ctx: Context) -> Finding:
    try:
        ctx.config = load_config(ctx.config_path)
    except ConfigError as exc:
        return Finding("config", "fail", str(exc), "fix the file as the message says; every key: docs/configuration.md")
    notes = config_warnings(ctx.config)
    if notes:
        return Finding("config", "warn", f"{ctx.config.source}: " + "; ".join(notes), "see docs/configuration.md")
    return Finding("config", "pass", f"{ctx.config.source} is valid")


def _board_checker() -> ProfileChecker:
    return profile_checker or check_board


def check_profile(ctx: Context) -> Finding:
    if (skip := _needs_config(ctx, "profile")) is not None:
        return skip
    assert ctx.config is not None
    name = str(getattr(ctx.config.hardware, "profile", "") or "")
    if not name:
        return Finding("profile", "skip", "no [hardware] profile set")
    problem = _board_checker()(name)
    if problem:
        return Finding("profile", "fail", f"profile {name!r}: {problem}", "set [hardware] profile to this board's")
    return Finding("profile", "pass", f"profile {name!r} matches this board")


def _formats(ctx: Context, pa: pyaudio.PyAudio) -> tuple[StreamFormat, StreamFormat]:
    assert ctx.config is not None
    audio = ctx.config.audio
    devices = list_devices(pa)
    mic_dev = find_device(devices, audio.input_device, "input")
    spk_dev = find_device(devices, audio.output_device, "output")
    mic = negotiate_format(pa, mic_dev, "input", audio.input_rate, audio.input_channels, audio.sample_format)
    spk = negotiate_format(pa, spk_dev, "output", audio.output_rate, audio.output_channels, audio.sample_format)
    return mic, spk


def _open(pa: pyaudio.PyAudio, fmt: StreamFormat, *, input: bool) -> pyaudio.Stream:
    return open_stream(pa, fmt, fmt.rate // 50, input=input)


@dataclass
class DuplexRun:
    """What PortAudio reported while the microphone and the speaker ran together (its status flags)."""

    captured: int = 0  # capture callbacks
    played: int = 0  # playback callbacks
    overflows: int = 0  # capture callbacks flagged paInputOverflow: input was lost
    underflows: int = 0  # playback callbacks flagged paOutputUnderflow: the speaker ran out


def run_duplex(pa: pyaudio.PyAudio, mic: StreamFormat, spk: StreamFormat, seconds: float) -> DuplexRun:
    """Capture and play silence together for `seconds`, in callback mode with 20 ms buffers, as the daemon
    does; counts the callbacks and the overflow and underflow flags PortAudio sets on them."""
    run = DuplexRun()
    frames = spk.rate // 50
    silence = b"\0" * spk.width * spk.channels * frames

    def on_capture(in_data: bytes | None, count: int, time_info: Any, status: int) -> tuple[None, int]:
        run.captured += 1
        run.overflows += bool(status & pyaudio.paInputOverflow)
        return None, pyaudio.paContinue

    def on_playback(in_data: bytes | None, count: int, time_info: Any, status: int) -> tuple[bytes, int]:
        run.played += 1
        run.underflows += bool(status & pyaudio.paOutputUnderflow)
        return (silence if count == frames else b"\0" * spk.width * spk.channels * count), pyaudio.paContinue

    playback = open_stream(pa, spk, frames, on_playback, input=False)
    try:
        capture = open_stream(pa, mic, mic.rate // 50, on_capture, input=True)
        try:
            playback.start_stream()
            capture.start_stream()
            threading.Event().wait(seconds)  # the callbacks run on PortAudio's threads meanwhile
        finally:
            capture.close()
    finally:
        playback.close()
    return run


def check_audio_devices(ctx: Context) -> Finding:
    if (skip := _needs_config(ctx, "audio")) is not None:
        return skip
    pa = open_portaudio()
    try:
        mic, spk = _formats(ctx, pa)
        run = run_duplex(pa, mic, spk, DUPLEX_S)
    except AudioDeviceError as exc:
        return Finding("audio", "fail", str(exc), "set [audio] input_device / output_device (see `edgevoice devices`)")
    except OSError as exc:
        return Finding("audio", "fail", f"opening the sound devices failed: {exc}", "is another program using them?")
    finally:
        pa.terminate()
    devices = (
        f"microphone {mic.device.name!r} at {mic.rate} Hz x{mic.channels}, "
        f"speaker {spk.device.name!r} at {spk.rate} Hz x{spk.channels}"
    )
    together = f"{DUPLEX_S:.1f} s of capture and playback together"
    if not (run.captured and run.played):
        silent = "the microphone" if not run.captured else "the speaker"
        return Finding(
            "audio", "fail", f"{devices}; {silent} delivered no buffer in {together}", "is the sound card hung?"
        )
    if run.overflows or run.underflows:
        return Finding(
            "audio",
            "warn",
            f"{devices}; {run.overflows} capture overflow(s) in {run.captured} buffers and {run.underflows} playback "
            f"underflow(s) in {run.played} buffers in {together}",
            "the sound card was served too late: stop what else uses the CPU (see `top`) or try another USB port "
            "or card; heard as clicks, and speech sent cut short",
        )
    return Finding("audio", "pass", f"{devices}; no overflow or underflow in {together}")


def check_microphone(ctx: Context) -> Finding:
    if (skip := _needs_config(ctx, "microphone")) is not None:
        return skip
    assert ctx.config is not None
    pa = open_portaudio()
    try:
        mic, _ = _formats(ctx, pa)
        stream = _open(pa, mic, input=True)
        try:
            raw = stream.read(int(mic.rate * ctx.listen_s), exception_on_overflow=False)
        finally:
            stream.close()
    except (AudioDeviceError, OSError) as exc:
        return Finding("microphone", "skip", f"cannot record: {exc}")
    finally:
        pa.terminate()
    channel = min(ctx.config.audio.input_channel, mic.channels - 1)
    wide = np.frombuffer(raw, dtype="<i2" if mic.width == 2 else "<i4")[channel :: mic.channels]
    samples = (wide.astype(np.int64) >> (16 if mic.width == 4 else 0)).astype(np.int32)  # the int16 scale
    peak = int(np.abs(samples).max()) if samples.size else 0
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
    level = f"peak {_dbfs(peak):.0f} dBFS, rms {_dbfs(rms):.0f} dBFS over {ctx.listen_s:g} s"
    if peak == 0:
        return Finding(
            "microphone",
            "fail",
            f"digital silence ({level})",
            "the capture is muted or the wrong channel: check alsamixer (F4, capture) and [audio] input_channel",
        )
    if peak < SILENT_PEAK:
        return Finding("microphone", "warn", f"nearly silent ({level})", "raise the capture gain in alsamixer")
    clipped = float(np.mean(np.abs(samples) >= 32767))
    if clipped > CLIPPED_FRACTION:
        return Finding(
            "microphone", "warn", f"clipping: {clipped:.1%} of samples at full scale ({level})", "lower the gain"
        )
    return Finding("microphone", "pass", level)


def check_echo(ctx: Context) -> Finding:
    """On a device that cancels its own echo ([audio] hardware_aec): play the selftest's sweep through it and
    measure how far down it comes back on the processed channel, the same verdict the daemon reaches."""
    if (skip := _needs_config(ctx, "echo")) is not None:
        return skip
    assert ctx.config is not None
    audio = ctx.config.audio
    if not (audio.hardware_aec and audio.echo == "aec"):
        return Finding("echo", "skip", f"[audio] echo = {audio.echo!r} without hardware_aec: nothing to measure here")
    from edgevoice.audio.echo_hardware import WORKING_RESIDUAL_DB
    from edgevoice.selftest import play_sweep
    from edgevoice.selftest.echo import residual_echo_db

    try:
        sweep = play_sweep(audio)
    except (AudioDeviceError, OSError) as exc:
        return Finding("echo", "fail", f"cannot play and record the test sweep: {exc}", "see the audio check")
    residual = residual_echo_db(sweep.played, sweep.take.recorded, sweep.rate)
    said = f"a test sweep played through {sweep.devices[1]!r} comes back {residual:.0f} dB down on {sweep.devices[0]!r}"
    if residual <= WORKING_RESIDUAL_DB:
        return Finding("echo", "pass", f"the device's echo cancellation works: {said}")
    return Finding(
        "echo",
        "fail",
        f"the device's echo cancellation does not work: {said} (more than {WORKING_RESIDUAL_DB:.0f} dB)",
        "set [audio] input_channel to the device's processed channel and output_device to the device itself; "
        "until then edgevoice attenuates the microphone while it speaks",
    )


def _dbfs(value: float) -> float:
    return 20 * np.log10(max(value, 1e-9) / 32768)


def check_gpio(ctx: Context) -> Finding:
    if (skip := _needs_config(ctx, "gpio")) is not None:
        return skip
    assert ctx.config is not None
    config = ctx.config
    wanted = [("button", config.button.pin)] if config.button.enabled else []
    wanted += [("LED", config.leds.pin)] if config.leds.enabled else []
    if not wanted:
        return Finding("gpio", "skip", "button and LED are disabled")
    try:
        factory = make_pin_factory(config.hardware.pin_factory)
    except HardwareError as exc:
        return Finding("gpio", "fail", str(exc))
    import gpiozero

    claimed = []
    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpiozero's factory fallbacks: our message says what matters
        for what, pin in wanted:
            try:
                claimed.append(gpiozero.DigitalOutputDevice(pin, pin_factory=factory))
            except Exception as exc:
                problems.append(explain_gpio_error(exc, f"{what} on GPIO{pin}"))
        name = type(factory or gpiozero.Device.pin_factory).__name__
    for device in claimed:
        device.close()
    pins = ", ".join(f"{what} GPIO{pin}" for what, pin in wanted)
    if problems:
        return Finding("gpio", "fail", "; ".join(problems), "free the pin (another program?) or change it in config")
    if "Mock" in name:
        return Finding("gpio", "warn", f"{pins} free, but on mock pins ({name})", "no real GPIO: fine for a test")
    return Finding("gpio", "pass", f"{pins} free ({name})")


def check_control_socket(ctx: Context) -> Finding:
    path = Path(ctx.config.control.socket if ctx.config is not None else CONTROL_SOCKET)  # where the daemon puts it
    if ctx.service_active and path.exists():
        return Finding("control socket", "pass", f"{path} is served by the running edgevoice")
    if not path.parent.is_dir():
        if Path("/run").is_dir() and os.access("/run", os.W_OK):
            return Finding("control socket", "pass", f"{path.parent} will be created at start (RuntimeDirectory=)")
        return Finding(
            "control socket", "warn", f"{path.parent} does not exist", "run edgevoice as the systemd service"
        )
    probe = path.parent / f".doctor-{os.getpid()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(probe))
    except OSError as exc:
        return Finding(
            "control socket", "fail", f"cannot create a socket in {path.parent}: {exc.strerror}", "check its owner"
        )
    finally:
        sock.close()
        probe.unlink(missing_ok=True)
    return Finding("control socket", "pass", f"{path.parent} is writable")
