"""A small PNG of the selftest's measurement: the recorded sweep above, the impulse response below.

Written with zlib and struct (a PNG is a signature and three chunks), because one grey-scale plot for an
installer is not worth matplotlib and its dependencies on a Pi.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

WIDTH, PANEL_HEIGHT, MARGIN = 800, 200, 8
INK, AXIS, PAPER = 0, 170, 255


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write an 8-bit grey-scale image (rows x columns of uint8)."""
    height, width = pixels.shape
    raw = b"".join(b"\0" + pixels[row].astype(np.uint8).tobytes() for row in range(height))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    )


def _panel(signal: np.ndarray) -> np.ndarray:
    """The signal drawn as a min/max envelope per column, scaled to its own peak, with a zero line."""
    panel = np.full((PANEL_HEIGHT, WIDTH), PAPER, np.uint8)
    middle = PANEL_HEIGHT // 2
    panel[middle, :] = AXIS
    if signal.size == 0:
        return panel
    scale = float(np.max(np.abs(signal))) or 1.0
    half = middle - MARGIN
    for column, part in enumerate(np.array_split(signal.astype(np.float64), WIDTH)):
        if part.size == 0:
            continue
        top = middle - round(part.max() / scale * half)
        bottom = middle - round(part.min() / scale * half)
        panel[min(top, bottom) : max(top, bottom) + 1, column] = INK
    return panel


def plot_measurement(path: Path, recorded: np.ndarray, impulse_response: np.ndarray) -> None:
    separator = np.full((2, WIDTH), AXIS, np.uint8)
    write_png(path, np.vstack((_panel(recorded), separator, _panel(impulse_response))))
