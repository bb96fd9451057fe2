"""Commands as typed values, read from a request's fields by their rules, with messages that say what was
wrong and what is allowed.

Every command is a frozen dataclass (a `Command`: a `DeviceCommand` the device runs, or a `ServerCommand`
about the connection) whose `read()` takes the fields it knows from `Args`, the JSON object of one request
(its fields other than `id` and `cmd`); `finish()` then refuses the ones nobody asked for, so a typo never
passes silently. Every refusal is a `RequestError(BAD_REQUEST)` that starts with the command's name.
The commands themselves, and their table, are in commands.py.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from edgevoice.control.errors import BAD_REQUEST, RequestError
from edgevoice.control.limits import MAX_TEXT


def kind_of(value: Any) -> str:
    """What a JSON value is, for a message ("a number", "an array", ...)."""
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


def did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False
    return True


def json_text(value: Any) -> str | None:
    """`value` as JSON text, or None if it cannot be valid JSON (1e400 parses as infinity; lone surrogates)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return None
    return text if valid_unicode(text) else None


class Args:
    """The fields of one request, read with their rules; `finish()` refuses the ones nobody asked for."""

    def __init__(self, cmd: str, raw: dict[str, Any], request_id: int | str | None) -> None:
        self.cmd, self.raw, self.request_id = cmd, raw, request_id
        self.known: list[str] = []

    def fail(self, message: str) -> RequestError:
        return RequestError(BAD_REQUEST, f"{self.cmd}: {message}", self.request_id)

    def allow(self, key: str) -> None:
        """`key` is a field of this command, read some other way (or not at all)."""
        self.known.append(key)

    def _get(self, key: str, required: bool) -> Any:
        self.known.append(key)
        value = self.raw.get(key)
        if value is None and required:
            strangers = [k for k in self.raw if k != key and k not in self.known]
            close = difflib.get_close_matches(key, strangers, n=1)
            raise self.fail(f'needs "{key}"' + (f' (you sent "{close[0][:64]}")' if close else ""))
        return value

    def text(self, key: str, *, max_len: int = MAX_TEXT) -> str:
        """A required string: present, not blank, at most `max_len` characters, valid Unicode."""
        value = self.optional_text(key, max_len=max_len, required=True)
        assert value is not None
        return value

    def optional_text(self, key: str, *, max_len: int = MAX_TEXT, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string, not {kind_of(value)}")
        if required and not value.strip():
            raise self.fail(f"{key} is empty")
        if len(value) > max_len:
            raise self.fail(f"{key} is {len(value)} characters long; the limit is {max_len}")
        if not valid_unicode(value):
            raise self.fail(f"{key} is not valid Unicode (it holds a lone surrogate)")
        return value

    def optional_number(self, key: str, lo: float, hi: float) -> float | None:
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{key} must be a number, not {kind_of(value)}")
        if not (lo <= value <= hi) or math.isnan(value):
            raise self.fail(f"{key} = {value!r}: must be between {lo:g} and {hi:g}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, not {kind_of(value)}")
        return value

    def names(self, key: str, allowed: Callable[[str], str | None], max_items: int) -> tuple[str, ...] | None:
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
        return tuple(dict.fromkeys(value))

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
                f"unknown field {unknown[0][:64]!r}{did_you_mean(unknown[0], self.known)}; allowed: {allowed}"
            )


@dataclass(frozen=True)
class Command:
    """A validated command: its name, and its arguments as typed fields."""

    name: ClassVar[str]

    @classmethod
    def read(cls, args: Args) -> Self:
        """The command from its request's fields (a command without arguments takes none)."""
        return cls()


@dataclass(frozen=True)
class DeviceCommand(Command):
    """A command the device runs: `DeviceControl.execute(command)` returns its result."""


@dataclass(frozen=True)
class ServerCommand(Command):
    """A command about the connection itself, which the control server runs."""
