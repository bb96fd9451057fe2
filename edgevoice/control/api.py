"""What the control socket needs from the device: the `DeviceControl` interface the daemon implements.

The server calls these methods on the event loop, one request at a time per client; each must return at
once (queue the work, never wait for the network or the speaker). A command the device refuses raises
`ControlError` with one of the codes below; its message goes to the client as it is, so it should say what
to do. Any other exception is a bug: the client gets an `internal` error and the daemon logs the traceback.

Events flow the other way: the device calls every subscribed listener with a dict that has an `"event"`
key (see `EVENTS`); listeners are called on the event loop and must not block (the server only queues).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

# Codes a device may raise (the server adds its own protocol codes: see `protocol.ERROR_CODES`).
INVALID_STATE = "invalid_state"  # not now: e.g. `stop` while not listening, `listen` while muted or in error
NOT_FOUND = "not_found"  # no such thing: e.g. `cancel` with no answer playing (or a device may ignore it)
BUSY = "busy"  # a resource is taken: e.g. a tool name already served by someone else
BAD_REQUEST = "bad_request"  # the arguments are well-formed but unusable (e.g. an image the model cannot take)
UNAVAILABLE = "unavailable"  # the device cannot do it at all (e.g. no volume control on this sound card)

ToolCallHandler = Callable[[str, str], Awaitable[str]]  # (call_id, arguments as JSON text) -> output text
EventListener = Callable[[dict[str, Any]], None]

# Events a device publishes (other names are forwarded too, to subscribers that asked for everything).
EVENTS = (
    "state",  # state, previous, reason? : idle connecting listening thinking speaking muted offline error
    "transcript",  # role user|assistant, item_id, text, final
    "tool_call",  # call_id, name, arguments (JSON text)
    "level",  # level 0..1: the played speech envelope, ~20 Hz while speaking (lip-sync)
    "usage",  # tokens and cost of a response
    "error",  # code, message
    "notice",  # message: something a person may want to know (e.g. "cannot talk now: offline")
    "session",  # status open|rolled_over|..., session_id
    "interrupted",  # item_id, played_ms: the assistant was cut off
    "conversation_ended",  # reason
    "latency",  # what, ms
    "led",  # state, pattern
    "mute",  # muted
    "volume",  # level
    "button",  # button, gesture, action, phase
)


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

    def listen(self) -> None:
        """Start listening, as a button press that starts a turn (or a conversation, with a VAD)."""
        ...

    def stop(self) -> None:
        """End the user's turn now (commit the audio and ask for an answer)."""
        ...

    def cancel(self) -> None:
        """Interrupt the assistant (barge-in): stop the speaker, cancel and truncate the answer."""
        ...

    def end(self) -> None:
        """End the conversation: its context is forgotten, the session closes, the device goes idle."""
        ...

    def say(self, text: str) -> None:
        """The user's words as text into the conversation, then an answer (starts a conversation if needed)."""
        ...

    def speak(self, text: str) -> None:
        """Make the assistant say `text`, as written, in its voice (e.g. "battery low"), as soon as it can."""
        ...

    def image(self, data: bytes, mime: str, prompt: str | None) -> None:
        """Attach a picture (JPEG, PNG or WebP, already checked) to the conversation; with a prompt, ask it."""
        ...

    def mute(self, muted: bool) -> bool:
        """Privacy mute (the microphone sends nothing); returns the new state."""
        ...

    def volume(self, level: float | None) -> float:
        """Set the speaker volume (0..1) or, with None, just read it; returns the volume now."""
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
