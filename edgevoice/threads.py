"""Operating-system names for threads, so that `top -H`, py-spy and /proc/PID/task/*/comm tell them apart.

Python's `threading.Thread(name=...)` stays inside Python (before 3.14); the kernel shows every thread as
"python3" until the thread names itself with prctl(PR_SET_NAME). Shared by the leaves that run threads (the
PortAudio callbacks in audio, the LED animation in hw): a tiny OS utility, not a part of the device.
"""

from __future__ import annotations

import ctypes
import sys

_PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # the process has libc loaded


def name_this_thread(name: str) -> bool:
    """Give the calling thread `name` (at most 15 bytes are kept); True if the kernel took it."""
    if _libc is None:
        return False
    try:
        return _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0) == 0
    except (AttributeError, OSError):
        return False
