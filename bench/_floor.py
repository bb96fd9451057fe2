"""The anchors of bench/footprint.py: the least a process can do in edgevoice's place.

    python bench/_floor.py streams INPUT OUTPUT RATE FRAMES
        a bare PyAudio program holding the two streams edgevoice holds (16-bit mono, callback mode, the same
        devices, rate and frames per buffer) with callbacks that do nothing: the floor of idle CPU and RSS
    python bench/_floor.py numpy
        a bare interpreter that imports numpy: the floor of start-up time

Each tells systemd READY=1 (on $NOTIFY_SOCKET) once it is up, as `edgevoice run` does, so that the bench
measures every process the same way, and stops on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading


def notify_ready() -> None:
    path = os.environ.get("NOTIFY_SOCKET", "")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", "\0" + path[1:] if path.startswith("@") else path)


def wait_for_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


def device_index(pa: object, name: str, direction: str) -> int:
    """The index of the device called exactly `name` that has channels in `direction` (as edgevoice picks it)."""
    for i in range(pa.get_device_count()):  # type: ignore[attr-defined]
        info = pa.get_device_info_by_index(i)  # type: ignore[attr-defined]
        if info["name"] == name and info[f"max{direction.capitalize()}Channels"] > 0:
            return i
    raise SystemExit(f"_floor.py: no {direction} device named {name!r}")


def streams(input_name: str, output_name: str, rate: int, frames: int) -> None:
    import pyaudio

    silence = bytes(2 * frames)

    def on_input(data: bytes | None, count: int, timing: object, status: int) -> tuple[None, int]:
        return None, pyaudio.paContinue

    def on_output(data: bytes | None, count: int, timing: object, status: int) -> tuple[bytes, int]:
        return silence, pyaudio.paContinue

    pa = pyaudio.PyAudio()
    common = {"format": pyaudio.paInt16, "channels": 1, "rate": rate, "frames_per_buffer": frames}
    mic = pa.open(
        input=True, input_device_index=device_index(pa, input_name, "input"), stream_callback=on_input, **common
    )
    speaker = pa.open(
        output=True, output_device_index=device_index(pa, output_name, "output"), stream_callback=on_output, **common
    )
    notify_ready()
    try:
        wait_for_sigterm()
    finally:
        for stream in (mic, speaker):
            stream.stop_stream()
            stream.close()
        pa.terminate()


def main(argv: list[str]) -> None:
    if argv[:1] == ["numpy"]:
        import numpy  # noqa: F401  (the import is the point)

        notify_ready()
        wait_for_sigterm()
    elif argv[:1] == ["streams"] and len(argv) == 5:
        streams(argv[1], argv[2], int(argv[3]), int(argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
