"""The user's side of an emulator session: the input audio buffer, turn detection, user items.

`UserTurns` handles the three `input_audio_buffer.*` client events. Under server or semantic VAD an energy
VAD watches every append and reports the turn's start and end (`speech_started` / `speech_stopped`, both
on the session's input timeline); a turn's end, or an explicit commit, turns the buffer into a user audio
item, and with transcription on, its transcript follows asynchronously like the real one. What a turn
means for responses (cancel the active one, create the next) is the session's decision: it hears of both
ends through the two callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from .audio import EnergyVad, InputAudioBuffer, SpeechStarted, WireFormat, wire_format
from .checks import ClientError, check_keys, decode_base64, required
from .items import USER_AUDIO_MS_PER_TOKEN, ItemStore, StoredItem
from .schema import SEMANTIC_VAD_SILENCE_MS
from .script import EmulatorSettings
from .server_events import audio_tokens, new_id, server_event, user_audio_item, word_tokens

logger = logging.getLogger("edgevoice.emulator")

Event = dict[str, Any]

MIN_COMMIT_MS = 100.0
MAX_BUFFER_MS = 10 * 60 * 1000.0
"""Uncommitted audio the emulator holds at most, so a client that never commits cannot exhaust memory."""
VAD_START_MS = 60
"""Speech must last this long before `speech_started`: short clicks are not turns."""


class TurnLink(Protocol):
    """What the user's side needs from its connection."""

    @property
    def settings(self) -> EmulatorSettings: ...

    async def send_event(self, event: Event) -> None: ...


class UserTurns:
    """The input audio buffer of one session, its VAD, and the user items its turns become."""

    def __init__(
        self,
        link: TurnLink,
        items: ItemStore,
        input_config: dict[str, Any],
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        on_speech_started: Callable[[], None],
        on_turn_ended: Callable[[], Awaitable[None]],
    ) -> None:
        self._link = link
        self._items = items
        self._config = input_config
        self._spawn = spawn
        self._on_speech_started = on_speech_started
        self._on_turn_ended = on_turn_ended
        self._buffer = InputAudioBuffer(self.format, None)  # the session's input timeline starts at 0
        self._buffer.vad = self._make_vad()
        self._speech_item_id: str | None = None

    @property
    def format(self) -> WireFormat:
        """The session's input audio format (what appends and user audio items carry)."""
        return wire_format(self._config["format"])

    def configure(self, input_config: dict[str, Any]) -> None:
        """Take a new `session.audio.input` after a `session.update`."""
        old, self._config = self._config, input_config
        format_changed = input_config["format"] != old["format"]
        if format_changed:
            # The buffered bytes mean nothing in the new format: start an empty buffer (same timeline).
            self._buffer = InputAudioBuffer(self.format, None, self._buffer.timeline_ms)
        if format_changed or input_config["turn_detection"] != old["turn_detection"]:
            self._buffer.vad = self._make_vad()  # a turn in progress under the old settings is dropped
            self._speech_item_id = None

    def _make_vad(self) -> EnergyVad | None:
        """An energy VAD for the session's turn detection (None for manual turns)."""
        detection = self._config["turn_detection"]
        if detection is None:
            return None
        if detection["type"] == "semantic_vad":
            threshold, silence_ms = 0.5, SEMANTIC_VAD_SILENCE_MS[detection["eagerness"]]
        else:
            threshold, silence_ms = detection["threshold"], detection["silence_duration_ms"]
        return EnergyVad(
            threshold_dbfs=self._link.settings.vad_floor_dbfs + 50.0 * threshold,
            silence_ms=silence_ms,
            rate_hz=self._buffer.fmt.rate_hz,
            start_ms=VAD_START_MS,
            position_ms=self._buffer.timeline_ms,
        )

    def _prefix_padding_ms(self) -> float:
        detection = self._config["turn_detection"] or {}
        return float(detection.get("prefix_padding_ms", 300))

    # --- client events ---------------------------------------------------------------------------------
    async def on_append(self, event: Event) -> None:
        check_keys(event, ("type", "event_id", "audio"), "")
        data = decode_base64(required(event, "audio", ""), "audio")
        fmt = self._buffer.fmt
        if len(data) % fmt.bytes_per_sample:
            raise ClientError(
                "invalid_value",
                "Invalid 'audio': PCM16 audio must be whole 16-bit samples (an even number of bytes).",
                "audio",
            )
        if self._buffer.duration_ms + fmt.duration_ms(len(data)) > MAX_BUFFER_MS:
            raise ClientError(
                "input_audio_buffer_full",
                f"The input audio buffer already holds {self._buffer.duration_ms / 1000:.1f} s; commit or "
                f"clear it (the emulator keeps at most {MAX_BUFFER_MS / 60000:.0f} minutes).",
                "audio",
            )
        for transition in self._buffer.append(data):
            if isinstance(transition, SpeechStarted):
                await self._speech_started(transition.onset_ms)
            else:
                await self._speech_stopped(transition.end_ms)
        if self._buffer.vad is not None and not self._buffer.vad.in_speech:
            # Idle under VAD: keep only what a future speech_started could reach back to (prefix padding).
            self._buffer.drop_before(self._buffer.timeline_ms - self._prefix_padding_ms() - VAD_START_MS - 40)

    async def on_commit(self, event: Event) -> None:
        check_keys(event, ("type", "event_id"), "")
        buffered_ms = self._buffer.duration_ms
        if buffered_ms < MIN_COMMIT_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {buffered_ms:.2f}ms of audio.",
            )
        await self._commit(self._speech_item_id or new_id("item"))

    async def on_clear(self, event: Event) -> None:
        check_keys(event, ("type", "event_id"), "")
        self._buffer.take()
        self._speech_item_id = None
        await self._send("input_audio_buffer.cleared")

    # --- turns -------------------------------------------------------------------------------------------
    async def _speech_started(self, onset_ms: float) -> None:
        start_ms = max(0.0, onset_ms - self._prefix_padding_ms(), self._buffer.start_ms)
        self._buffer.drop_before(start_ms)
        self._speech_item_id = new_id("item")
        await self._send(
            "input_audio_buffer.speech_started", audio_start_ms=int(start_ms), item_id=self._speech_item_id
        )
        self._on_speech_started()

    async def _speech_stopped(self, end_ms: float) -> None:
        item_id = self._speech_item_id or new_id("item")
        await self._send("input_audio_buffer.speech_stopped", audio_end_ms=int(end_ms), item_id=item_id)
        await self._commit(item_id)
        await self._on_turn_ended()

    async def _commit(self, item_id: str) -> None:
        """Turn the buffer into a user audio item: committed, then conversation.item.added/.done."""
        audio_ms = self._buffer.take()
        self._speech_item_id = None
        stored = StoredItem(wire=user_audio_item(item_id), audio_ms=audio_ms)
        previous = self._items.insert(stored, None)
        await self._send("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        await self._send("conversation.item.added", item=stored.snapshot(), previous_item_id=previous)
        await self._send("conversation.item.done", item=stored.snapshot(), previous_item_id=previous)
        if self._config["transcription"] is not None:
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

    async def _send(self, event_type: str, **fields: Any) -> None:
        await self._link.send_event(server_event(event_type, **fields))
