"""The per-connection protocol state machine of the Realtime emulator.

One `EmulatorSession` per accepted WebSocket: it owns the effective session config, the input audio
buffer with its energy VAD, the conversation, and at most one active response. The server
(`server.py`) feeds it frames one at a time through `handle_frame` and gives it a `SessionLink` for
everything outside the connection (sending, closing, the scripted replies).

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

from .audio import EnergyVad, InputAudioBuffer, SpeechStarted, WireFormat, wire_format
from .checks import (
    ClientError,
    check_keys,
    decode_base64,
    expect_int,
    expect_str,
    optional_id,
    parse_frame,
    required,
)
from .items import USER_AUDIO_MS_PER_TOKEN, ItemStore, StoredItem
from .requests import ResponseOptions, parse_item, parse_response_options
from .response import ResponseRun
from .schema import SEMANTIC_VAD_SILENCE_MS, apply_session_update
from .script import EmulatorSettings, Reply, ResponseFailure
from .server_events import (
    SESSION_EXPIRED_MESSAGE,
    audio_tokens,
    default_session,
    error_event,
    new_id,
    server_event,
    user_audio_item,
    word_tokens,
)

logger = logging.getLogger("edgevoice.emulator")

Event = dict[str, Any]

MAX_EVENT_CHARS = 15 * 1024 * 1024
"""The 15 MiB limit of one client event (the SDK documents it for `input_audio_buffer.append`). Frames up
to the server's 16 MiB `max_size` get a polite `error`; bigger ones are closed by websockets (1009)."""
MIN_COMMIT_MS = 100.0
MAX_BUFFER_MS = 10 * 60 * 1000.0
"""Uncommitted audio the emulator holds at most, so a client that never commits cannot exhaust memory."""
VAD_START_MS = 60
"""Speech must last this long before `speech_started`: short clicks are not turns."""


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
        self._input = InputAudioBuffer(self._input_format, None)  # the session's input timeline starts at 0
        self._input.vad = self._make_vad()
        self._speech_item_id: str | None = None
        self._active: ResponseRun | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry_task: asyncio.Task[None] | None = None
        self._expiring = False
        self._handlers: dict[str, Callable[[Event], Awaitable[None]]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
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
        old_output, new_output = self.config["audio"]["output"], new["audio"]["output"]
        if new_output["voice"] != old_output["voice"] and self.items.has_assistant_audio():
            raise ClientError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        old_input, new_input = self.config["audio"]["input"], new["audio"]["input"]
        format_changed = new_input["format"] != old_input["format"]
        self.config = new
        if format_changed:
            # The buffered bytes mean nothing in the new format: start an empty buffer (same timeline).
            self._input = InputAudioBuffer(self._input_format, None, self._input.timeline_ms)
        if format_changed or new_input["turn_detection"] != old_input["turn_detection"]:
            self._input.vad = self._make_vad()  # a turn in progress under the old settings is dropped
            self._speech_item_id = None
        await self._send("session.updated", session=copy.deepcopy(self.config))

    # --- the input audio buffer ------------------------------------------------------------------------
    @property
    def _input_format(self) -> WireFormat:
        return wire_format(self.config["audio"]["input"]["format"])

    def _make_vad(self) -> EnergyVad | None:
        """An energy VAD for the session's turn detection (None for manual turns)."""
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection is None:
            return None
        if detection["type"] == "semantic_vad":
            threshold, silence_ms = 0.5, SEMANTIC_VAD_SILENCE_MS[detection["eagerness"]]
        else:
            threshold, silence_ms = detection["threshold"], detection["silence_duration_ms"]
        return EnergyVad(
            threshold_dbfs=self._link.settings.vad_floor_dbfs + 50.0 * threshold,
            silence_ms=silence_ms,
            rate_hz=self._input.fmt.rate_hz,
            start_ms=VAD_START_MS,
            position_ms=self._input.timeline_ms,
        )

    def _prefix_padding_ms(self) -> float:
        detection = self.config["audio"]["input"]["turn_detection"] or {}
        return float(detection.get("prefix_padding_ms", 300))

    async def _on_append(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "audio"), "")
        data = decode_base64(required(event, "audio", ""), "audio")
        fmt = self._input.fmt
        if len(data) % fmt.bytes_per_sample:
            raise ClientError(
                "invalid_value",
                "Invalid 'audio': PCM16 audio must be whole 16-bit samples (an even number of bytes).",
                "audio",
            )
        if self._input.duration_ms + fmt.duration_ms(len(data)) > MAX_BUFFER_MS:
            raise ClientError(
                "input_audio_buffer_full",
                f"The input audio buffer already holds {self._input.duration_ms / 1000:.1f} s; commit or "
                f"clear it (the emulator keeps at most {MAX_BUFFER_MS / 60000:.0f} minutes).",
                "audio",
            )
        for transition in self._input.append(data):
            if isinstance(transition, SpeechStarted):
                await self._speech_started(transition.onset_ms)
            else:
                await self._speech_stopped(transition.end_ms)
        if self._input.vad is not None and not self._input.vad.in_speech:
            # Idle under VAD: keep only what a future speech_started could reach back to (prefix padding).
            self._input.drop_before(self._input.timeline_ms - self._prefix_padding_ms() - VAD_START_MS - 40)

    async def _speech_started(self, onset_ms: float) -> None:
        start_ms = max(0.0, onset_ms - self._prefix_padding_ms(), self._input.start_ms)
        self._input.drop_before(start_ms)
        self._speech_item_id = new_id("item")
        await self._send(
            "input_audio_buffer.speech_started", audio_start_ms=int(start_ms), item_id=self._speech_item_id
        )
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection and detection["interrupt_response"] and self._active and self._active.in_conversation:
            self._active.cancel("turn_detected")

    async def _speech_stopped(self, end_ms: float) -> None:
        item_id = self._speech_item_id or new_id("item")
        await self._send("input_audio_buffer.speech_stopped", audio_end_ms=int(end_ms), item_id=item_id)
        await self._commit(item_id)
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection and detection["create_response"]:
            if self._active is None:
                await self._start_response(ResponseOptions())
            else:
                logger.info("turn ended while response %s is active; no new response", self._active.id)

    async def _on_commit(self, event: Event) -> None:
        check_keys(event, ("type", "event_id"), "")
        buffered_ms = self._input.duration_ms
        if buffered_ms < MIN_COMMIT_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {buffered_ms:.2f}ms of audio.",
            )
        await self._commit(self._speech_item_id or new_id("item"))

    async def _commit(self, item_id: str) -> None:
        """Turn the buffer into a user audio item: committed, then conversation.item.added/.done."""
        audio_ms = self._input.take()
        self._speech_item_id = None
        stored = StoredItem(wire=user_audio_item(item_id), audio_ms=audio_ms)
        previous = self.items.insert(stored, None)
        await self._send("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        await self._send("conversation.item.added", item=stored.snapshot(), previous_item_id=previous)
        await self._send("conversation.item.done", item=stored.snapshot(), previous_item_id=previous)
        if self.config["audio"]["input"]["transcription"] is not None:
            self._spawn(self._transcribe(stored))

    async def _transcribe(self, stored: StoredItem) -> None:
        """The input transcription, asynchronous like the real one (may land before or after a response)."""
        await asyncio.sleep(self._link.settings.response_delay_s / 2)
        text = self._link.settings.user_transcript or f"({stored.audio_ms / 1000:.1f} seconds of speech)"
        stored.wire["content"][0]["transcript"] = text
        audio = audio_tokens(stored.audio_ms, USER_AUDIO_MS_PER_TOKEN)
        words = word_tokens(text)
        await self._send(
            "conversation.item.input_audio_transcription.delta",
            item_id=stored.id,
            content_index=0,
            delta=text,
        )
        await self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=stored.id,
            content_index=0,
            transcript=text,
            usage={
                "type": "tokens",
                "input_tokens": audio,
                "output_tokens": words,
                "total_tokens": audio + words,
                "input_token_details": {"audio_tokens": audio, "text_tokens": 0},
            },
        )

    async def _on_clear(self, event: Event) -> None:
        check_keys(event, ("type", "event_id"), "")
        self._input.take()
        self._speech_item_id = None
        await self._send("input_audio_buffer.cleared")

    # --- conversation items ----------------------------------------------------------------------------
    def _existing_item(self, event: Event, key: str = "item_id") -> StoredItem:
        item_id = expect_str(required(event, key, ""), key)
        stored = self.items.get(item_id)
        if stored is None:
            raise ClientError("item_not_found", f"Item with item_id '{item_id[:100]}' not found.", key)
        return stored

    async def _on_item_create(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "previous_item_id", "item"), "")
        parsed = parse_item(required(event, "item", ""), new_id("item"), self._input_format)
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
