"""The daemon as the control socket sees it: `edgevoice.control.api.DeviceControl`, implemented.

Every method runs on the event loop and returns at once: commands go to the conversation (which decides what
they mean now and raises `NotNow` when they do not fit), tools to the registry the session manager declares
to the model. Refusals become `ControlError`s whose message tells the controller what to do.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgevoice.audio.xruns import XRuns
from edgevoice.control.api import ControlError, EventListener, ToolCallHandler
from edgevoice.control.errors import BAD_REQUEST, BUSY, INVALID_STATE, UNAVAILABLE
from edgevoice.conversation.ports import Busy, NotNow
from edgevoice.realtime.failures import LinkBusy
from edgevoice.realtime.tools import BadSchema, NameTaken, Tool

if TYPE_CHECKING:
    from edgevoice.control.args import DeviceCommand
    from edgevoice.daemon import Daemon


class DaemonControl:
    """The daemon behind the control socket: `execute` runs each device command, the tools go to the
    daemon's tool registry, and events come from the daemon's own publisher."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    @property
    def _conversation(self) -> Any:
        conversation = self._daemon.conversation
        if conversation is None:
            raise ControlError(INVALID_STATE, "the device is starting: try again in a moment")
        return conversation

    def _run(self, command: Callable[[], object]) -> None:
        try:
            command()
        except (Busy, LinkBusy) as exc:
            raise ControlError(BUSY, str(exc)) from None
        except NotNow as exc:
            raise ControlError(INVALID_STATE, str(exc)) from None

    # ---- reading -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        daemon = self._daemon
        conversation = daemon.conversation
        manager = daemon.manager
        state = str(conversation.state) if conversation is not None else "idle"
        status: dict[str, Any] = {
            "state": state,
            "muted": bool(conversation and conversation.muted),
            "volume": daemon.volume,
            "conversation": {"active": bool(conversation and conversation.conversation_open)},
            "session": {
                "up": bool(manager and manager.is_up),
                "id": manager.session_id if manager is not None else "",
            },
            "tools": daemon.tools.names(),
            "usage": daemon.usage.snapshot(),
            "audio": self._audio(),
        }
        if conversation is not None and conversation.reason:
            status["reason"] = conversation.reason
        fleet = daemon.fleet
        if fleet is not None and fleet.bridge is not None:  # [mqtt]: the broker connection's health
            status["mqtt"] = fleet.bridge.status()
        return status

    def _audio(self) -> dict[str, Any]:
        """The sound devices: open or not, and their overflows and underflows so far (audio/xruns.py)."""
        xruns = self._daemon.xruns()
        return {"open": xruns is not None, **(xruns or XRuns()).as_dict()}

    def subscribe_events(self, listener: EventListener) -> Callable[[], None]:
        return self._daemon.subscribe(listener)

    # ---- commands ------------------------------------------------------------------------------------

    def execute(self, command: DeviceCommand, owner: str | None = None) -> dict[str, Any]:
        """Run one device command (edgevoice/control/commands.py) and return its result; `owner`: the
        controller that sent it (the answers it asks for are its own, see `release`)."""
        # The command table is loaded after start-up (see control/server.py): here it is loaded already.
        from edgevoice.control.commands import Cancel, End, Listen, Mute, Say, Speak, Stop, Unmute, Volume
        from edgevoice.control.images import Picture

        match command:
            case Listen():
                self._run(self._conversation.listen)
            case Stop():
                self._run(self._conversation.stop_listening)
            case Cancel():
                self._run(self._conversation.cancel)
            case End():
                self._run(lambda: self._conversation.end_conversation("ended by a controller"))
            case Say(text=text):
                self._run(lambda: self._conversation.say(text, owner))
            case Speak(text=text):
                self._run(lambda: self._conversation.speak(text, owner))
            case Picture(data=data, mime=mime, prompt=prompt):  # a JPEG or PNG, checked by the server
                url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
                self._run(lambda: self._conversation.image(url, prompt, owner))
            case Mute() | Unmute():
                conversation = self._conversation
                conversation.set_muted(isinstance(command, Mute))
                return {"muted": bool(conversation.muted)}
            case Volume(level=level):
                if level is not None:
                    self._daemon.set_volume(level)
                return {"volume": self._daemon.volume}
            case _:
                raise ControlError(UNAVAILABLE, f"{command.name}: this device cannot do that")
        return {}

    def release(self, owner: str) -> None:
        conversation = self._daemon.conversation
        if conversation is not None:
            conversation.release(owner)

    # ---- tools ---------------------------------------------------------------------------------------

    def register_tool(
        self,
        owner: str,
        name: str,
        description: str,
        parameters: dict[str, Any],
        handler: ToolCallHandler,
        timeout_s: float,
    ) -> None:
        try:
            self._daemon.tools.register(Tool(name, description, parameters, handler, timeout_s, owner))
        except NameTaken as exc:
            raise ControlError(BUSY, f"{exc}: pick another name") from None
        except BadSchema as exc:
            raise ControlError(BAD_REQUEST, f"{exc} (the server would refuse it)") from None

    def unregister_tools(self, owner: str, names: list[str] | None) -> list[str]:
        tools = self._daemon.tools
        if names is None:
            return tools.unregister_owner(owner)
        return [name for name in names if tools.unregister(name, owner)]
