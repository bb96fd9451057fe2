"""The daemon as the control socket sees it: `edgevoice.control.api.DeviceControl`, implemented.

Every method runs on the event loop and returns at once: commands go to the conversation (which decides what
they mean now and raises `NotNow` when they do not fit), tools to the registry the session manager declares
to the model. Refusals become `ControlError`s whose message tells the controller what to do.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgevoice.control.api import BAD_REQUEST, BUSY, INVALID_STATE, ControlError, EventListener, ToolCallHandler
from edgevoice.conversation.ports import NotNow
from edgevoice.realtime.tools import Tool

if TYPE_CHECKING:
    from edgevoice.daemon import Daemon

IMAGE_TYPES = ("image/jpeg", "image/png")  # what the Realtime API takes (not WebP)


class DaemonControl:
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
        }
        if conversation is not None and conversation.reason:
            status["reason"] = conversation.reason
        return status

    def subscribe_events(self, listener: EventListener) -> Callable[[], None]:
        return self._daemon.subscribe(listener)

    # ---- the conversation ------------------------------------------------------------------------------

    def listen(self) -> None:
        self._run(self._conversation.listen)

    def stop(self) -> None:
        self._run(self._conversation.stop_listening)

    def cancel(self) -> None:
        self._run(self._conversation.cancel)

    def end(self) -> None:
        self._run(lambda: self._conversation.end_conversation("ended by a controller"))

    def say(self, text: str) -> None:
        self._run(lambda: self._conversation.say(text))

    def speak(self, text: str) -> None:
        self._run(lambda: self._conversation.speak(text))

    def image(self, data: bytes, mime: str, prompt: str | None) -> None:
        if mime not in IMAGE_TYPES:
            raise ControlError(BAD_REQUEST, f"the model takes JPEG or PNG pictures, not {mime}: convert it first")
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        self._run(lambda: self._conversation.image(url, prompt))

    def mute(self, muted: bool) -> bool:
        conversation = self._conversation
        conversation.set_muted(muted)
        return bool(conversation.muted)

    def volume(self, level: float | None) -> float:
        if level is not None:
            self._daemon.set_volume(level)
        return self._daemon.volume

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
        except ValueError as exc:
            raise ControlError(BUSY, f"{exc}: pick another name") from None

    def unregister_tools(self, owner: str, names: list[str] | None) -> list[str]:
        tools = self._daemon.tools
        if names is None:
            return tools.unregister_owner(owner)
        return [name for name in names if tools.unregister(name, owner)]
