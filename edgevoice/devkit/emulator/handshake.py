"""The Realtime emulator's opening handshake: its rules, error answers, credentials, redacted records.

Kept apart from the server so the rules can be read in one place; nothing here touches a session. The
server asks `HandshakeRules.decide` about every upgrade request and records the answer it gave.
"""

from __future__ import annotations

import collections
import enum
import hmac
import http
import json
import urllib.parse
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .script import EmulatorSettings

REALTIME_PATHS = ("/v1/realtime", "/openai/v1/realtime")  # OpenAI, Azure OpenAI (GA v1)
REDACTED = "[REDACTED]"
HTTP_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
}


class Admission(enum.Enum):
    """What the handshake decided for an upgraded connection."""

    SESSION = "session"
    BAD_KEY = "bad_key"  # bad_key_mode="close3000": error event, then close 3000
    BETA = "beta"  # OpenAI-Beta header: beta_api_shape_disabled, then close 4000


class EmulatorConnection(ServerConnection):
    """A websockets server connection that carries the handshake's verdict to the handler."""

    admission: Admission = Admission.SESSION
    model: str = ""
    refusal_message: str = ""


class HandshakeRules:
    """Decides each opening handshake, in this order: a scripted failure, the path (404), the `model`
    query parameter (400), the key (401, or an upgrade refused later with 3000), the beta header (4000)."""

    def __init__(self) -> None:
        self._scripted_failures: collections.deque[tuple[int, float | None]] = collections.deque()

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `count` handshakes with HTTP `status` (and a Retry-After header if given)."""
        if not (400 <= int(http.HTTPStatus(status)) <= 599):
            raise ValueError(f"fail_handshakes needs an HTTP error status (4xx/5xx), got {status}")
        self._scripted_failures.extend([(status, retry_after)] * count)

    def decide(self, connection: EmulatorConnection, request: Request, settings: EmulatorSettings) -> Response | None:
        """The HTTP answer that refuses `request`, or None to upgrade (with the verdict on `connection`)."""
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if self._scripted_failures:
            status, retry_after = self._scripted_failures.popleft()
            response = http_error(connection, status, f"Injected handshake failure (HTTP {status}).")
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
        if url.path not in REALTIME_PATHS:
            message = (
                f"No Realtime endpoint at {url.path[:200]!r}; use /v1/realtime (OpenAI) or /openai/v1/realtime (Azure)."
            )
            return http_error(connection, 404, message)
        if not query.get("model"):
            return http_error(
                connection, 400, "Missing required parameter: 'model'.", code="missing_required_parameter"
            )
        key_ok = key_accepted(request.headers, settings.api_key)
        if not key_ok and settings.bad_key_mode == "http401":
            return http_error(connection, 401, bad_key_message(request.headers))
        connection.model = query["model"]
        if not key_ok:
            connection.admission = Admission.BAD_KEY
            connection.refusal_message = bad_key_message(request.headers)
        elif request.headers.get_all("OpenAI-Beta"):
            connection.admission = Admission.BETA
        return None


@dataclass(frozen=True)
class HandshakeRecord:
    """One opening handshake as the emulator saw and answered it (101 = accepted).

    Header names are lower-case; credentials (Authorization, api-key, an `openai-insecure-api-key.*`
    subprotocol, an `api-key` query parameter) are replaced by "[REDACTED]" so records can be logged.
    """

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int

    @classmethod
    def of(cls, request: Request, status: int) -> HandshakeRecord:
        """The record of `request`, answered with `status`, with every credential redacted."""
        url = urllib.parse.urlsplit(request.path)
        query = {
            key: (REDACTED if key.lower() == "api-key" else value)
            for key, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        }
        return cls(url.path, query, redacted_headers(request.headers), status)


def http_error(connection: ServerConnection, status: int, message: str, code: str | None = None) -> Response:
    """An HTTP error answer with an OpenAI-style JSON body."""
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": code or HTTP_ERROR_CODES.get(status, "http_error"),
        }
    }
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def presented_key(headers: Headers) -> str | None:
    """The credential a client presented: `Authorization: Bearer <key>` or Azure's `api-key: <key>`."""
    for value in headers.get_all("Authorization"):
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for value in headers.get_all("api-key"):
        if value.strip():
            return value.strip()
    return None


def key_accepted(headers: Headers, expected: str | None) -> bool:
    """True when no key is required, or the presented one matches (compared in constant time)."""
    if expected is None:
        return True
    presented = presented_key(headers)
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def bad_key_message(headers: Headers) -> str:
    presented = presented_key(headers)
    if presented is None:
        return (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    masked = f"{presented[:3]}***{presented[-4:]}" if len(presented) > 12 else "***"
    return f"Incorrect API key provided: {masked}."


def redacted_headers(headers: Headers) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers.raw_items():
        lower = name.lower()
        if lower == "authorization":
            value = f"{value.partition(' ')[0]} {REDACTED}"
        elif lower == "api-key":
            value = REDACTED
        elif lower == "sec-websocket-protocol":
            protocols = (p.strip() for p in value.split(","))
            value = ", ".join(REDACTED if p.startswith("openai-insecure-api-key.") else p for p in protocols)
        result[lower] = f"{result[lower]}, {value}" if lower in result else value
    return result


def close_reason(reason: str) -> str:
    """Clip a close reason to the 123 bytes a close frame can carry, without splitting a character."""
    return reason.encode()[:123].decode(errors="ignore")
