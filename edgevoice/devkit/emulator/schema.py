"""Validation of `session.update` for the Realtime emulator, and the parsers `response.create` shares.

Parsers return new, normalised values and never modify their input, so a refused `session.update` leaves
the session as it was. Whatever they accept is echoed back in `session.updated`, so it must stay within
what openai's `RealtimeServerEvent` types accept: features the emulator cannot echo faithfully (MCP tools,
transcription sessions) are refused with a clear error rather than half-supported.
"""

from __future__ import annotations

import copy
from typing import Any

from .checks import (
    MAX_ID_LENGTH,
    ClientError,
    check_keys,
    expect_bool,
    expect_choice,
    expect_int,
    expect_list,
    expect_number,
    expect_object,
    expect_str,
    invalid_value,
    join,
    required,
)
from .server_events import default_turn_detection

VOICES_HINT = "alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar"

SESSION_KEYS = (
    "type",
    "model",
    "output_modalities",
    "instructions",
    "audio",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "tracing",
    "truncation",
    "include",
    "prompt",
    "reasoning",
    "parallel_tool_calls",
)
SEMANTIC_VAD_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 250}
"""semantic_vad has no timing fields; the emulator treats it as server_vad with these silence timeouts."""


def apply_session_update(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """The effective session after a partial `session.update`; raises ClientError and changes nothing if
    any part is invalid. Objects such as `turn_detection` are replaced whole, with defaults filled in."""
    session = expect_object(update, "session")
    check_keys(session, SESSION_KEYS, "session")
    kind = required(session, "type", "session")
    if kind == "transcription":
        raise ClientError(
            "invalid_value",
            "Transcription sessions are not supported by the edgevoice emulator; use type 'realtime'.",
            "session.type",
        )
    expect_choice(kind, "session.type", ("realtime",))
    new = copy.deepcopy(current)
    if "model" in session:
        model = expect_str(session["model"], "session.model")
        if model != current["model"]:
            raise ClientError("invalid_value", "A session's model cannot be changed.", "session.model")
    if "output_modalities" in session:
        new["output_modalities"] = parse_output_modalities(session["output_modalities"], "session.output_modalities")
    if "instructions" in session:
        new["instructions"] = expect_str(session["instructions"], "session.instructions")
    if "audio" in session:
        _apply_audio(new["audio"], session["audio"])
    if "tools" in session:
        tools = expect_list(session["tools"], "session.tools")
        new["tools"] = [parse_tool(tool, f"session.tools[{index}]") for index, tool in enumerate(tools)]
    if "tool_choice" in session:
        new["tool_choice"] = parse_tool_choice(session["tool_choice"], "session.tool_choice")
    if "max_output_tokens" in session:
        new["max_output_tokens"] = parse_max_output_tokens(session["max_output_tokens"], "session.max_output_tokens")
    if "tracing" in session:
        new["tracing"] = _parse_tracing(session["tracing"])
    if "truncation" in session:
        new["truncation"] = _parse_truncation(session["truncation"])
    if "include" in session:
        include = expect_list(session["include"], "session.include")
        choices = ("item.input_audio_transcription.logprobs",)
        new["include"] = [expect_choice(v, f"session.include[{i}]", choices) for i, v in enumerate(include)]
    if "prompt" in session:
        new["prompt"] = parse_prompt(session["prompt"], "session.prompt")
    if "reasoning" in session:
        new["reasoning"] = parse_reasoning(session["reasoning"], "session.reasoning")
    if "parallel_tool_calls" in session:
        new["parallel_tool_calls"] = expect_bool(session["parallel_tool_calls"], "session.parallel_tool_calls")
    return new


def _apply_audio(audio: dict[str, Any], update: Any) -> None:
    patch = expect_object(update, "session.audio")
    check_keys(patch, ("input", "output"), "session.audio")
    if "input" in patch:
        given = expect_object(patch["input"], "session.audio.input")
        prefix = "session.audio.input"
        check_keys(given, ("format", "noise_reduction", "transcription", "turn_detection"), prefix)
        target = audio["input"]
        if "format" in given:
            target["format"] = parse_format(given["format"], f"{prefix}.format")
        if "noise_reduction" in given:
            target["noise_reduction"] = _parse_noise_reduction(given["noise_reduction"])
        if "transcription" in given:
            target["transcription"] = _parse_transcription(given["transcription"])
        if "turn_detection" in given:
            target["turn_detection"] = _parse_turn_detection(given["turn_detection"])
    if "output" in patch:
        given = expect_object(patch["output"], "session.audio.output")
        prefix = "session.audio.output"
        check_keys(given, ("format", "voice", "speed"), prefix)
        target = audio["output"]
        if "format" in given:
            target["format"] = parse_format(given["format"], f"{prefix}.format")
        if "voice" in given:
            target["voice"] = parse_voice(given["voice"], f"{prefix}.voice")
        if "speed" in given:
            target["speed"] = expect_number(given["speed"], f"{prefix}.speed", 0.25, 1.5)


def parse_output_modalities(value: Any, param: str) -> list[str]:
    modalities = expect_list(value, param)
    if modalities not in (["audio"], ["text"]):
        raise invalid_value(param, str(modalities), why="Expected ['audio'] (audio and transcript) or ['text'].")
    return list(modalities)


def parse_format(value: Any, param: str) -> dict[str, Any]:
    fmt = expect_object(value, param)
    kind = expect_choice(required(fmt, "type", param), join(param, "type"), ("audio/pcm", "audio/pcmu", "audio/pcma"))
    if kind == "audio/pcm":
        check_keys(fmt, ("type", "rate"), param)
        if "rate" in fmt and fmt["rate"] != 24000:
            raise invalid_value(join(param, "rate"), fmt["rate"], ("24000",))
        return {"type": kind, "rate": 24000}
    check_keys(fmt, ("type",), param)
    return {"type": kind}


def parse_voice(value: Any, param: str) -> str | dict[str, str]:
    if isinstance(value, dict):
        check_keys(value, ("id",), param)
        return {"id": expect_str(required(value, "id", param), join(param, "id"), max_length=MAX_ID_LENGTH)}
    voice = expect_str(value, param, max_length=MAX_ID_LENGTH)
    if not voice:
        raise invalid_value(param, voice, why=f"Built-in voices: {VOICES_HINT}.")
    return voice


def _parse_noise_reduction(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.noise_reduction"
    if value is None:
        return None
    given = expect_object(value, param)
    check_keys(given, ("type", "strength"), param)
    result: dict[str, Any] = {
        "type": expect_choice(required(given, "type", param), f"{param}.type", ("near_field", "far_field"))
    }
    if "strength" in given:
        result["strength"] = expect_number(given["strength"], f"{param}.strength", 0.0, 1.0)
    return result


def _parse_transcription(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.transcription"
    if value is None:
        return None
    given = expect_object(value, param)
    check_keys(given, ("model", "language", "languages", "prompt", "keywords", "delay"), param)
    result: dict[str, Any] = {}
    for key in ("model", "language", "prompt"):
        if key in given:
            result[key] = expect_str(given[key], f"{param}.{key}")
    for key in ("languages", "keywords"):
        if key in given:
            items = expect_list(given[key], f"{param}.{key}")
            result[key] = [expect_str(item, f"{param}.{key}[{index}]") for index, item in enumerate(items)]
    if "delay" in given:
        result["delay"] = expect_choice(given["delay"], f"{param}.delay", ("minimal", "low", "medium", "high", "xhigh"))
    return result


def _parse_turn_detection(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None  # manual turns (push-to-talk)
    given = expect_object(value, param)
    kind = expect_choice(required(given, "type", param), f"{param}.type", ("server_vad", "semantic_vad"))
    result = default_turn_detection(kind)
    if kind == "semantic_vad":
        check_keys(given, ("type", "eagerness", "create_response", "interrupt_response"), param)
        if "eagerness" in given:
            result["eagerness"] = expect_choice(
                given["eagerness"], f"{param}.eagerness", tuple(SEMANTIC_VAD_SILENCE_MS)
            )
    else:
        keys = ("type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms")
        check_keys(given, (*keys, "create_response", "interrupt_response"), param)
        if "threshold" in given:
            result["threshold"] = expect_number(given["threshold"], f"{param}.threshold", 0.0, 1.0)
        for key in ("prefix_padding_ms", "silence_duration_ms"):
            if key in given:
                result[key] = expect_int(given[key], f"{param}.{key}", 0, 10_000)
        if given.get("idle_timeout_ms") is not None:
            result["idle_timeout_ms"] = expect_int(given["idle_timeout_ms"], f"{param}.idle_timeout_ms", 0)
    for key in ("create_response", "interrupt_response"):
        if key in given:
            result[key] = expect_bool(given[key], f"{param}.{key}")
    return result


def parse_tool(value: Any, param: str) -> dict[str, Any]:
    tool = expect_object(value, param)
    kind = required(tool, "type", param)
    if kind == "mcp":
        raise ClientError(
            "invalid_value", "MCP tools are not supported by the edgevoice emulator.", join(param, "type")
        )
    expect_choice(kind, join(param, "type"), ("function",))
    check_keys(tool, ("type", "name", "description", "parameters"), param)
    result: dict[str, Any] = {
        "type": "function",
        "name": expect_str(required(tool, "name", param), join(param, "name"), max_length=MAX_ID_LENGTH),
    }
    if "description" in tool:
        result["description"] = expect_str(tool["description"], join(param, "description"))
    if "parameters" in tool:
        result["parameters"] = copy.deepcopy(expect_object(tool["parameters"], join(param, "parameters")))
    return result


def parse_tool_choice(value: Any, param: str) -> str | dict[str, str]:
    if isinstance(value, dict):
        kind = required(value, "type", param)
        if kind == "mcp":
            raise ClientError(
                "invalid_value", "MCP tools are not supported by the edgevoice emulator.", join(param, "type")
            )
        expect_choice(kind, join(param, "type"), ("function",))
        check_keys(value, ("type", "name"), param)
        return {"type": "function", "name": expect_str(required(value, "name", param), join(param, "name"))}
    return expect_choice(value, param, ("none", "auto", "required"))


def parse_max_output_tokens(value: Any, param: str) -> int | str:
    if value == "inf":
        return "inf"
    if isinstance(value, str):
        raise invalid_value(param, value, ("inf",), "Or an integer from 1 to 4096.")
    return expect_int(value, param, 1, 4096)


def _parse_tracing(value: Any) -> str | dict[str, Any] | None:
    param = "session.tracing"
    if value is None:
        return None
    if value == "auto":
        return "auto"
    given = expect_object(value, param)
    check_keys(given, ("workflow_name", "group_id", "metadata"), param)
    result: dict[str, Any] = {}
    for key in ("workflow_name", "group_id"):
        if key in given:
            result[key] = expect_str(given[key], f"{param}.{key}")
    if "metadata" in given:
        result["metadata"] = copy.deepcopy(expect_object(given["metadata"], f"{param}.metadata"))
    return result


def _parse_truncation(value: Any) -> str | dict[str, Any]:
    param = "session.truncation"
    if isinstance(value, str):
        return expect_choice(value, param, ("auto", "disabled"))
    given = expect_object(value, param)
    check_keys(given, ("type", "retention_ratio", "token_limits"), param)
    expect_choice(required(given, "type", param), f"{param}.type", ("retention_ratio",))
    result: dict[str, Any] = {
        "type": "retention_ratio",
        "retention_ratio": expect_number(
            required(given, "retention_ratio", param), f"{param}.retention_ratio", 0.0, 1.0
        ),
    }
    if "token_limits" in given:
        limits = expect_object(given["token_limits"], f"{param}.token_limits")
        check_keys(limits, ("post_instructions",), f"{param}.token_limits")
        result["token_limits"] = {}
        if "post_instructions" in limits:
            result["token_limits"]["post_instructions"] = expect_int(
                limits["post_instructions"], f"{param}.token_limits.post_instructions", 0
            )
    return result


def parse_prompt(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    given = expect_object(value, param)
    check_keys(given, ("id", "version", "variables"), param)
    result: dict[str, Any] = {"id": expect_str(required(given, "id", param), join(param, "id"))}
    if given.get("version") is not None:
        result["version"] = expect_str(given["version"], join(param, "version"))
    if given.get("variables") is not None:
        variables = expect_object(given["variables"], join(param, "variables"))
        result["variables"] = {
            key: expect_str(text, join(join(param, "variables"), key)) for key, text in variables.items()
        }
    return result


def parse_reasoning(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    given = expect_object(value, param)
    check_keys(given, ("effort",), param)
    if given.get("effort") is None:
        return {}
    return {
        "effort": expect_choice(given["effort"], join(param, "effort"), ("minimal", "low", "medium", "high", "xhigh"))
    }
