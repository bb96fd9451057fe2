"""The per-connection protocol state machine of the Realtime emulator.

One `EmulatorSession` per accepted WebSocket: it owns the effective session config, the user's side
(`turns.UserTurns`: the input audio buffer, its VAD and the user items), the conversation's items, and at
most one active response. The server (`server.py`) feeds it frames one at a time through `handle_frame`
and gives it a `SessionLink` for everything outside the connection (sending, closing, the scripted replies).

Every frame is untrusted. Anything wrong with it becomes exactly one `error` event (with the client's
`event_id` echoed in `error.event_id` when it had one) and the session carries on as if the frame had
never arrived.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, Protocol

from .checks import ClientError, check_keys, expect_int, expect_str, optional_id, parse_frame, required
from .items import ItemStore, StoredItem
from .requests import ResponseOptions, parse_item, parse_response_options
from .response import ResponseRun
from .schema import apply_session_update
from .script import EmulatorSettings, Reply, ResponseFailure
from .server_events import SESSION_EXPIRED_MESSAGE, default_session, error_event, new_id, server_event
from .turns import UserTurns

logger = logging.getLogger("edgevoice.emulator")

Event = dict[str, Any]

MAX_EVENT_CHARS = 15 * 1024 * 1024
"""The 15 MiB limit of one client event (the SDK documents it for `input_audio_buffer.append`). Frames up
to the server's 16 MiB `max_size` get a polite `error`; bigger ones are closed by websockets (1009)."""


class SessionLink(Protocol):
    """What a session needs from the server around it: its connection and the shared script."""

    @property
    def settings(self) -> EmulatorSettings: ...

    async def send_event(self, event: Event) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...

    def next_reply(self) -> Reply: ...

    def take_response_failure(self) -> ResponseFailure | None: ...

    def record_received(self, event: Event) -> None: ...


class EmulatorSession:
    """One Realtime session over one connection."""

    def __init__(self, link: SessionLink, model: str) -> None:
        self._link = link
        settings = link.settings
        lifetime_s = settings.session_max_s if settings.session_max_s is not None else 3600.0
        self.config: dict[str, Any] = default_session(model, new_id("sess"), int(time.time() + lifetime_s))
        self.items = ItemStore(new_id("conv"))
        self._active: ResponseRun | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns = UserTurns(
            link,
            self.items,
            self.config["audio"]["input"],
            spawn=self._spawn,
            on_speech_started=self._speech_started,
            on_turn_ended=self._turn_ended,
        )
        self._expiry_task: asyncio.Task[None] | None = None
        self._expiring = False
        self._handlers: dict[str, Callable[[Event], Awaitable[None]]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._turns.on_append,
            "input_audio_buffer.commit": self._turns.on_commit,
            "input_audio_buffer.clear": self._turns.on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.truncate": self._on_item_truncate,
            "conversation.item.delete": self._on_item_delete,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "output_audio_buffer.clear": self._on_output_buffer_clear,
        }

    # --- lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        """Greet the client with the full effective session, and start the session clock if limited."""
        await self._send("session.created", session=copy.deepcopy(self.config))
        max_s = self._link.settings.session_max_s
        if max_s is not None:
            self._expiry_task = self._spawn(self._expire_after(max_s))

    async def shutdown(self) -> None:
        """The connection is gone: stop every task of this session.

        An expiry already under way is left to finish its close handshake rather than cut off mid-close.
        """
        tasks = [task for task in self._tasks if not (self._expiring and task is self._expiry_task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def expire(self, via: Literal["error", "close"], message: str = SESSION_EXPIRED_MESSAGE) -> None:
        """End the session as the real server does at its time limit: error `session_expired`, close 1001."""
        self._expiring = True
        if via == "error":
            await self._link.send_event(error_event("session_expired", message))
        await self._link.close(1001, message)

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        minutes = seconds / 60.0
        span = f"{minutes:g} minutes" if minutes.is_integer() else f"{seconds:g} seconds"
        await self.expire("error", f"Your session hit the maximum duration of {span}.")

    # --- frames --------------------------------------------------------------------------------------
    async def handle_frame(self, frame: str | bytes) -> None:
        """Process one client frame; never raises (except task cancellation)."""
        client_event_id: str | None = None
        try:
            event = parse_frame(frame)
            self._link.record_received(event)
            raw_id = event.get("event_id")
            if raw_id is not None:
                client_event_id = expect_str(raw_id, "event_id", max_length=512)
            if len(frame) > MAX_EVENT_CHARS:
                raise ClientError(
                    "event_too_large",
                    f"The event is {len(frame)} bytes; one client event may be at most 15 MiB. "
                    "Send audio in smaller input_audio_buffer.append events.",
                )
            event_type = expect_str(required(event, "type", ""), "type")
            handler = self._handlers.get(event_type)
            if handler is None:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{event_type[:100]}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in self._handlers)
                    + ".",
                    "type",
                )
            await handler(event)
        except ClientError as error:
            logger.info("refused a client event (%s): %s", error.code, error.message)
            await self._link.send_event(
                error_event(error.code, error.message, param=error.param, client_event_id=client_event_id)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the emulator failed on a client event")
            await self._link.send_event(
                error_event(
                    "internal_error",
                    "The emulator failed on this event; see its log.",
                    client_event_id=client_event_id,
                    error_type="server_error",
                )
            )

    # --- session.update --------------------------------------------------------------------------------
    async def _on_session_update(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "session"), "")
        new = apply_session_update(self.config, required(event, "session", ""))
        for index, tool in enumerate(new.get("tools") or ()):
            if tool.get("name") in self._link.settings.refused_tools:
                raise ClientError(
                    "invalid_function_parameters",
                    f"Invalid schema for function '{tool['name']}': the schema is not supported "
                    "(the emulator was told to refuse this tool).",
                    f"session.tools[{index}].parameters",
                )
        old_output, new_output = self.config["audio"]["output"], new["audio"]["output"]
        if new_output["voice"] != old_output["voice"] and self.items.has_assistant_audio():
            raise ClientError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        self.config = new
        self._turns.configure(new["audio"]["input"])
        await self._send("session.updated", session=copy.deepcopy(self.config))

    # --- what a user's turn means for responses -----------------------------------------------------------
    def _speech_started(self) -> None:
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection and detection["interrupt_response"] and self._active and self._active.in_conversation:
            self._active.cancel("turn_detected")

    async def _turn_ended(self) -> None:
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection and detection["create_response"]:
            if self._active is None:
                await self._start_response(ResponseOptions())
            else:
                logger.info("turn ended while response %s is active; no new response", self._active.id)

    # --- conversation items ----------------------------------------------------------------------------
    def _existing_item(self, event: Event, key: str = "item_id") -> StoredItem:
        item_id = expect_str(required(event, key, ""), key)
        stored = self.items.get(item_id)
        if stored is None:
            raise ClientError("item_not_found", f"Item with item_id '{item_id[:100]}' not found.", key)
        return stored

    async def _on_item_create(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "previous_item_id", "item"), "")
        parsed = parse_item(required(event, "item", ""), new_id("item"), self._turns.format)
        after = optional_id(event, "previous_item_id", "")
        if after not in (None, "root") and self.items.get(after) is None:
            raise ClientError("item_not_found", f"Previous item with item_id '{after}' not found.", "previous_item_id")
        if self.items.get(parsed.wire["id"]) is not None:
            raise ClientError("invalid_value", f"Item with item_id '{parsed.wire['id']}' already exists.", "item.id")
        stored = StoredItem(wire=parsed.wire, audio_ms=parsed.audio_ms)
        previous = self.items.insert(stored, after)
        await self._send("conversation.item.added", item=stored.snapshot(), previous_item_id=previous)
        await self._send("conversation.item.done", item=stored.snapshot(), previous_item_id=previous)

    async def _on_item_retrieve(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "item_id"), "")
        await self._send("conversation.item.retrieved", item=self._existing_item(event).snapshot())

    async def _on_item_delete(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "item_id"), "")
        stored = self._existing_item(event)
        self.items.delete(stored.id)
        await self._send("conversation.item.deleted", item_id=stored.id)

    async def _on_item_truncate(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "item_id", "content_index", "audio_end_ms"), "")
        expect_str(required(event, "item_id", ""), "item_id")
        content_index = expect_int(required(event, "content_index", ""), "content_index", 0)
        audio_end_ms = expect_int(required(event, "audio_end_ms", ""), "audio_end_ms", 0)
        stored = self._existing_item(event)
        if not stored.is_assistant_audio:
            raise ClientError("invalid_value", "Only model output audio messages can be truncated.", "item_id")
        if content_index != 0:
            raise ClientError(
                "invalid_value",
                f"Content index {content_index} does not exist; the audio is part 0.",
                "content_index",
            )
        if audio_end_ms > stored.audio_ms:
            raise ClientError(
                "invalid_value",
                f"Audio content of {math.floor(stored.audio_ms)}ms is already shorter than {audio_end_ms}ms",
                "audio_end_ms",
            )
        stored.truncate_audio(audio_end_ms)
        await self._send("conversation.item.truncated", item_id=stored.id, content_index=0, audio_end_ms=audio_end_ms)

    # --- responses ---------------------------------------------------------------------------------------
    async def _on_response_create(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "response"), "")
        options = parse_response_options(event.get("response"))
        if self._active is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        await self._start_response(options)

    async def _start_response(self, options: ResponseOptions) -> None:
        failure = self._link.take_response_failure()
        reply = None if failure is not None else self._link.next_reply()
        run = ResponseRun(self._link, self.items, self.config, options, reply, failure, self._response_finished)
        self._active = run
        self._spawn(run.run())

    def _response_finished(self, run: ResponseRun) -> None:
        if self._active is run:
            self._active = None

    async def _on_response_cancel(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "response_id"), "")
        response_id = optional_id(event, "response_id", "")
        active = self._active
        if active is None or active.cancel_requested:
            raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")
        if response_id is not None and response_id != active.id:
            raise ClientError(
                "response_cancel_not_active",
                f"Cancellation failed: response '{response_id}' is not the active response.",
                "response_id",
            )
        active.cancel("client_cancelled")

    async def _on_output_buffer_clear(self, event: Event) -> None:
        raise ClientError(
            "invalid_value",
            "output_audio_buffer.clear is only available on WebRTC and SIP connections; "
            "over a WebSocket the client owns playback (stop it and send conversation.item.truncate).",
            "type",
        )

    # --- helpers -----------------------------------------------------------------------------------------
    async def _send(self, event_type: str, **fields: Any) -> None:
        await self._link.send_event(server_event(event_type, **fields))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
