"""The control protocol: JSON Lines over a Unix stream socket (see docs/control-protocol.md).

One UTF-8 JSON object per line, at most `MAX_LINE` bytes. A request `{"id": 7, "cmd": "say", "text": "hi"}`
gets exactly one reply, `{"id": 7, "ok": true, "result": {...}}` or
`{"id": 7, "ok": false, "error": {"code": "...", "message": "..."}}`; events `{"event": "state", ...}` go to
subscribers. This module is pure: it splits bytes into lines, turns a line into a validated `Request` or a
`RequestError`, and encodes what goes out. Every message says what was wrong and what is allowed.
"""

from __future__ import annotations

import binascii
import difflib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgevoice.control.api import EVENTS

PROTOCOL_VERSION = 1
MAX_LINE = 64 * 1024  # bytes of one incoming line, without its newline
MAX_OUT_LINE = 1024 * 1024  # what a client must be ready to read (events are a few hundred bytes in practice)
MAX_TEXT = 4096  # characters of `say` / `speak` / a prompt
MAX_DESCRIPTION = 1024
MAX_TOOLS = 64  # per client
MAX_ID = 128  # characters of a string id
MAX_SAFE_INT = 2**53 - 1  # ids stay exact in JavaScript
TIMEOUT_RANGE = (0.1, 300.0)
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CALL_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces
IMAGE_MIMES = ("image/jpeg", "image/png", "image/webp")
SERVER_EVENTS = ("dropped", "tool_cancelled")  # sent by the control server itself
SUBSCRIBABLE = EVENTS

# Protocol errors (the device adds its own: see api.py).
BAD_JSON = "bad_json"  # the line is not UTF-8 JSON
LINE_TOO_LONG = "line_too_long"
BAD_REQUEST = "bad_request"  # not an object, a missing or wrong-typed field, an unknown field
UNKNOWN_COMMAND = "unknown_command"
RATE_LIMITED = "rate_limited"
INTERNAL = "internal"
# Sent with id null just before the server closes the connection.
FORBIDDEN = "forbidden"
TOO_MANY_CLIENTS = "too_many_clients"
FLOOD = "flood"
SHUTTING_DOWN = "shutting_down"


class RequestError(Exception):
    """A line that is not a usable request; `request_id` is its id when it could be read (else None)."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    timeout_s: float


@dataclass(frozen=True)
class Request:
    id: int | str | None
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


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
        raise RequestError(BAD_REQUEST, f"a request is a JSON object, not {_kind(message)}")
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
        raise RequestError(BAD_REQUEST, f"cmd must be a string, not {_kind(cmd)}", request_id)
    spec = COMMANDS.get(cmd)
    if spec is None:
        raise RequestError(
            UNKNOWN_COMMAND,
            f"unknown command {cmd[:64]!r}{_did_you_mean(cmd, COMMANDS)}; commands: {', '.join(COMMANDS)}",
            request_id,
        )
    args = Args(cmd, {k: v for k, v in message.items() if k not in ("id", "cmd")}, request_id)
    parsed = spec(args)
    args.finish()
    return Request(request_id, cmd, parsed)


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
    return isinstance(value, str) and len(value) <= MAX_ID and _valid_unicode(value)  # it must go back as it came


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _did_you_mean(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False
    return True


def _json_text(value: Any) -> str | None:
    """`value` as JSON text, or None if it cannot be valid JSON (1e400 parses as infinity; lone surrogates)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return None
    return text if _valid_unicode(text) else None


class Args:
    """The fields of one request, read with their rules; `finish()` refuses the ones nobody asked for."""

    def __init__(self, cmd: str, raw: dict[str, Any], request_id: int | str | None) -> None:
        self.cmd, self.raw, self.request_id = cmd, raw, request_id
        self.known: list[str] = []

    def fail(self, message: str) -> RequestError:
        return RequestError(BAD_REQUEST, f"{self.cmd}: {message}", self.request_id)

    def _get(self, key: str, required: bool) -> Any:
        self.known.append(key)
        value = self.raw.get(key)
        if value is None and required:
            strangers = [k for k in self.raw if k != key and k not in self.known]
            close = difflib.get_close_matches(key, strangers, n=1)
            raise self.fail(f'needs "{key}"' + (f' (you sent "{close[0][:64]}")' if close else ""))
        return value

    def text(self, key: str, *, required: bool = True, max_len: int = MAX_TEXT) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string, not {_kind(value)}")
        if required and not value.strip():
            raise self.fail(f"{key} is empty")
        if len(value) > max_len:
            raise self.fail(f"{key} is {len(value)} characters long; the limit is {max_len}")
        if not _valid_unicode(value):
            raise self.fail(f"{key} is not valid Unicode (it holds a lone surrogate)")
        return value

    def number(self, key: str, lo: float, hi: float, *, required: bool = True) -> float | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{key} must be a number, not {_kind(value)}")
        if not (lo <= value <= hi) or math.isnan(value):
            raise self.fail(f"{key} = {value!r}: must be between {lo:g} and {hi:g}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, not {_kind(value)}")
        return value

    def names(self, key: str, allowed: Callable[[str], str | None], max_items: int) -> list[str] | None:
        """A list of distinct strings, each checked by `allowed` (which returns a complaint or None)."""
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{key} must be an array of strings")
        if len(value) > max_items:
            raise self.fail(f"{key} has {len(value)} entries; the limit is {max_items}")
        for name in value:
            complaint = allowed(name)
            if complaint:
                raise self.fail(complaint)
        return list(dict.fromkeys(value))

    def raw_value(self, key: str, *, required: bool = True) -> Any:
        """Any JSON value, null included (present or not is what `required` checks)."""
        self.known.append(key)
        if key not in self.raw:
            if required:
                raise self.fail(f'needs "{key}"')
            return None
        return self.raw[key]

    def finish(self) -> None:
        unknown = [k for k in self.raw if k not in self.known]
        if unknown:
            allowed = ", ".join(self.known) or "no other fields"
            raise self.fail(
                f"unknown field {unknown[0][:64]!r}{_did_you_mean(unknown[0], self.known)}; allowed: {allowed}"
            )


# ---- the commands -------------------------------------------------------------------------------------


def _no_args(args: Args) -> dict[str, Any]:
    return {}


def _text_arg(args: Args) -> dict[str, Any]:
    return {"text": args.text("text")}


def _tool_name_problem(name: str) -> str | None:
    if TOOL_NAME.fullmatch(name):
        return None
    return f"tool name {name[:80]!r} is not allowed: use 1-64 letters, digits, _ or -"


def _event_name_problem(name: str) -> str | None:
    if name in SUBSCRIBABLE:
        return None
    return f"unknown event {name[:64]!r}{_did_you_mean(name, SUBSCRIBABLE)}; events: {', '.join(SUBSCRIBABLE)}"


def _image(args: Args) -> dict[str, Any]:
    data, path = args.raw.get("data"), args.raw.get("path")
    if (data is None) == (path is None):
        raise args.fail('give either "data" (base64) or "path" (an absolute file name), not both or neither')
    image: dict[str, Any] = {}
    if data is not None:
        encoded = args.text("data", max_len=MAX_LINE)
        assert encoded is not None
        try:
            image["data"] = binascii.a2b_base64(encoded, strict_mode=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: characters outside ASCII
            raise args.fail(f"data is not valid base64: {exc}") from None
        args.known.append("path")
    else:
        image["path"] = args.text("path", max_len=4096)
        args.known.append("data")
        if not image["path"].startswith("/"):
            raise args.fail(f"path must be absolute (it is read by the daemon), not {image['path'][:200]!r}")
        if "\0" in image["path"]:
            raise args.fail("path holds a NUL character: no file has such a name")
    mime = args.text("mime", required=False, max_len=64)
    if mime is not None and mime not in IMAGE_MIMES:
        raise args.fail(f"mime {mime[:64]!r} is not supported; use one of {', '.join(IMAGE_MIMES)}")
    image["mime"] = mime
    image["prompt"] = args.text("prompt", required=False)
    image["more"] = args.boolean("more", False)
    if image["more"] and path is not None:
        raise args.fail('"more" (a chunk of a larger image) goes with "data", not with "path"')
    return image


def _tools_register(args: Args) -> dict[str, Any]:
    tools = args.raw_value("tools")
    if not isinstance(tools, list) or not tools:
        raise args.fail('tools must be a non-empty array of {"name", "description", "parameters", "timeout_s"}')
    if len(tools) > MAX_TOOLS:
        raise args.fail(f"{len(tools)} tools: the limit is {MAX_TOOLS} per client")
    specs: dict[str, ToolSpec] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise args.fail(f"tools[{i}] must be an object, not {_kind(tool)}")
        spec = _tool_spec(Args(f"{args.cmd}: tools[{i}]", tool, args.request_id))
        if spec.name in specs:
            raise args.fail(f"the tool {spec.name!r} is listed twice")
        specs[spec.name] = spec
    return {"tools": list(specs.values())}


def _tool_spec(args: Args) -> ToolSpec:
    name = args.text("name", max_len=200)
    assert name is not None
    complaint = _tool_name_problem(name)
    if complaint:
        raise args.fail(complaint)
    description = args.text("description", required=False, max_len=MAX_DESCRIPTION) or ""
    parameters = args.raw.get("parameters")
    args.known.append("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise args.fail('parameters must be a JSON Schema object: {"type": "object", "properties": {...}}')
    if _json_text(parameters) is None:
        raise args.fail("parameters hold a number too large for JSON or a lone surrogate (not valid Unicode)")
    timeout = args.number("timeout_s", *TIMEOUT_RANGE, required=False)
    args.finish()
    return ToolSpec(name, description, parameters, 10.0 if timeout is None else timeout)


def _tools_unregister(args: Args) -> dict[str, Any]:
    return {"names": args.names("names", _tool_name_problem, MAX_TOOLS)}


def _tool_result(args: Args) -> dict[str, Any]:
    call_id = args.text("call_id", max_len=200)
    assert call_id is not None
    if not CALL_ID.fullmatch(call_id):
        raise args.fail(f"call_id {call_id[:80]!r} is not one the device sent (printable ASCII, up to 128)")
    if "output" not in args.raw:
        raise args.fail('needs "output" (a string, or any JSON value, which is sent as JSON text)')
    output = args.raw_value("output")
    text = output if isinstance(output, str) and _valid_unicode(output) else _json_text(output)
    if text is None:
        raise args.fail("output holds a number too large for JSON or a lone surrogate (not valid Unicode)")
    return {"call_id": call_id, "output": text}


def _subscribe(args: Args) -> dict[str, Any]:
    return {"events": args.names("events", _event_name_problem, len(SUBSCRIBABLE))}


def _volume(args: Args) -> dict[str, Any]:
    return {"level": args.number("level", 0.0, 1.0, required=False)}


COMMANDS: dict[str, Callable[[Args], dict[str, Any]]] = {
    "hello": _no_args,
    "status": _no_args,
    "listen": _no_args,
    "stop": _no_args,
    "cancel": _no_args,
    "end": _no_args,
    "say": _text_arg,
    "speak": _text_arg,
    "image": _image,
    "tools.register": _tools_register,
    "tools.unregister": _tools_unregister,
    "tool.result": _tool_result,
    "subscribe": _subscribe,
    "unsubscribe": _no_args,
    "mute": _no_args,
    "unmute": _no_args,
    "volume": _volume,
}
