"""What the control socket needs from the device: the `DeviceControl` interface the daemon implements.

The server calls these methods on the event loop, one request at a time per client; each must return at
once (queue the work, never wait for the network or the speaker). A command the device refuses raises
`ControlError` with one of `errors.DEVICE_CODES`; its message goes to the client as it is, so it should say
what to do. Any other exception is a bug: the client gets an `internal` error and the daemon logs the
traceback.

Events flow the other way: the device calls every subscribed listener with a dict that has an `"event"`
key (see `events.EVENTS`); listeners are called on the event loop and must not block (the server only
queues).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edgevoice.control.args import DeviceCommand

ToolCallHandler = Callable[[str, str], Awaitable[str]]  # (call_id, arguments as JSON text) -> output text
EventListener = Callable[[dict[str, Any]], None]


class ControlError(Exception):
    """A refused command: `code` is machine-readable, `message` is for a person and says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class DeviceControl(Protocol):
    """The device as the control socket sees it (implemented by the daemon)."""

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot. Must hold "state" (a device state name) and, in `error`, "reason". The rest
        is what the device knows, e.g. muted, volume, session {id, up}, conversation {active}, tools [names],
        usage (UsageMeter.snapshot()). Called on every `status`, `hello` and `subscribe`: keep it cheap."""
        ...

    def execute(self, command: DeviceCommand, owner: str | None = None) -> dict[str, Any]:
        """Run a device command (commands.py: `Listen`, `Say`, `Volume`, a checked `Picture`, ...) and return
        its result (JSON-able; `{}` when there is nothing to say). A command this device does not know or
        cannot do raises ControlError(UNAVAILABLE). `owner` says which client sent it (as for tools): the
        answers it asks for are that client's, and `release(owner)` drops those still waiting."""
        ...

    def release(self, owner: str) -> None:
        """The client `owner` has gone: drop the answers it asked for that still wait (all but one: the one
        under way, or else its first, so that a client that asks and leaves is still answered)."""
        ...

    def register_tool(
        self,
        owner: str,
        name: str,
        description: str,
        parameters: dict[str, Any],
        handler: ToolCallHandler,
        timeout_s: float,
    ) -> None:
        """Declare a tool to the model, served by `handler`. The device applies `timeout_s` (cancelling the
        handler) and turns a timeout or an exception into an error output. The same owner may register a
        name again (it replaces the tool); a name served by another owner (config or another client) raises
        ControlError(BUSY)."""
        ...

    def unregister_tools(self, owner: str, names: list[str] | None) -> list[str]:
        """Remove `owner`'s tools (all of them with None); returns the names removed. Names that are not
        the owner's are ignored."""
        ...

    def subscribe_events(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener` with every event from now on; returns the function that unsubscribes it."""
        ...
