"""The control protocol's commands: one table, and a frozen dataclass of typed arguments per command.

Each command class names its command (`name`), holds its validated arguments as fields, and reads them from
the request's JSON object (`read`, through `Args`, whose messages say what was wrong). Who runs it is its
base class (args.py): a `DeviceCommand` goes to the device (`DeviceControl.execute(command)`, whatever the
transport: the control socket, or a bridge that takes `<base>/cmd/<name>` with a JSON payload); a
`ServerCommand` concerns the connection (subscriptions, tools a client serves) and is run by the control
server itself. `image` and `Picture`, what it becomes once complete and checked, are in images.py.

To add a device command: write its class here (a `DeviceCommand` with its fields and `read`), add its row
to `COMMANDS`, handle it in `DaemonControl.execute` (edgevoice/device_control.py), and describe it in
docs/control-protocol.md. The server passes it to the device as it is, and `edgevoice ctl` offers it from
the table: its summary is the help, a string or number field a positional argument (optional if it may be
None), a boolean a --flag (a field of another type needs a form of its own in ctl.py, like `image`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal, Self

from edgevoice.control.args import (
    Args,
    Command,
    DeviceCommand,
    ServerCommand,
    did_you_mean,
    json_text,
    kind_of,
    valid_unicode,
)
from edgevoice.control.errors import BAD_REQUEST, UNKNOWN_COMMAND, RequestError
from edgevoice.control.events import SUBSCRIBABLE
from edgevoice.control.images import Image
from edgevoice.control.limits import DEFAULT_TOOL_TIMEOUT_S, MAX_DESCRIPTION, MAX_TOOLS, TIMEOUT_RANGE

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CALL_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces


# ---- the device's commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Listen(DeviceCommand):
    """Start listening, as a button press that starts a turn (or a conversation, with a VAD)."""

    name = "listen"


@dataclass(frozen=True)
class Stop(DeviceCommand):
    """End the user's turn now (commit the audio and ask for an answer)."""

    name = "stop"


@dataclass(frozen=True)
class Cancel(DeviceCommand):
    """Interrupt the assistant (barge-in): stop the speaker, cancel and truncate the answer."""

    name = "cancel"


@dataclass(frozen=True)
class End(DeviceCommand):
    """End the conversation: its context is forgotten, the session closes, the device goes idle."""

    name = "end"


@dataclass(frozen=True)
class Say(DeviceCommand):
    """The user's words as text into the conversation, then an answer (starts a conversation if needed)."""

    name = "say"
    text: str

    @classmethod
    def read(cls, args: Args) -> Self:
        return cls(args.text("text"))


@dataclass(frozen=True)
class Speak(DeviceCommand):
    """Make the assistant say `text`, as written, in its voice (e.g. "battery low"), as soon as it can."""

    name = "speak"
    text: str

    @classmethod
    def read(cls, args: Args) -> Self:
        return cls(args.text("text"))


@dataclass(frozen=True)
class Mute(DeviceCommand):
    """Privacy mute: the microphone sends nothing. Result: {"muted": true}."""

    name = "mute"


@dataclass(frozen=True)
class Unmute(DeviceCommand):
    """Undo the privacy mute. Result: {"muted": false} (or true if the device keeps it on)."""

    name = "unmute"


@dataclass(frozen=True)
class Volume(DeviceCommand):
    """Set the speaker volume (0..1) or, with None, just read it. Result: {"volume": the volume now}."""

    name = "volume"
    level: float | None = None

    @classmethod
    def read(cls, args: Args) -> Self:
        return cls(args.optional_number("level", 0.0, 1.0))


# ---- the server's commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(ServerCommand):
    """Protocol version, edgevoice version, state, commands, events, limits, and who the client is."""

    name = "hello"


@dataclass(frozen=True)
class Status(ServerCommand):
    """The device's status, and the connection's (clients connected, which one you are)."""

    name = "status"


@dataclass(frozen=True)
class Subscribe(ServerCommand):
    """Send the client these events (all of them with None) from now on, starting with a state snapshot."""

    name = "subscribe"
    events: tuple[str, ...] | None = None

    @classmethod
    def read(cls, args: Args) -> Self:
        return cls(args.names("events", _event_name_problem, len(SUBSCRIBABLE)))


@dataclass(frozen=True)
class Unsubscribe(ServerCommand):
    """Send the client no more events."""

    name = "unsubscribe"


@dataclass(frozen=True)
class ToolSpec:
    """A tool a client serves, as it declares it: the model sees the name, description and parameters."""

    name: str
    description: str
    parameters: dict[str, Any]
    timeout_s: float

    @classmethod
    def read(cls, args: Args) -> ToolSpec:
        name = args.text("name", max_len=200)
        complaint = _tool_name_problem(name)
        if complaint:
            raise args.fail(complaint)
        description = args.optional_text("description", max_len=MAX_DESCRIPTION) or ""
        parameters = args.raw.get("parameters")
        args.allow("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            raise args.fail('parameters must be a JSON Schema object: {"type": "object", "properties": {...}}')
        if json_text(parameters) is None:
            raise args.fail("parameters hold a number too large for JSON or a lone surrogate (not valid Unicode)")
        timeout = args.optional_number("timeout_s", *TIMEOUT_RANGE)
        args.finish()
        return cls(name, description, parameters, DEFAULT_TOOL_TIMEOUT_S if timeout is None else timeout)


@dataclass(frozen=True)
class ToolsRegister(ServerCommand):
    """Declare tools to the model that this client serves (all of them, or none if one is refused)."""

    name = "tools.register"
    tools: tuple[ToolSpec, ...]

    @classmethod
    def read(cls, args: Args) -> Self:
        tools = args.raw_value("tools")
        if not isinstance(tools, list) or not tools:
            raise args.fail('tools must be a non-empty array of {"name", "description", "parameters", "timeout_s"}')
        if len(tools) > MAX_TOOLS:
            raise args.fail(f"{len(tools)} tools: the limit is {MAX_TOOLS} per client")
        specs: dict[str, ToolSpec] = {}
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise args.fail(f"tools[{i}] must be an object, not {kind_of(tool)}")
            spec = ToolSpec.read(Args(f"{args.cmd}: tools[{i}]", tool, args.request_id))
            if spec.name in specs:
                raise args.fail(f"the tool {spec.name!r} is listed twice")
            specs[spec.name] = spec
        return cls(tuple(specs.values()))


@dataclass(frozen=True)
class ToolsUnregister(ServerCommand):
    """Withdraw tools this client serves (all of them with None)."""

    name = "tools.unregister"
    names: tuple[str, ...] | None = None

    @classmethod
    def read(cls, args: Args) -> Self:
        return cls(args.names("names", _tool_name_problem, MAX_TOOLS))


@dataclass(frozen=True)
class ToolResult(ServerCommand):
    """The answer to a tool call this client was sent; `output` is JSON text unless it came as a string."""

    name = "tool.result"
    call_id: str
    output: str

    @classmethod
    def read(cls, args: Args) -> Self:
        call_id = args.text("call_id", max_len=200)
        if not CALL_ID.fullmatch(call_id):
            raise args.fail(f"call_id {call_id[:80]!r} is not one the device sent (printable ASCII, up to 128)")
        if "output" not in args.raw:
            raise args.fail('needs "output" (a string, or any JSON value, which is sent as JSON text)')
        output = args.raw_value("output")
        text = output if isinstance(output, str) and valid_unicode(output) else json_text(output)
        if text is None:
            raise args.fail("output holds a number too large for JSON or a lone surrogate (not valid Unicode)")
        return cls(call_id, text)


def _tool_name_problem(name: str) -> str | None:
    if TOOL_NAME.fullmatch(name):
        return None
    return f"tool name {name[:80]!r} is not allowed: use 1-64 letters, digits, _ or -"


def _event_name_problem(name: str) -> str | None:
    if name in SUBSCRIBABLE:
        return None
    return f"unknown event {name[:64]!r}{did_you_mean(name, SUBSCRIBABLE)}; events: {', '.join(SUBSCRIBABLE)}"


# ---- the table -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """One row of the table: a command's arguments class (which names it) and a one-line summary."""

    arguments: type[Command]
    summary: str  # for people: `edgevoice ctl` help

    @property
    def name(self) -> str:
        return self.arguments.name

    @property
    def handled_by(self) -> Literal["device", "server"]:
        return "device" if issubclass(self.arguments, DeviceCommand) else "server"


def _table(*specs: CommandSpec) -> dict[str, CommandSpec]:
    table: dict[str, CommandSpec] = {}
    for spec in specs:
        assert spec.name not in table, f"two commands are named {spec.name!r}"
        reads = "read" in vars(spec.arguments)
        assert reads or not fields(spec.arguments), f"{spec.name}: a command with arguments must read them"
        table[spec.name] = spec
    return table


COMMANDS = _table(
    CommandSpec(Hello, "protocol version and capabilities"),
    CommandSpec(Status, "the device's state, session, tools, usage"),
    CommandSpec(Listen, "start listening (as a button press)"),
    CommandSpec(Stop, "end the user's turn now"),
    CommandSpec(Cancel, "interrupt the assistant"),
    CommandSpec(End, "end the conversation (its context is forgotten)"),
    CommandSpec(Say, "the user's words, as text, into the conversation"),
    CommandSpec(Speak, "make the assistant say something now"),
    CommandSpec(Image, "attach a picture (JPEG or PNG), inline, in pieces or from a file"),
    CommandSpec(ToolsRegister, "serve tools the model may call"),
    CommandSpec(ToolsUnregister, "stop serving tools"),
    CommandSpec(ToolResult, "answer a tool call"),
    CommandSpec(Subscribe, "receive events"),
    CommandSpec(Unsubscribe, "receive no more events"),
    CommandSpec(Mute, "privacy mute: the microphone sends nothing"),
    CommandSpec(Unmute, "undo mute"),
    CommandSpec(Volume, "read, or set (0 to 1), the speaker volume"),
)


def parse_command(name: str, payload: dict[str, Any], request_id: int | str | None = None) -> Command:
    """The command `name` with its arguments from `payload` (a JSON object: the request's fields other than
    `id` and `cmd`), validated; RequestError (UNKNOWN_COMMAND or BAD_REQUEST, carrying `request_id`) says
    what is wrong. The control socket parses every line through this; so must any other transport."""
    spec = COMMANDS.get(name)
    if spec is None:
        raise RequestError(
            UNKNOWN_COMMAND,
            f"unknown command {name[:64]!r}{did_you_mean(name, COMMANDS)}; commands: {', '.join(COMMANDS)}",
            request_id,
        )
    if not isinstance(payload, dict):
        raise RequestError(BAD_REQUEST, f"{name}: the arguments are a JSON object, not {kind_of(payload)}", request_id)
    args = Args(name, payload, request_id)
    command = spec.arguments.read(args)
    args.finish()
    return command
