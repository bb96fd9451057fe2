"""Tool schemas are checked when a tool is registered, so that a controller's mistake never fails a session."""

from __future__ import annotations

from typing import Any

import pytest

from edgevoice.realtime.tool_schema import MAX_BYTES, MAX_DEPTH, refused_tools, schema_problem
from edgevoice.realtime.tools import BadSchema, NameTaken, Tool, ToolRegistry


async def never(call_id: str, arguments: str) -> str:
    return ""


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({"type": "string"}, "must be a JSON Schema object"),
        ([], "must be a JSON Schema object"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "parameters.properties.a.type = 'strin'"),
        ({"type": "object", "properties": {"a": 5}}, "parameters.properties.a must be a schema"),
        ({"type": "object", "properties": {}, "required": ["a"]}, "required must list names of its properties"),
        ({"type": "object", "properties": {"a": {"type": "array", "items": 3}}}, "items must be a schema"),
        ({"type": "object", "properties": {"a": {"enum": []}}}, "enum must be a non-empty list"),
        ({"type": "object", "properties": {"a": {"anyOf": [{"type": "?"}]}}}, "anyOf[0].type"),
        ({"type": "object", "description": 7}, "description must be a string"),
        ({"type": "object", "x": float("nan")}, "not JSON"),
        ({"type": "object", "description": "d" * MAX_BYTES}, "the limit is"),
        (nested(MAX_DEPTH + 2), "nested more than"),
    ],
)
def test_a_schema_the_server_would_refuse_is_named(parameters: Any, problem: str) -> None:
    found = schema_problem(parameters)
    assert found is not None and problem in found, found


def test_good_schemas_pass() -> None:
    assert schema_problem({"type": "object", "properties": {}}) is None
    assert schema_problem(nested(MAX_DEPTH - 1)) is None
    full = {
        "type": "object",
        "description": "move the arm",
        "properties": {
            "joint": {"type": "string", "enum": ["elbow", "wrist"]},
            "angles": {"type": "array", "items": {"type": "number"}},
            "speed": {"type": ["number", "null"], "description": "deg/s"},
            "mode": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "required": ["joint"],
    }
    assert schema_problem(full) is None


def test_the_registry_refuses_a_bad_schema_and_a_taken_name() -> None:
    registry = ToolRegistry()
    with pytest.raises(BadSchema, match="'arm'"):
        registry.register(Tool("arm", "", {"type": "string"}, never, owner="robot"))
    assert "arm" not in registry
    registry.register(Tool("arm", "", {"type": "object", "properties": {}}, never, owner="robot"))
    with pytest.raises(NameTaken, match="already served by robot"):
        registry.register(Tool("arm", "", {"type": "object", "properties": {}}, never, owner="other"))


def test_the_tool_a_server_error_blames_is_found_by_its_param_or_its_name_in_the_message() -> None:
    declared = [{"type": "function", "name": "arm"}, {"type": "function", "name": "wheels"}]
    assert refused_tools("Invalid schema", "session.tools[1].parameters", declared) == ["wheels"]
    assert refused_tools("Invalid schema for function 'arm': no", None, declared) == ["arm"]
    assert refused_tools("Invalid schema", "session.tools[7].parameters", declared) == []  # not one we sent
    assert refused_tools("Invalid value: 'arm'", "session.voice", declared) == []  # not about tools
    assert refused_tools("a tool is invalid", "session.tools", declared) == []  # names none: drop none
    # the name wins over an index that may point into an earlier update's list
    assert refused_tools("Invalid schema for function 'arm'", "session.tools[1].parameters", declared) == ["arm"]
