"""`edgevoice selftest`: an installer's check that the device hears itself, lights up and feels the button.

1. Echo path: a sweep is played on the speaker and recorded on the microphone in one duplex stream; the
   delay and the impulse response (see `echo`) are printed and saved to the state directory, a record for an
   installer (the canceller learns its own alignment). `--plot PATH` also writes a PNG of the recording and the
   response. PortAudio's overflow and underflow flags during it are counted and reported (none on a healthy
   device). On a device that cancels its own echo (`[audio] hardware_aec`), the echo left is measured
   instead, with a verdict: the device's canceller works if the sweep comes back at least 20 dB down.
2. LED: every device state's pattern is shown in turn (half a second each).
3. Button: waits (with a timeout) for one press.
The devices must be free: stop the service first (`systemctl stop edgevoice`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevoice.audio.devices import AudioDeviceError, find_device, list_devices, open_portaudio
from edgevoice.audio.echo_hardware import WORKING_RESIDUAL_DB
from edgevoice.audio.settings import AudioSettings
from edgevoice.config import Config, ConfigError, load_config
from edgevoice.hw.gpio import HardwareError, explain_gpio_error, make_pin_factory
from edgevoice.hw.led_drivers import open_driver
from edgevoice.hw.leds import LOOKS, LedShow
from edgevoice.selftest.echo import EchoPath, measure, measurement_signal, residual_echo_db
from edgevoice.selftest.playrec import PlayRecord, duplex_format, play_and_record
from edgevoice.selftest.png import plot_measurement

MIN_SNR_DB = 25.0  # pure noise deconvolves to a peak ~14 dB over its own floor
LED_STEP_S = 0.5
DEFAULT_STATE_DIR = "/var/lib/edgevoice"
RATES = (48000, 44100, 32000, 24000, 16000)


@dataclass
class SelftestReport:
    """What `edgevoice selftest` found, printed as it goes: `say` records and prints a line, `fail` a
    problem (any failure makes the exit status 1). Keeps the echo measurement and where it was saved."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    echo: EchoPath | None = None
    saved_to: Path | None = None
    residual_echo_db: float | None = None  # on a device that cancels its own echo: how far down the sweep came back

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(f"  {line}", flush=True)

    def fail(self, line: str) -> None:
        self.failures.append(line)
        self.say(f"FAIL {line}")


def state_directory(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class Sweep:
    """The measurement sweep as played (`played`, float full scale) and recorded (`take`) at `rate`."""

    played: np.ndarray
    take: PlayRecord
    rate: int
    devices: tuple[str, str]  # the microphone's and the speaker's names


def play_sweep(audio: AudioSettings) -> Sweep:
    """Play the sweep on `[audio] output_device` and record `input_device` in one duplex stream (raises
    AudioDeviceError or OSError when the devices cannot be opened)."""
    pa = open_portaudio()
    try:
        devices = list_devices(pa)
        mic = find_device(devices, audio.input_device, "input")
        spk = find_device(devices, audio.output_device, "output")
        preferred = tuple(dict.fromkeys(r for r in (audio.input_rate, audio.output_rate, *RATES) if r))
        channels = tuple(dict.fromkeys(c for c in (audio.input_channels, 1, 2) if c))
        rate, n_channels = duplex_format(pa, mic, spk, preferred, channels)
        played = measurement_signal(rate)
        take = play_and_record(pa, mic, spk, rate, n_channels, played, min(audio.input_channel, n_channels - 1))
    finally:
        pa.terminate()
    return Sweep(played, take, rate, (mic.name, spk.name))


def check_echo_path(config: Config, report: SelftestReport, state_dir: Path, plot: str | None) -> None:
    audio = config.audio
    try:
        sweep = play_sweep(audio)
    except (AudioDeviceError, OSError) as exc:
        report.fail(f"echo path: {exc}")
        return
    played, take, rate = sweep.played, sweep.take, sweep.rate
    recorded = take.recorded
    echo = measure(played, recorded, rate, devices=sweep.devices)
    report.echo = echo
    peak = int(np.abs(recorded.astype(np.int32)).max())
    report.say(
        f"echo path: delay {echo.delay_ms:.1f} ms ({echo.delay_samples} samples at {rate} Hz), "
        f"gain {echo.gain_db:.1f} dB, SNR {echo.snr_db:.0f} dB, microphone peak {peak}"
    )
    report_xruns(report, take)
    if peak == 0:
        report.fail("the microphone recorded digital silence: is it muted (alsamixer) or the wrong device?")
    elif audio.hardware_aec and audio.echo == "aec":
        judge_hardware_aec(report, residual_echo_db(played, recorded, rate))
    elif echo.snr_db < MIN_SNR_DB:
        report.fail(
            f"the sweep was not heard clearly (SNR {echo.snr_db:.0f} dB < {MIN_SNR_DB:.0f}): "
            "is the speaker on and loud enough, and the microphone near it?"
        )
    else:
        try:
            report.saved_to = echo.save(state_dir)
            report.say(f"echo path saved to {report.saved_to} ({len(echo.impulse_response)} taps)")
        except OSError as exc:
            report.say(f"WARN cannot save the echo path in {state_dir}: {exc.strerror} (use --state-dir)")
    if plot:
        plot_measurement(Path(plot), recorded, np.asarray(echo.impulse_response))
        report.say(f"plot written to {plot}")


def judge_hardware_aec(report: SelftestReport, residual_db: float) -> None:
    """The verdict on a device that cancels its own echo: how far down the sweep came back on its processed
    channel (the impulse response of a processed channel means nothing, so none is saved)."""
    report.residual_echo_db = residual_db
    if residual_db <= WORKING_RESIDUAL_DB:
        report.say(
            f"hardware echo cancellation works: the sweep comes back {residual_db:.0f} dB down "
            f"(at most {WORKING_RESIDUAL_DB:.0f} dB needed); edgevoice runs no canceller of its own on it"
        )
        return
    report.fail(
        f"hardware echo cancellation does not work: the sweep comes back {residual_db:.0f} dB down (more than "
        f"{WORKING_RESIDUAL_DB:.0f} dB). Check that [audio] input_channel is the device's processed channel, that "
        "output_device is the device itself (it cancels only what it plays), and its firmware; until then the "
        "daemon attenuates the microphone while it speaks"
    )


def report_xruns(report: SelftestReport, take: PlayRecord) -> None:
    """PortAudio's overflow and underflow flags during the play-and-record: none on a healthy device."""
    if not (take.overflows or take.underflows):
        report.say(f"audio: no overflow or underflow in {take.buffers} buffers")
        return
    report.say(
        f"WARN audio: {take.overflows} input overflow(s) and {take.underflows} output underflow(s) in "
        f"{take.buffers} buffers: the sound card was served too late (the measurement may be off). Stop what "
        "else uses the CPU (see `top`), or try another USB port or card"
    )


def check_led_and_button(
    config: Config, report: SelftestReport, pin_factory: Any | None, button_timeout_s: float
) -> None:
    import gpiozero

    factory = pin_factory
    try:
        if factory is None:
            factory = make_pin_factory(config.hardware.pin_factory)
    except HardwareError as exc:
        report.fail(f"GPIO: {exc}")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config.leds.enabled:
            try:
                show = LedShow(open_driver(config.leds, factory))
            except Exception as exc:
                report.fail(explain_gpio_error(exc, f"[leds] {config.leds.driver} LED"))
            else:
                show.start()
                shown = []
                for state in LOOKS:
                    shown.append(f"{state} ({show.show(state)})")
                    time.sleep(LED_STEP_S)
                show.close()
                report.say("LED walked through: " + ", ".join(shown))
        if config.button.enabled and button_timeout_s > 0:
            try:
                button = gpiozero.Button(config.button.pin, pull_up=config.button.active_low, pin_factory=factory)
            except Exception as exc:
                report.fail(explain_gpio_error(exc, f"button on GPIO{config.button.pin}"))
                return
            print(f"  press the button (GPIO{config.button.pin}) within {button_timeout_s:g} s ...", flush=True)
            started = time.monotonic()
            pressed = button.wait_for_press(timeout=button_timeout_s)
            button.close()
            if pressed:
                report.say(f"button: pressed after {time.monotonic() - started:.1f} s")
            else:
                report.fail(f"button: no press within {button_timeout_s:g} s (wiring: GPIO{config.button.pin} to GND)")


def selftest(
    config: Config,
    *,
    state_dir: Path,
    plot: str | None = None,
    button_timeout_s: float = 10.0,
    pin_factory: Any | None = None,
) -> SelftestReport:
    report = SelftestReport()
    print("edgevoice selftest", flush=True)
    check_echo_path(config, report, state_dir, plot)
    check_led_and_button(config, report, pin_factory, button_timeout_s)
    print(f"{'FAILED' if report.failures else 'PASSED'}: {len(report.failures)} problem(s)", flush=True)
    return report


def run_selftest(config_path: str | None, *, plot: str | None, button_timeout_s: float, state_dir: str | None) -> int:
    """`edgevoice selftest`: 0 if everything worked, 1 otherwise, 2 for a bad configuration."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"edgevoice: configuration error: {exc}")
        return 2
    report = selftest(config, state_dir=state_directory(state_dir), plot=plot, button_timeout_s=button_timeout_s)
    return 1 if report.failures else 0
