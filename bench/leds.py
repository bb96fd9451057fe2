"""Benchmark of the LED animation: what a frame costs, and what the LED thread costs a running device.

    .venv/bin/python bench/leds.py

Each figure is printed beside its anchor, measured in the same run: a frame's cost beside the frame
period it must fit in (20 fps), and the LED thread's CPU while animating beside the same process idle.
The driver is a null bus (the cost of the SPI transfer itself depends on the board, not on edgevoice).
"""

from __future__ import annotations

import statistics
import time

from edgevoice.hw.led_drivers import Apa102Strip, apa102_frame
from edgevoice.hw.leds import LOOKS, LedShow, render
from edgevoice.hw.settings import LedSettings


class NullBus:
    def __init__(self) -> None:
        self.frames = 0

    def write(self, data: bytes) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


def ring(pixels: int) -> tuple[Apa102Strip, NullBus]:
    bus = NullBus()
    return Apa102Strip(LedSettings(driver="apa102", count=pixels, brightness=0.3), bus=bus), bus


def frame_us(pixels: int, repeat: int = 5, frames: int = 3000) -> float:
    runs = []
    look = LOOKS["thinking"]
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(frames):
            apa102_frame(render(look, "colour", pixels, i / 20, None), 0.3)
        runs.append((time.perf_counter() - start) / frames * 1e6)
    return statistics.median(runs)


def thread_cpu_ms_per_s(state: str, seconds: float = 2.0) -> tuple[float, int]:
    strip, bus = ring(12)
    show = LedShow(strip)
    show.show(state)
    show.start()
    cpu = time.process_time()
    time.sleep(seconds)
    used = time.process_time() - cpu
    show.close()
    return used / seconds * 1000, bus.frames


def idle_cpu_ms_per_s(seconds: float = 2.0) -> float:
    cpu = time.process_time()
    time.sleep(seconds)
    return (time.process_time() - cpu) / seconds * 1000


def main() -> None:
    print("LED animation (12-pixel APA102 ring, spinning), per frame:")
    for pixels in (3, 12):
        print(f"  {pixels:>2} pixels: render + encode {frame_us(pixels):6.1f} us   anchor: the frame period 50000 us")
    idle = idle_cpu_ms_per_s()
    for state in ("thinking", "listening"):
        cpu, frames = thread_cpu_ms_per_s(state)
        print(
            f"  LED thread, {state:<9}: {cpu:5.2f} ms CPU per s ({frames} frames in 2 s)"
            f"   anchor: the same process idle {idle:5.2f} ms per s"
        )


if __name__ == "__main__":
    main()
