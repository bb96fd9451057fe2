"""The wire-protocol oracle: validate event dicts against the official `openai` pydantic types (GA).

The `openai` package is a test dependency only; edgevoice never imports it at run time. Its unions
`RealtimeClientEvent` / `RealtimeServerEvent` carry their discriminator in openai's own `PropertyInfo`,
which pydantic cannot see, so a plain `TypeAdapter` would try every member in turn (slow, and an unknown
`type` yields dozens of unreadable errors). We rebuild each union with a real
`pydantic.Field(discriminator="type")`: one lookup by `type`, and a clear message when it is wrong.

The openai models accept unknown keys (`extra="allow"`), so on their own they would pass a beta-shaped
`session.update` that happens to carry `"type": "realtime"`. The real server rejects unknown keys
(`unknown_parameter`), so client events are checked strictly by default: any key the SDK types do not
declare, at any depth, fails. Server events stay lenient, as the SDK itself is: a real server may add fields.

The adapters are built once, on first use, because building them costs a few hundred milliseconds.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent


def _discriminated_adapter(sdk_union: Any) -> pydantic.TypeAdapter[Any]:
    """Turn openai's `Annotated[Union[...], PropertyInfo(...)]` into a pydantic discriminated union."""
    union = typing.get_args(sdk_union)[0]
    members = typing.get_args(union)
    return pydantic.TypeAdapter(
        typing.Annotated[typing.Union[members], pydantic.Field(discriminator="type")]  # noqa: UP007
    )


@functools.cache
def _client_adapter() -> pydantic.TypeAdapter[Any]:
    return _discriminated_adapter(RealtimeClientEvent)


@functools.cache
def _server_adapter() -> pydantic.TypeAdapter[Any]:
    return _discriminated_adapter(RealtimeServerEvent)


def _undeclared_keys(value: Any, path: str) -> list[str]:
    """Paths of keys that no SDK model declares (they landed in `model_extra`), searched recursively."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found.extend(f"{path}.{key}" if path else key for key in value.model_extra or {})
        for name in type(value).model_fields:
            found.extend(_undeclared_keys(getattr(value, name), f"{path}.{name}" if path else name))
    elif isinstance(value, list | tuple):
        for index, element in enumerate(value):
            found.extend(_undeclared_keys(element, f"{path}[{index}]"))
    elif isinstance(value, dict):
        for key, element in value.items():
            found.extend(_undeclared_keys(element, f"{path}.{key}"))
    return found


def _validate(adapter: pydantic.TypeAdapter[Any], event: dict[str, Any], side: str, strict: bool) -> Any:
    summary = {key: event[key] for key in ("type", "event_id") if key in event}
    try:
        parsed = adapter.validate_python(event)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"{side} event {summary} does not match the openai GA types:\n{exc}") from None
    if strict and (undeclared := _undeclared_keys(parsed, "")):
        raise AssertionError(f"{side} event {summary} has keys the openai GA types do not declare: {undeclared}")
    return parsed


def validate_client_event(event: dict[str, Any], *, strict: bool = True) -> Any:
    """Assert that `event` is a valid GA client event; return the parsed openai model.

    With `strict` (the default) a key the SDK does not declare also fails, as it does on the real server.
    """
    return _validate(_client_adapter(), event, "client", strict)


def validate_server_event(event: dict[str, Any], *, strict: bool = False) -> Any:
    """Assert that `event` is a valid GA server event; return the parsed openai model.

    With `strict` a key the SDK does not declare also fails; off by default because servers may add fields.
    """
    return _validate(_server_adapter(), event, "server", strict)
