"""A CPU too busy for the sound card, made on demand: a thread that holds the interpreter for a while.

PyAudio runs every PortAudio callback under the GIL. A thread spinning in Python with a long switch interval
keeps it for `seconds`, so the callbacks come that much too late and the sound card overflows or underflows,
as it would on a CPU that something else keeps busy.
"""

from __future__ import annotations

import sys
import threading
import time


def hold_the_interpreter(after_s: float, seconds: float) -> threading.Thread:
    """From `after_s` on, hold the GIL for `seconds` (in a thread; join it to wait for the end)."""

    def spin() -> None:
        time.sleep(after_s)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(seconds)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(interval)

    thread = threading.Thread(target=spin, name="busy", daemon=True)
    thread.start()
    return thread
