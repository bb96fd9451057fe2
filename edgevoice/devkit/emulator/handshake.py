"""HTTP side of the Realtime emulator's opening handshake: error answers, credentials, redacted records.

Kept apart from the server so the rules can be read in one place; nothing here touches a session.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

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
