"""Why a Realtime session failed to open or ended, in the terms the retry policy acts on.

Kept apart from session.py (which needs the WebSocket library) so that the parts that only reason about
failures (the retry policy, the link, the session manager) load without it.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["auth", "quota", "network", "rate_limit", "server", "protocol", "expired", "closed"]
FATAL_ERROR_KINDS = {"invalid_api_key": "auth", "beta_api_shape_disabled": "protocol", "insufficient_quota": "quota"}


class SessionError(Exception):
    """Why a session could not open or ended; `kind` says what to do about it."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        close_code: int | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.close_code = close_code
        self.retry_after_s = retry_after_s

    @property
    def needs_person(self) -> bool:
        """Retrying will not help until somebody fixes the key, the account or the configuration."""
        return self.kind in ("auth", "quota", "protocol")


def classify_close(code: int | None, reason: str) -> SessionError:
    """What a close frame from the server means for us."""
    text = f"the server closed the connection (code {code}{': ' + reason if reason else ''})"
    if code == 3000:
        return SessionError("auth", f"{text}; the API key was refused", close_code=code)
    if code == 4000:
        return SessionError("protocol", f"{text}; it rejected the protocol shape", close_code=code)
    if code == 1001 or "maximum duration" in reason:
        return SessionError("expired", text, close_code=code)
    if code == 1000:
        return SessionError("closed", text, close_code=code)
    return SessionError("network", text, close_code=code)


class LinkBusy(Exception):
    """A request the link cannot take now (its queues are full in events or bytes): try again later."""


class ToolRefused(SessionError):
    """The server refused the session because of tools we declared (`names`): drop them and open it again,
    rather than fail the device over one controller's tool. `server_message` is what the server said."""

    def __init__(self, names: list[str], server_message: str) -> None:
        super().__init__("protocol", f"the server refused the tool(s) {', '.join(names)}: {server_message}")
        self.names = tuple(names)
        self.server_message = server_message
