"""The control protocol on the wire: JSON Lines over a Unix stream socket (see docs/control-protocol.md).

One UTF-8 JSON object per line, at most `MAX_LINE` bytes. A request `{"id": 7, "cmd": "say", "text": "hi"}`
gets exactly one reply, `{"id": 7, "ok": true, "result": {...}}` or
`{"id": 7, "ok": false, "error": {"code": "...", "message": "..."}}`; events `{"event": "state", ...}` go to
subscribers. This module is pure: it splits bytes into lines, turns a line into a `Request` (its id and its
typed command, validated by the table in commands.py) or a `RequestError`, and encodes what goes out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgevoice.control.args import Command, kind_of, valid_unicode
from edgevoice.control.commands import parse_command
from edgevoice.control.errors import BAD_JSON, BAD_REQUEST, RequestError
from edgevoice.control.limits import MAX_ID, MAX_LINE, MAX_SAFE_INT

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Request:
    """One validated request: the id to answer with (None without one) and the command."""

    id: int | str | None
    command: Command


# ---- lines ------------------------------------------------------------------------------------------


class LineSplitter:
    """Bytes in, complete lines out; a line over `max_line` comes out once as None and is skipped to its end."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | None]:
        buf = self._buf
        buf += data
        lines: list[bytes | None] = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False  # the over-long line was reported when it passed the limit
            elif end - start > self.max_line + (buf[end - 1 : end] == b"\r"):
                lines.append(None)
            else:
                lines.append(bytes(buf[start:end]))
            start = end + 1
        del buf[:start]
        if len(buf) > self.max_line + 1:  # no newline yet and already too long: report it, drop what came
            if not self._discarding:
                lines.append(None)
                self._discarding = True
            buf.clear()
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._buf)


def encode(message: dict[str, Any]) -> bytes:
    """One line of compact UTF-8 JSON (NaN and infinities are not JSON: ValueError)."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "replace") + b"\n"


def reply(request_id: int | str | None, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def error_reply(request_id: int | str | None, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


# ---- requests -----------------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: bytes) -> Request:
    """A validated request, or RequestError saying what is wrong with the line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(BAD_JSON, f"the line is not valid UTF-8 (byte {exc.start})") from None
    try:
        message = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise RequestError(BAD_JSON, "the line is not usable JSON: nested too deeply") from None
    except ValueError as exc:
        raise RequestError(BAD_JSON, f"the line is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise RequestError(BAD_REQUEST, f"a request is a JSON object, not {kind_of(message)}")
    request_id = message.get("id")
    if request_id is not None and not valid_id(request_id):
        raise RequestError(
            BAD_REQUEST, f"id must be a whole number (up to 2^53) or a string of up to {MAX_ID} characters"
        )
    cmd = message.get("cmd")
    if cmd is None:
        raise RequestError(
            BAD_REQUEST, 'a request needs "cmd" (the command), e.g. {"id": 1, "cmd": "status"}', request_id
        )
    if not isinstance(cmd, str):
        raise RequestError(BAD_REQUEST, f"cmd must be a string, not {kind_of(cmd)}", request_id)
    payload = {k: v for k, v in message.items() if k not in ("id", "cmd")}
    return Request(request_id, parse_command(cmd, payload, request_id))


def request_id_of(line: bytes | None) -> int | str | None:
    """The id of a line that will not be run (e.g. rate-limited), if it can be read."""
    if line is None:
        return None
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    return request_id if valid_id(request_id) else None


def valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INT
    return isinstance(value, str) and len(value) <= MAX_ID and valid_unicode(value)  # it must go back as it came
