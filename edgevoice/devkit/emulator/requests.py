"""Validation of `response.create` options and `conversation.item.create` items for the Realtime emulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .audio import WireFormat
from .checks import (
    MAX_ID_LENGTH,
    ClientError,
    check_keys,
    decode_base64,
    expect_bool,
    expect_choice,
    expect_list,
    expect_object,
    expect_str,
    invalid_value,
    optional_id,
    required,
)
from .schema import (
    parse_format,
    parse_max_output_tokens,
    parse_output_modalities,
    parse_prompt,
    parse_reasoning,
    parse_tool,
    parse_tool_choice,
    parse_voice,
)


# --- response.create ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResponseOptions:
    """What the emulator takes from `response.create`'s optional `response` object.

    Instructions, tools and the like are accepted (and validated) but do not change the scripted reply.
    """

    output_modalities: list[str] | None = None
    instructions: str | None = None
    in_conversation: bool = True
    """`conversation: "none"` makes an out-of-band response whose items are not added to the conversation."""
    metadata: dict[str, str] | None = None
    max_output_tokens: int | str | None = None
    output_format: dict[str, Any] | None = None
    voice: str | dict[str, str] | None = None


RESPONSE_KEYS = (
    "output_modalities",
    "instructions",
    "audio",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "metadata",
    "prompt",
    "reasoning",
    "parallel_tool_calls",
    "conversation",
    "input",
)


def parse_response_options(value: Any) -> ResponseOptions:
    if value is None:
        return ResponseOptions()
    given = expect_object(value, "response")
    check_keys(given, RESPONSE_KEYS, "response")
    output_format: dict[str, Any] | None = None
    voice: str | dict[str, str] | None = None
    if "audio" in given:
        audio = expect_object(given["audio"], "response.audio")
        check_keys(audio, ("output",), "response.audio")
        if "output" in audio:
            output = expect_object(audio["output"], "response.audio.output")
            check_keys(output, ("format", "voice"), "response.audio.output")
            if "format" in output:
                output_format = parse_format(output["format"], "response.audio.output.format")
            if "voice" in output:
                voice = parse_voice(output["voice"], "response.audio.output.voice")
    for index, tool in enumerate(expect_list(given.get("tools", []), "response.tools")):
        parse_tool(tool, f"response.tools[{index}]")
    if "tool_choice" in given:
        parse_tool_choice(given["tool_choice"], "response.tool_choice")
    if "prompt" in given:
        parse_prompt(given["prompt"], "response.prompt")
    if "reasoning" in given:
        parse_reasoning(given["reasoning"], "response.reasoning")
    if "parallel_tool_calls" in given:
        expect_bool(given["parallel_tool_calls"], "response.parallel_tool_calls")
    for index, entry in enumerate(expect_list(given.get("input", []), "response.input")):
        expect_str(
            required(expect_object(entry, f"response.input[{index}]"), "type", f"response.input[{index}]"),
            f"response.input[{index}].type",
        )
    metadata: dict[str, str] | None = None
    if given.get("metadata") is not None:
        raw = expect_object(given["metadata"], "response.metadata")
        if len(raw) > 16:
            raise invalid_value("response.metadata", f"{len(raw)} keys", why="At most 16 key-value pairs.")
        metadata = {
            expect_str(k, "response.metadata", max_length=64): expect_str(v, f"response.metadata.{k}", max_length=512)
            for k, v in raw.items()
        }
    conversation = "auto"
    if given.get("conversation") is not None:
        conversation = expect_choice(given["conversation"], "response.conversation", ("auto", "none"))
    return ResponseOptions(
        output_modalities=(
            parse_output_modalities(given["output_modalities"], "response.output_modalities")
            if "output_modalities" in given
            else None
        ),
        instructions=expect_str(given["instructions"], "response.instructions") if "instructions" in given else None,
        in_conversation=conversation == "auto",
        metadata=metadata,
        max_output_tokens=(
            parse_max_output_tokens(given["max_output_tokens"], "response.max_output_tokens")
            if "max_output_tokens" in given
            else None
        ),
        output_format=output_format,
        voice=voice,
    )


# --- conversation.item.create ------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedItem:
    """A client-created item in its server form, plus what the emulator needs for token estimates."""

    wire: dict[str, Any]
    audio_ms: float = 0.0


_ITEM_COMMON = ("id", "type", "object", "status")
_PART_KEYS = {
    "input_text": ("type", "text"),
    "input_audio": ("type", "audio", "transcript"),
    "input_image": ("type", "image_url", "detail"),
    "output_text": ("type", "text"),
}
_PARTS_BY_ROLE = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text",),
}


def parse_item(value: Any, item_id: str, input_format: WireFormat) -> ParsedItem:
    """Validate the `item` of `conversation.item.create`; `item_id` is used when the client gave none."""
    item = expect_object(value, "item")
    kind = expect_str(required(item, "type", "item"), "item.type")
    if "object" in item and item["object"] != "realtime.item":
        raise invalid_value("item.object", item["object"], ("realtime.item",))
    if "status" in item:
        expect_choice(item["status"], "item.status", ("completed", "incomplete", "in_progress"))
    base = {
        "id": optional_id(item, "id", "item") or item_id,
        "object": "realtime.item",
        "type": kind,
        "status": "completed",
    }
    if kind == "function_call_output":
        check_keys(item, (*_ITEM_COMMON, "call_id", "output"), "item")
        base["call_id"] = expect_str(required(item, "call_id", "item"), "item.call_id", max_length=MAX_ID_LENGTH)
        base["output"] = expect_str(required(item, "output", "item"), "item.output")
        return ParsedItem(base)
    if kind == "function_call":
        check_keys(item, (*_ITEM_COMMON, "call_id", "name", "arguments"), "item")
        base["name"] = expect_str(required(item, "name", "item"), "item.name", max_length=MAX_ID_LENGTH)
        base["arguments"] = expect_str(required(item, "arguments", "item"), "item.arguments")
        base["call_id"] = optional_id(item, "call_id", "item") or f"call_{item_id.removeprefix('item_')}"
        return ParsedItem(base)
    if kind != "message":
        raise invalid_value(
            "item.type",
            kind,
            ("message", "function_call", "function_call_output"),
            "MCP items are not supported.",
        )
    check_keys(item, (*_ITEM_COMMON, "role", "content"), "item")
    role = expect_choice(required(item, "role", "item"), "item.role", ("user", "assistant", "system"))
    parts = expect_list(required(item, "content", "item"), "item.content")
    if not parts:
        raise invalid_value("item.content", "[]", why="A message needs at least one content part.")
    content: list[dict[str, Any]] = []
    audio_ms = 0.0
    for index, raw in enumerate(parts):
        param = f"item.content[{index}]"
        part = expect_object(raw, param)
        part_type = expect_str(required(part, "type", param), f"{param}.type")
        if role == "assistant" and part_type == "output_audio":
            raise ClientError(
                "invalid_value",
                "Assistant audio cannot be created with conversation.item.create; replay it as 'output_text'.",
                f"{param}.type",
            )
        expect_choice(part_type, f"{param}.type", _PARTS_BY_ROLE[role])
        check_keys(part, _PART_KEYS[part_type], param)
        if part_type in ("input_text", "output_text"):
            content.append({"type": part_type, "text": expect_str(required(part, "text", param), f"{param}.text")})
        elif part_type == "input_audio":
            audio = decode_base64(part.get("audio", ""), f"{param}.audio")
            audio_ms += input_format.duration_ms(len(audio))
            transcript = part.get("transcript")
            content.append(
                {
                    "type": "input_audio",
                    "transcript": None if transcript is None else expect_str(transcript, f"{param}.transcript"),
                }
            )
        else:
            image = {
                "type": "input_image",
                "image_url": expect_str(required(part, "image_url", param), f"{param}.image_url"),
            }
            if "detail" in part:
                image["detail"] = expect_choice(part["detail"], f"{param}.detail", ("auto", "low", "high"))
            content.append(image)
    return ParsedItem({**base, "role": role, "content": content}, audio_ms=audio_ms)
