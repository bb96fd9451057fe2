"""Every error code the control socket sends, in one place (docs/control-protocol.md lists the same ones).

An error reply is `{"id": ..., "ok": false, "error": {"code": ..., "message": ...}}`: clients match on the
code; the message is for a person and says what to do. Some codes come from the protocol (a line that is not
a usable request), some from the device (`api.ControlError`: a command it refuses now), and some are sent
with id null just before the server closes the connection.
"""

from __future__ import annotations

# The line is not a usable request (raised as `RequestError` by the parser).
BAD_JSON = "bad_json"  # the line is not UTF-8 JSON
LINE_TOO_LONG = "line_too_long"
BAD_REQUEST = "bad_request"  # not an object, a missing, wrong-typed or unknown field, an unusable image
UNKNOWN_COMMAND = "unknown_command"
RATE_LIMITED = "rate_limited"

# The device refuses the command (raised as `api.ControlError` by the device, or by the server for it).
INVALID_STATE = "invalid_state"  # not now: e.g. `stop` while not listening, `listen` while muted or in error
NOT_FOUND = "not_found"  # no such thing: e.g. a `tool.result` for a call that is not waiting
BUSY = "busy"  # a resource is taken: e.g. a tool name already served by someone else
UNAVAILABLE = "unavailable"  # the device cannot do it at all (e.g. no volume control on this sound card)

INTERNAL = "internal"  # a bug in edgevoice (logged); the connection stays usable

# Sent with id null just before the server closes the connection.
FORBIDDEN = "forbidden"
TOO_MANY_CLIENTS = "too_many_clients"
IDLE = "idle"  # connected and sent no request in time
FLOOD = "flood"
SHUTTING_DOWN = "shutting_down"

ERROR_CODES = (  # every code, in the order of the docs' table
    BAD_JSON,
    LINE_TOO_LONG,
    BAD_REQUEST,
    UNKNOWN_COMMAND,
    RATE_LIMITED,
    INVALID_STATE,
    NOT_FOUND,
    BUSY,
    UNAVAILABLE,
    INTERNAL,
    FORBIDDEN,
    TOO_MANY_CLIENTS,
    IDLE,
    FLOOD,
    SHUTTING_DOWN,
)
DEVICE_CODES = (BAD_REQUEST, INVALID_STATE, NOT_FOUND, BUSY, UNAVAILABLE)  # what a device's ControlError carries


class RequestError(Exception):
    """A line or payload that is not a usable request; `request_id` is its id when it could be read (else None)."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
