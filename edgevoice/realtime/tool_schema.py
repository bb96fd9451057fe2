"""Is a tool's `parameters` a JSON Schema the Realtime API will take? Checked when a tool is registered.

A schema the server refuses would fail the whole session (its `session.update` is refused), so a controller's
mistake would put the device in `error`: it is refused at registration instead, with what is wrong. The check is
the subset of JSON Schema that function tools use: an object at the top, known types, `properties` of schemas,
`items` a schema, `required` names of properties, `enum` a list; bounded in depth and size.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 8  # nested schemas (properties of properties of ...)
MAX_BYTES = 16 * 1024  # the schema as JSON
TYPES = frozenset({"object", "string", "number", "integer", "boolean", "array", "null"})
NESTED = ("anyOf", "oneOf", "allOf")


def schema_problem(parameters: Any) -> str | None:
    """What is wrong with `parameters` as a tool's schema, or None if nothing is."""
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        return 'parameters must be a JSON Schema object: {"type": "object", "properties": {...}}'
    try:
        size = len(json.dumps(parameters, allow_nan=False))
    except (TypeError, ValueError):
        return "parameters hold something that is not JSON (a nan, an infinity, or a value of another type)"
    if size > MAX_BYTES:
        return f"parameters are {size} bytes of JSON; the limit is {MAX_BYTES}"
    return _problem(parameters, "parameters", 0)


def _problem(schema: Any, where: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"{where}: schemas nested more than {MAX_DEPTH} deep"
    if not isinstance(schema, dict):
        return f"{where} must be a schema (an object)"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in TYPES:
            return f"{where}.type = {k!r}: use one of {', '.join(sorted(TYPES))}"
    if "description" in schema and not isinstance(schema["description"], str):
        return f"{where}.description must be a string"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}.properties must be an object of schemas"
    for name, sub in properties.items():
        if (problem := _problem(sub, f"{where}.properties.{name}", depth + 1)) is not None:
            return problem
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) and r in properties for r in required):
        return f"{where}.required must list names of its properties"
    if "items" in schema and (problem := _problem(schema["items"], f"{where}.items", depth + 1)) is not None:
        return problem
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return f"{where}.enum must be a non-empty list"
    for key in NESTED:
        if key in schema:
            options = schema[key]
            if not isinstance(options, list) or not options:
                return f"{where}.{key} must be a non-empty list of schemas"
            for i, sub in enumerate(options):
                if (problem := _problem(sub, f"{where}.{key}[{i}]", depth + 1)) is not None:
                    return problem
    return None


_TOOL_PARAM = re.compile(r"(?:^|\.)tools\[(\d+)\]")
_QUOTED = re.compile(r"""['"`]([A-Za-z0-9_-]{1,64})['"`]""")


def refused_tools(message: str, param: str | None, declared: list[dict[str, Any]]) -> list[str]:
    """The tools of `declared` (the list our last `session.update` sent) that a server's error blames, or []
    when it is not about a tool. The server names the culprit in its message ("Invalid schema for function
    'arm': ...") or by `param` (`session.tools[2].parameters`); the name is trusted first, as an index may
    point into an update sent before the last one. A message about tools that names none blames none (the
    caller cannot tell which to drop)."""
    names = [str(tool.get("name", "")) for tool in declared]
    param = param or ""
    index = _TOOL_PARAM.search(param)
    if (
        index is None
        and not param.startswith(("session.tools", "tools"))
        and not re.search(r"tool|function", message, re.I)
    ):
        return []
    named = [name for name in dict.fromkeys(_QUOTED.findall(message)) if name in names]
    if named:
        return named
    if index is not None and int(index.group(1)) < len(names):
        return [names[int(index.group(1))]]
    return []
