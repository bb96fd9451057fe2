"""One response of the Realtime emulator, from `response.created` to `response.done`.

A response runs as its own task so the session keeps reading client events meanwhile (a `response.cancel`
or a barge-in must be able to stop it). The event order is the one in docs/realtime.md, "A response's
event order". A cancelled response still closes what it opened (`…done` events for the audio, transcript,
content part and item, the item marked `incomplete`) before `response.done`, so clients can finish their
bookkeeping the same way.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np

from .audio import synthesize_tones, wire_format
from .items import ASSISTANT_AUDIO_MS_PER_TOKEN, ItemStore, StoredItem
from .requests import ResponseOptions
from .script import EmulatorSettings, FunctionCallReply, Reply, ResponseFailure, SpokenReply
from .server_events import (
    assistant_message_item,
    audio_tokens,
    function_call_item,
    new_id,
    rate_limits_event,
    server_event,
    usage,
    word_tokens,
)

logger = logging.getLogger("edgevoice.emulator")

CancelReason = Literal["turn_detected", "client_cancelled"]
ARGUMENT_DELTAS = 4
"""Function-call arguments are streamed in about this many pieces."""


class ResponseLink(Protocol):
    """What a response needs from its connection."""

    @property
    def settings(self) -> EmulatorSettings: ...

    async def send_event(self, event: dict[str, Any]) -> None: ...


def transcript_pieces(text: str) -> list[str]:
    """Split text into word deltas that join back into it (" from", " the", ...), as the server streams."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or ([text] if text else [])


class ResponseRun:
    """One response: its state, its streaming task, and how it ends (completed, cancelled or failed)."""

    def __init__(
        self,
        link: ResponseLink,
        items: ItemStore,
        session_config: dict[str, Any],
        options: ResponseOptions,
        reply: Reply | None,
        failure: ResponseFailure | None,
        on_finished: Callable[[ResponseRun], None],
    ) -> None:
        self.id = new_id("resp")
        self._link = link
        self._items = items
        self._config = session_config
        self._options = options
        self._reply = reply
        self._failure = failure
        self._on_finished = on_finished
        self._output: list[StoredItem] = []
        self._cancel_reason: CancelReason | None = None
        self._cancelled = asyncio.Event()
        self._input_tokens = items.input_token_estimate()
        instructions = options.instructions if options.instructions is not None else session_config["instructions"]
        self._input_tokens = (self._input_tokens[0] + word_tokens(instructions), self._input_tokens[1])

    @property
    def in_conversation(self) -> bool:
        return self._options.in_conversation

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_reason is not None

    def cancel(self, reason: CancelReason) -> None:
        """Stop streaming at once; the task then closes the response with status `cancelled`."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
            self._cancelled.set()

    async def run(self) -> None:
        """The whole lifecycle; never raises except on task cancellation (the connection going away)."""
        try:
            await self._send("response.created", response=self._response_object("in_progress"))
            await self._link.send_event(rate_limits_event(sum(self._input_tokens) + 4096))
            if self._failure is not None or self._reply is None:
                await self._finish_failed()
            elif isinstance(self._reply, FunctionCallReply):
                await self._call_function(self._reply)
            else:
                await self._speak(self._reply)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("response %s failed inside the emulator", self.id)
        finally:
            self._on_finished(self)  # idempotent; normally already called just before response.done

    # --- the two kinds of reply ------------------------------------------------------------------------
    async def _speak(self, reply: SpokenReply) -> None:
        audio_out = self._modalities() == ["audio"]
        stored = StoredItem(wire=assistant_message_item(new_id("item")))
        await self._announce(stored)
        empty_part = {"type": "audio", "transcript": ""} if audio_out else {"type": "text", "text": ""}
        stored.wire["content"] = [
            {"type": "output_audio", "transcript": ""} if audio_out else {"type": "output_text", "text": ""}
        ]
        await self._send("response.content_part.added", **self._where(stored), part=empty_part)
        if not await self._wait_unless_cancelled(self._link.settings.response_delay_s):
            if audio_out:
                await self._stream_audio(stored, reply)
            else:
                await self._stream_text(stored, reply)
        if audio_out:
            transcript = stored.transcript
            await self._send("response.output_audio.done", **self._where(stored))
            await self._send("response.output_audio_transcript.done", **self._where(stored), transcript=transcript)
            await self._send(
                "response.content_part.done",
                **self._where(stored),
                part={"type": "audio", "transcript": transcript},
            )
        else:
            text = stored.wire["content"][0]["text"]
            await self._send("response.output_text.done", **self._where(stored), text=text)
            await self._send("response.content_part.done", **self._where(stored), part={"type": "text", "text": text})
        await self._close_item(stored)
        await self._finish()

    async def _stream_audio(self, stored: StoredItem, reply: SpokenReply) -> None:
        settings = self._link.settings
        fmt = wire_format(self._options.output_format or self._config["audio"]["output"]["format"])
        if reply.pcm:
            samples = np.frombuffer(reply.pcm[: len(reply.pcm) // 2 * 2], "<i2").astype(np.int16)
            if fmt.rate_hz != 24000:  # G.711 at 8 kHz: every third sample is enough for a test's speech
                samples = samples[:: 24000 // fmt.rate_hz]
        else:
            samples = synthesize_tones(reply.tones, settings.amplitude, fmt.rate_hz)
        chunk_len = fmt.rate_hz * settings.chunk_ms // 1000
        chunk_count = max(1, math.ceil(samples.size / chunk_len))
        pieces = transcript_pieces(reply.text)
        pieces_by_chunk: list[list[str]] = [[] for _ in range(chunk_count)]
        for index, piece in enumerate(pieces):
            pieces_by_chunk[index * chunk_count // len(pieces)].append(piece)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(chunk_count):
            if self.cancel_requested:
                return
            position_ms = stored.audio_ms
            chunk = samples[index * chunk_len : (index + 1) * chunk_len]
            if chunk.size:
                delta = base64.b64encode(fmt.encode(chunk)).decode("ascii")
                await self._send("response.output_audio.delta", **self._where(stored), delta=delta)
                stored.audio_ms += chunk.size * 1000.0 / fmt.rate_hz
            for piece in pieces_by_chunk[index]:
                stored.add_transcript(piece, at_ms=position_ms)
                await self._send("response.output_audio_transcript.delta", **self._where(stored), delta=piece)
            if settings.realtime_factor > 0:
                deadline = started + (index + 1) * settings.chunk_ms / 1000.0 / settings.realtime_factor
                if await self._wait_unless_cancelled(deadline - loop.time()):
                    return
            else:
                await asyncio.sleep(0)  # let client events (a cancel) in between chunks

    async def _stream_text(self, stored: StoredItem, reply: SpokenReply) -> None:
        for piece in transcript_pieces(reply.text):
            if self.cancel_requested:
                return
            stored.wire["content"][0]["text"] += piece
            await self._send("response.output_text.delta", **self._where(stored), delta=piece)
            await asyncio.sleep(0)

    async def _call_function(self, reply: FunctionCallReply) -> None:
        stored = StoredItem(wire=function_call_item(new_id("item"), reply.call_id or new_id("call"), reply.name))
        await self._announce(stored)
        arguments = reply.arguments
        if not await self._wait_unless_cancelled(self._link.settings.response_delay_s):
            step = max(1, math.ceil(len(arguments) / ARGUMENT_DELTAS))
            for start in range(0, len(arguments), step):
                if self.cancel_requested:
                    break
                delta = arguments[start : start + step]
                stored.wire["arguments"] += delta
                await self._send("response.function_call_arguments.delta", **self._call_where(stored), delta=delta)
                await asyncio.sleep(0)
        if not self.cancel_requested:
            await self._send(
                "response.function_call_arguments.done",
                **self._call_where(stored),
                name=reply.name,
                arguments=arguments,
            )
        await self._close_item(stored)
        await self._finish()

    # --- shared steps ----------------------------------------------------------------------------------
    async def _announce(self, stored: StoredItem) -> None:
        """Add the output item to the conversation (unless out of band) and announce it."""
        self._output.append(stored)
        if self.in_conversation:
            previous = self._items.insert(stored, None)
            await self._send("conversation.item.added", item=stored.snapshot(), previous_item_id=previous)
        await self._send(
            "response.output_item.added",
            response_id=self.id,
            output_index=self._output_index(stored),
            item=stored.snapshot(),
        )

    async def _close_item(self, stored: StoredItem) -> None:
        stored.wire["status"] = "incomplete" if self.cancel_requested else "completed"
        await self._send(
            "response.output_item.done",
            response_id=self.id,
            output_index=self._output_index(stored),
            item=stored.snapshot(),
        )
        if self.in_conversation and self._items.get(stored.id) is not None:
            previous = self._items.previous_id(stored.id)
            await self._send("conversation.item.done", item=stored.snapshot(), previous_item_id=previous)

    async def _finish(self) -> None:
        if self._cancel_reason is not None:
            details: dict[str, Any] | None = {"type": "cancelled", "reason": self._cancel_reason}
            status = "cancelled"
        else:
            details, status = None, "completed"
        output_text = output_audio = 0
        for item in self._output:
            if item.wire["type"] == "function_call":
                output_text += max(1, word_tokens(item.wire["arguments"]))
            elif item.is_assistant_audio:
                output_text += word_tokens(item.transcript)
                output_audio += audio_tokens(item.audio_ms, ASSISTANT_AUDIO_MS_PER_TOKEN)
            else:
                output_text += word_tokens(item.wire["content"][0].get("text") or "")
        totals = usage(*self._input_tokens, output_text, output_audio)
        self._on_finished(self)  # before the send: a client answering response.done at once must find us idle
        await self._send("response.done", response=self._response_object(status, details, totals))

    async def _finish_failed(self) -> None:
        failure = self._failure or ResponseFailure("server_error", "The emulator had no reply to give.")
        details = {
            "type": "failed",
            "error": {"type": "invalid_request_error", "code": failure.code, "message": failure.message},
        }
        self._on_finished(self)
        await self._send("response.done", response=self._response_object("failed", details, usage(0, 0, 0, 0)))

    async def _wait_unless_cancelled(self, seconds: float) -> bool:
        """Sleep `seconds`, waking early on cancel; True if the response was cancelled."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return self.cancel_requested
        try:
            async with asyncio.timeout(seconds):
                await self._cancelled.wait()
        except TimeoutError:
            pass
        return self.cancel_requested

    def _modalities(self) -> list[str]:
        return list(self._options.output_modalities or self._config["output_modalities"])

    def _response_object(
        self, status: str, details: dict[str, Any] | None = None, totals: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        output = self._config["audio"]["output"]
        voice = self._options.voice or output["voice"]
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [item.snapshot() for item in self._output] if status != "in_progress" else [],
            "conversation_id": self._items.id if self.in_conversation else None,
            "output_modalities": self._modalities(),
            "max_output_tokens": self._options.max_output_tokens or self._config["max_output_tokens"],
            "audio": {
                "output": {
                    "format": self._options.output_format or output["format"],
                    "voice": voice if isinstance(voice, str) else voice["id"],  # no {"id"} form here
                }
            },
            "metadata": self._options.metadata,
            "usage": totals,
        }

    def _output_index(self, stored: StoredItem) -> int:
        return self._output.index(stored)

    def _where(self, stored: StoredItem) -> dict[str, Any]:
        """The address fields of content events: response, item, output and content index."""
        return {
            "response_id": self.id,
            "item_id": stored.id,
            "output_index": self._output_index(stored),
            "content_index": 0,
        }

    def _call_where(self, stored: StoredItem) -> dict[str, Any]:
        return {
            "response_id": self.id,
            "item_id": stored.id,
            "output_index": self._output_index(stored),
            "call_id": stored.wire["call_id"],
        }

    async def _send(self, event_type: str, **fields: Any) -> None:
        await self._link.send_event(server_event(event_type, **fields))
