"""Every limit a client of the control socket meets, in one place (`hello` reports them; the docs list them)."""

from __future__ import annotations

MAX_LINE = 64 * 1024  # bytes of one incoming line, without its newline
MAX_OUT_LINE = 1024 * 1024  # what a client must be ready to read (events are a few hundred bytes in practice)
MAX_TEXT = 4096  # characters of `say` / `speak` / a prompt
MAX_DESCRIPTION = 1024  # characters of a tool's description
MAX_TOOLS = 64  # per client
MAX_ID = 128  # characters of a string id
MAX_SAFE_INT = 2**53 - 1  # ids stay exact in JavaScript
MAX_PATH = 4096  # characters of an image's file name
MAX_IMAGE = 4 * 1024 * 1024  # bytes of one picture, decoded
TIMEOUT_RANGE = (0.1, 300.0)  # seconds a tool may take to answer
DEFAULT_TOOL_TIMEOUT_S = 10.0
