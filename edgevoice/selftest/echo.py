"""The echo path from the speaker to the microphone, measured with a sine sweep, and the file it is kept in.

A logarithmic sweep is played; the recording is deconvolved by the sweep (regularised spectral division),
which gives the impulse response of everything between the samples we write and the samples we read:
output latency, the speaker, the air and the enclosure, the microphone, input latency. Its strongest tap
is the delay; the taps from a little before it on are what an echo canceller can start from.

The file (`echo_path.json` in the state directory) is JSON:

    format             "edgevoice-echo-path/1"
    rate               sample rate of the impulse response (Hz; the rate the measurement ran at)
    delay_samples      the strongest tap, counted from the first sample written (round trip, in samples)
    delay_ms           the same in milliseconds
    ir_start_samples   where `impulse_response` starts (delay_samples - PRE_TAPS, at least 0)
    impulse_response   taps (linear gain, floats): microphone sample = sum(ir[k] * speaker[n - start - k])
    gain_db            the strongest tap in dB (how loud the echo is)
    snr_db             peak tap against the response's noise floor (below 25 dB: not trustworthy)
    input_device, output_device, measured_at (ISO 8601, UTC)

On a device that cancels its own echo (`[audio] hardware_aec`), the processed channel has (almost) no echo
path to measure: `residual_echo_db` gives what matters there, how far down the sweep comes back.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "edgevoice-echo-path/1"
FILE_NAME = "echo_path.json"
SWEEP_S = 1.0
LEAD_S, TAIL_S = 0.3, 0.6  # silence before the sweep and after it (room for the delay and the reverberation)
F_LOW, F_HIGH = 150.0, 20000.0  # up to 0.45 x rate: a narrower sweep would band-limit the response
LEVEL = 0.4  # -8 dBFS: loud enough to measure, not so loud that a small speaker distorts
IR_MS = 128.0  # taps kept: a kiosk's echo tail (speexdsp's default filter length at this size)
PRE_TAPS = 32  # taps kept before the peak (the deconvolution smears a little)


def sweep(rate: int) -> np.ndarray:
    """The exponential sine sweep F_LOW -> min(F_HIGH, 0.45 x rate), float in [-LEVEL, LEVEL], faded in and out."""
    n = int(SWEEP_S * rate)
    f_high = min(F_HIGH, 0.45 * rate)
    t = np.arange(n) / rate
    k = np.log(f_high / F_LOW)
    signal = np.sin(2 * np.pi * F_LOW * SWEEP_S / k * (np.exp(t * k / SWEEP_S) - 1))
    fade = int(0.01 * rate)
    ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
    signal[:fade] *= ramp
    signal[-fade:] *= ramp[::-1]
    return LEVEL * signal


def measurement_signal(rate: int) -> np.ndarray:
    """What is played: silence, the sweep, silence."""
    return np.concatenate((np.zeros(int(LEAD_S * rate)), sweep(rate), np.zeros(int(TAIL_S * rate))))


@dataclass(frozen=True)
class EchoPath:
    """One measurement of the speaker-to-microphone path, from `measure`: the round-trip delay, the impulse
    response around it, how loud the echo is and how trustworthy (`snr_db`). `save` writes it atomically as
    the JSON file of the module docstring, for installers and tools; `load` reads it back. The daemon does
    not read it: the canceller finds its own delay."""

    rate: int
    delay_samples: int
    ir_start_samples: int
    impulse_response: list[float] = field(repr=False)
    gain_db: float
    snr_db: float
    input_device: str = ""
    output_device: str = ""
    measured_at: str = ""
    format: str = FORMAT

    @property
    def delay_ms(self) -> float:
        return 1000 * self.delay_samples / self.rate

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILE_NAME
        data = asdict(self)
        data["delay_ms"] = round(self.delay_ms, 3)
        data["impulse_response"] = [float(f"{v:.6g}") for v in self.impulse_response]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> EchoPath:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not an {FORMAT} file")
        data.pop("delay_ms", None)
        return cls(**data)


def measure(played: np.ndarray, recorded: np.ndarray, rate: int, *, devices: tuple[str, str] = ("", "")) -> EchoPath:
    """The echo path from `played` (what was written, float) to `recorded` (what was read, same rate)."""
    n = 1 << int(np.ceil(np.log2(len(played) + len(recorded))))
    x = np.fft.rfft(played, n)
    y = np.fft.rfft(recorded.astype(np.float64) / 32768, n)  # both sides in full-scale units
    power = np.abs(x) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    in_band = (freqs >= F_LOW) & (freqs <= min(F_HIGH, 0.45 * rate))  # outside the sweep there is nothing to divide
    h = np.fft.irfft(np.where(in_band, y * np.conj(x) / (power + 1e-6 * power.max()), 0), n)[: len(recorded)]
    peak = int(np.argmax(np.abs(h)))
    start = max(0, peak - PRE_TAPS)
    taps = int(IR_MS / 1000 * rate)
    ir = h[start : start + taps]
    # The measurement's noise: the response away from the echo (before it, and after its tail).
    rest = np.concatenate((h[: max(0, start - PRE_TAPS)], h[start + taps + int(0.05 * rate) :]))
    noise = float(np.sqrt(np.mean(rest**2))) if rest.size else 0.0
    peak_value = float(abs(h[peak]))
    return EchoPath(
        rate=rate,
        delay_samples=peak,
        ir_start_samples=start,
        impulse_response=ir.tolist(),
        gain_db=20 * float(np.log10(max(peak_value, 1e-12))),
        snr_db=20 * float(np.log10(max(peak_value, 1e-12) / max(noise, 1e-12))),
        input_device=devices[0],
        output_device=devices[1],
        measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def residual_echo_db(played: np.ndarray, recorded: np.ndarray, rate: int) -> float:
    """How far down the sweep comes back (dB): the recording's energy from the sweep's start to the end of
    the silence after it (which holds the delay and the room's ringing), less the noise measured in the
    silence before it, over the energy played (`played` float full scale, `recorded` int16, same rate)."""
    lead, end = int(LEAD_S * rate), len(played)
    x = recorded.astype(np.float64) / 32768
    noise = x[lead // 4 : lead]  # the silence before the sweep, once the streams have settled
    noise_power = float(np.mean(noise**2)) if noise.size else 0.0
    window = x[lead : min(end, len(x))]
    echo = max(float(np.sum(window**2)) - noise_power * window.size, 1e-12)
    return 10 * float(np.log10(echo / max(float(np.sum(played[lead:end] ** 2)), 1e-12)))
