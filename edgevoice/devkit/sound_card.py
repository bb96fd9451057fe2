"""A scripted microphone and a recording speaker on machines without sound hardware.

Both go through the real path a Pi uses (PyAudio -> PortAudio -> alsa-lib), built from alsa-lib's `file`
plugin: the PCM `ev_mic` returns the samples of `mic.raw` as if they were being captured, and `ev_spk`
records everything played into `speaker.raw`. The `file` plugin alone runs as fast as the CPU allows, so
its slave is a private PulseAudio null sink that paces both at real time (callbacks every 20 ms, as on a
sound card). `ev_mic_fast` / `ev_spk_fast` are the same without pacing, for tests where time is not the
point. alsa-lib reads its configuration once per process: call `apply_to_process()` before PortAudio
starts, and use one card per process.

For echo tests there is also a room: `ev_room_spk` plays into the sink `ev_sink` like the speaker above, and
`ev_room_mic` captures from a second sink, `ev_room`. Something standing for the room (tests/room.py) reads
what was played from `ev_room_in`, adds the room's echo and a visitor, and writes it to `ev_room_out`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import wave
from pathlib import Path

import numpy as np

MIC, SPEAKER, MIC_FAST, SPEAKER_FAST = "ev_mic", "ev_spk", "ev_mic_fast", "ev_spk_fast"
ROOM_MIC, ROOM_SPEAKER, ROOM_IN, ROOM_OUT = "ev_room_mic", "ev_room_spk", "ev_room_in", "ev_room_out"


class VirtualSoundCardError(Exception):
    """The virtual sound card cannot start; the message names the missing piece."""


class VirtualSoundCard:
    """A sound card made of files under `workdir`, for tests and the demo (see the module docstring for its
    PCMs). Use it as a context manager (or `start()` / `stop()`), then `apply_to_process()` before PortAudio
    starts, or pass `environment` to a child process. Script the microphone with `write_mic` and read back
    what was played with `read_speaker` (mono, at `rate`). Needs `pulseaudio` installed."""

    def __init__(self, workdir: Path, rate: int = 48000) -> None:
        self.workdir = Path(workdir).resolve()
        self.rate = rate
        self.mic_file = self.workdir / "mic.raw"
        self.speaker_file = self.workdir / "speaker.raw"
        self.mic_fast_file = self.workdir / "mic_fast.raw"
        self.speaker_fast_file = self.workdir / "speaker_fast.raw"
        self.alsa_config = self.workdir / "asound.conf"
        self._socket = self.workdir / "pulse" / "native"
        self._pulse: subprocess.Popen[bytes] | None = None

    @property
    def environment(self) -> dict[str, str]:
        return {
            "ALSA_CONFIG_PATH": str(self.alsa_config),
            "PULSE_SERVER": f"unix:{self._socket}",
            "PULSE_SINK": "ev_sink",
            "PULSE_SOURCE": "ev_sink.monitor",
        }

    def start(self) -> None:
        """Write the ALSA configuration and start the private PulseAudio server."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for path in (self.mic_file, self.mic_fast_file):
            if not path.exists():
                path.write_bytes(b"\0\0" * self.rate)
        self.alsa_config.write_text(self._alsa_config())
        self._start_pulse()

    def apply_to_process(self) -> None:
        """Point this process's alsa-lib (and libpulse) at the card; before PortAudio starts."""
        os.environ.update(self.environment)

    def write_mic(self, samples: np.ndarray, *, fast: bool = False) -> None:
        """What the microphone will "hear" (int16, or int32 for a 32-bit device; at `rate`) from the next time
        it is opened. Past its end the file plugin repeats old data: pad the script with enough silence.
        """
        path = self.mic_fast_file if fast else self.mic_file
        samples = np.asarray(samples)
        path.write_bytes(samples.astype("<i4" if samples.dtype == np.int32 else "<i2").tobytes())

    def read_speaker(self, *, fast: bool = False) -> np.ndarray:
        """Everything played so far (int16 mono at `rate`)."""
        path = self.speaker_fast_file if fast else self.speaker_file
        data = path.read_bytes() if path.exists() else b""
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) the clock that paces the card, as a hung sound card would: callbacks stop coming."""
        if self._pulse is not None:
            self._pulse.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self) -> None:
        if self._pulse is not None:
            self._pulse.terminate()
            try:
                self._pulse.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._pulse.kill()
                self._pulse.wait()
            self._pulse = None

    def __enter__(self) -> VirtualSoundCard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _alsa_config(self) -> str:
        def pcm(name: str, slave: str, path: Path, capture: bool) -> str:
            files = f'file "/dev/null" infile "{path}"' if capture else f'file "{path}" truncate true perm 0644'
            return f'pcm.{name} {{ type file slave.pcm {slave} {files} format "raw" }}\n'

        return (
            "# written by edgevoice.devkit.sound_card: a scripted microphone and a recording speaker\n"
            "pcm.pulse { type pulse }\nctl.pulse { type pulse }\n"
            + pcm(MIC, '"pulse"', self.mic_file, True)
            + pcm(SPEAKER, '"pulse"', self.speaker_file, False)
            + pcm(MIC_FAST, "{ type null }", self.mic_fast_file, True)
            + pcm(SPEAKER_FAST, "{ type null }", self.speaker_fast_file, False)
            + f'pcm.!default {{ type asym playback.pcm "{SPEAKER}" capture.pcm "{MIC}" }}\n'
            + f'pcm.{ROOM_SPEAKER} {{ type pulse device "ev_sink" }}\n'
            + f'pcm.{ROOM_IN} {{ type pulse device "ev_sink.monitor" }}\n'
            + f'pcm.{ROOM_OUT} {{ type pulse device "ev_room" }}\n'
            + f'pcm.{ROOM_MIC} {{ type pulse device "ev_room.monitor" }}\n'
        )

    def _start_pulse(self) -> None:
        binary = shutil.which("pulseaudio")
        if binary is None:
            raise VirtualSoundCardError(
                "pulseaudio is not installed; it paces the virtual sound card in real time "
                "(apt-get install pulseaudio libasound2-plugins)"
            )
        home = self.workdir / "pulse"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
        env.pop("PULSE_SERVER", None)
        log = (self.workdir / "pulseaudio.log").open("wb")
        self._pulse = subprocess.Popen(
            [
                binary, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes",
                "--log-target=stderr",
                "-L", f"module-native-protocol-unix auth-anonymous=1 socket={self._socket}",
                "-L", f"module-null-sink sink_name=ev_sink rate={self.rate} channels=1 format=s16le norewinds=1",
                "-L", f"module-null-sink sink_name=ev_room rate={self.rate} channels=1 format=s16le norewinds=1",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while not self._socket.exists():
            if self._pulse.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.workdir / "pulseaudio.log").read_text(errors="replace")[-500:]
                raise VirtualSoundCardError(f"the private PulseAudio server did not start: {tail}")
            time.sleep(0.02)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the rate of a 16-bit WAV file (the first channel if it has several)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV files are supported")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return data[:: wav.getnchannels()].astype(np.int16), wav.getframerate()
