"""The model catalogue agrees with the installed openai SDK, and config, session.update and pricing follow it."""

from __future__ import annotations

import ast
import datetime
import inspect
import re
import typing
from pathlib import Path

import pytest
from conformance import validate_client_event
from openai.types.realtime import RealtimeReasoning, realtime_session_create_request
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest

from edgevoice.config import parse_config
from edgevoice.config_warnings import config_warnings
from edgevoice.realtime import events, models
from edgevoice.realtime.settings import ModelPrice, RealtimeSettings, UsageSettings
from edgevoice.realtime.usage import UsageMeter

BEFORE_JAN_2027 = datetime.date(2026, 12, 7)
AFTER_JAN_2027 = datetime.date(2027, 2, 1)
FULL_USAGE = {
    "input_token_details": {
        "text_tokens": 1000, "audio_tokens": 2000, "image_tokens": 300,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 200},
    },
    "output_token_details": {"text_tokens": 400, "audio_tokens": 800},
}  # fmt: skip


def _sdk_models() -> set[str]:
    """The model names in the SDK's Literal for a Realtime session."""
    annotation = RealtimeSessionCreateRequest.model_fields["model"].annotation
    literals = [arg for arg in typing.get_args(annotation) if typing.get_origin(arg) is typing.Literal]
    assert len(literals) == 1, f"the SDK's model type changed shape: {annotation}"
    return set(typing.get_args(literals[0]))


def _sdk_model_docstring() -> str:
    """The docstring under `model:` in the SDK's source (Castiron puts field docs there, not in pydantic)."""
    tree = ast.parse(inspect.getsource(realtime_session_create_request))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RealtimeSessionCreateRequest")
    for field, doc in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(field, ast.AnnAssign) and getattr(field.target, "id", "") == "model":
            assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
            return inspect.cleandoc(str(doc.value.value))
    raise AssertionError("the SDK has no docstring for RealtimeSessionCreateRequest.model")


def _sdk_deprecated() -> dict[str, datetime.date]:
    """Name -> shutdown date, from the docstring's "Deprecated values" list."""
    doc = _sdk_model_docstring()
    found: dict[str, datetime.date] = {}
    for block in re.findall(r"^- (.*?)Announced shutdown date: (\d{4}-\d{2}-\d{2})", doc, re.M | re.S):
        names, date = block
        for name in re.findall(r'"([^"]+)"', names):
            found[name] = datetime.date.fromisoformat(date)
    assert found, f"no deprecated values found in the SDK docstring:\n{doc}"
    return found


def _audio_only(name: str) -> bool:
    return name.startswith("gpt-audio")


# ---- the catalogue and the SDK ----------------------------------------------------------------------------


def test_every_name_edgevoice_lists_is_in_the_sdk() -> None:
    unknown = set(models.known_names()) - _sdk_models()
    assert not unknown, f"edgevoice lists models the openai SDK does not: {sorted(unknown)}"


def test_every_realtime_model_in_the_sdk_is_known_to_edgevoice() -> None:
    """Fails when the SDK adds a model: add it to edgevoice/realtime/models.py (and docs/configuration.md)."""
    missing = {name for name in _sdk_models() if not _audio_only(name)} - set(models.known_names())
    assert not missing, f"the openai SDK has Realtime models edgevoice does not know: {sorted(missing)}"


def test_shutdowns_match_the_sdk_docstring() -> None:
    sdk = {name: date for name, date in _sdk_deprecated().items() if not _audio_only(name)}
    for name, date in sdk.items():
        shutdown = models.shutdown_of(name)
        assert shutdown is not None and shutdown.date == date, f"{name}: the SDK says shutdown on {date}"
    announced_like_the_sdk = {
        name for name in models.known_names() if (s := models.shutdown_of(name)) and s.date in sdk.values()
    }
    assert announced_like_the_sdk == set(sdk)


def test_a_shutdown_suggests_a_current_model() -> None:
    for model in models.CATALOGUE:
        if model.shutdown is not None:
            assert set(model.shutdown.names) <= set(model.names)
            assert model.shutdown.replacement in models.current_models()
            assert models.shutdown_of(model.shutdown.replacement) is None


def test_the_sdks_example_of_a_reasoning_model_reasons() -> None:
    assert "such as `gpt-realtime-2`" in (RealtimeReasoning.__doc__ or "")
    assert models.takes_reasoning("gpt-realtime-2") is True


def test_names_are_unique_and_every_family_has_a_price() -> None:
    names = [name for model in models.CATALOGUE for name in model.names]
    assert len(names) == len(set(names))
    assert all(model.price is not None and model.price.model == model.name for model in models.CATALOGUE)


def test_the_docs_table_matches_the_catalogue() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9.-]+)`[^|]*\|.*$", doc, re.M)}
    for model in models.CATALOGUE:
        assert model.name in rows, f"{model.name} is not in the Models table of docs/configuration.md"
        cells = [cell.strip() for cell in rows[model.name].strip("|").split("|")]
        assert cells[2] == ("yes" if model.reasoning else "no"), model.name
        assert model.price is not None
        prices = [0.0 if cell == "–" else float(cell) for cell in cells[4:11]]
        p = model.price
        assert prices == [
            p.text_in, p.text_in_cached, p.audio_in, p.audio_in_cached, p.image_in, p.text_out, p.audio_out
        ], model.name  # fmt: skip
        assert (model.shutdown is None) == (cells[3] == ""), model.name


# ---- session.update: reasoning exactly for reasoning models ------------------------------------------------


@pytest.mark.parametrize("name", models.known_names())
def test_reasoning_is_sent_exactly_to_reasoning_models(name: str) -> None:
    event = events.session_update(RealtimeSettings(model=name, reasoning_effort="medium"))
    validate_client_event(event)
    family = models.find(name)
    assert family is not None
    assert ("reasoning" in event["session"]) == family.reasoning
    if family.reasoning:
        assert event["session"]["reasoning"] == {"effort": "medium"}
    assert "reasoning" not in events.session_update(RealtimeSettings(model=name))["session"]


def test_a_model_edgevoice_does_not_know_gets_the_effort_as_configured() -> None:
    event = events.session_update(RealtimeSettings(model="my-azure-deployment", reasoning_effort="low"))
    validate_client_event(event)
    assert event["session"]["reasoning"] == {"effort": "low"}


# ---- pricing -----------------------------------------------------------------------------------------------


def _cost(model: str, prices: tuple[ModelPrice, ...] = ()) -> float:
    return UsageMeter(UsageSettings(prices=prices), model, environ={}).add(FULL_USAGE)


def test_a_dated_snapshot_is_priced_as_its_family() -> None:
    family = _cost("gpt-realtime-mini")
    assert family > 0
    assert _cost("gpt-realtime-mini-2025-12-15") == family
    assert _cost("gpt-realtime-mini-2025-10-06") == family
    assert _cost("gpt-realtime-2025-08-28") == _cost("gpt-realtime")
    # the full model costs more than the mini one, and gpt-realtime-2 outputs text dearer than 1.5
    assert _cost("gpt-realtime-2.1") > _cost("gpt-realtime-2.1-mini")
    assert _cost("gpt-realtime-2") > _cost("gpt-realtime-1.5")


def test_prices_given_in_the_config_win_family_first_then_exact_name() -> None:
    family = ModelPrice("gpt-realtime-mini", audio_out=1000.0)
    exact = ModelPrice("gpt-realtime-mini-2025-12-15", audio_out=2000.0)
    assert _cost("gpt-realtime-mini-2025-12-15", (family,)) == pytest.approx(800 * 1000 / 1e6)
    assert _cost("gpt-realtime-mini-2025-12-15", (family, exact)) == pytest.approx(800 * 2000 / 1e6)
    assert _cost("my-deployment") == 0.0
    assert _cost("my-deployment", (ModelPrice("my-deployment", text_out=10.0),)) == pytest.approx(400 * 10 / 1e6)


# ---- config warnings ---------------------------------------------------------------------------------------


def _warnings(toml: str, today: datetime.date = BEFORE_JAN_2027) -> list[str]:
    return config_warnings(parse_config(toml), today)


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("gpt-realtime", "gpt-realtime-2.1"),
        ("gpt-realtime-2025-08-28", "gpt-realtime-2.1"),
        ("gpt-realtime-mini", "gpt-realtime-2.1-mini"),
        ("gpt-realtime-mini-2025-12-15", "gpt-realtime-2.1-mini"),
    ],
)
def test_a_deprecated_model_is_warned_with_its_date_and_a_replacement(name: str, replacement: str) -> None:
    (warning,) = _warnings(f"[realtime]\nmodel = '{name}'")
    assert f"model {name!r} has an announced shutdown on 2027-01-20" in warning and repr(replacement) in warning
    (after,) = _warnings(f"[realtime]\nmodel = '{name}'", AFTER_JAN_2027)
    assert "was due to shut down on 2027-01-20" in after


def test_current_models_and_undeprecated_snapshots_have_no_warning() -> None:
    for name in (*models.current_models(), "gpt-realtime-mini-2025-10-06"):
        assert _warnings(f"[realtime]\nmodel = '{name}'") == [], name


def test_a_preview_model_is_past_its_shutdown() -> None:
    (warning,) = _warnings("[realtime]\nmodel = 'gpt-4o-realtime-preview-2024-12-17'")
    assert "was due to shut down on 2026-05-07" in warning and "'gpt-realtime-2.1'" in warning


def test_reasoning_effort_on_a_model_that_does_not_reason_is_flagged() -> None:
    (warning,) = _warnings("[realtime]\nmodel = 'gpt-realtime-1.5'\nreasoning_effort = 'low'")
    assert "reasoning_effort is ignored" in warning and "gpt-realtime-2.1-mini" in warning
    assert _warnings("[realtime]\nmodel = 'gpt-realtime-2.1-mini'\nreasoning_effort = 'low'") == []


def test_an_unknown_model_works_with_a_warning_that_asks_for_its_prices() -> None:
    (warning,) = _warnings("[realtime]\nmodel = 'gpt-realtime-9'\nreasoning_effort = 'high'")
    assert "not in edgevoice's model catalogue" in warning and "[[usage.prices]] (model = 'gpt-realtime-9')" in warning
    assert "reasoning_effort is sent as set" in warning
    priced = _warnings(
        "[realtime]\nmodel = 'gpt-realtime-9'\n[[usage.prices]]\nmodel = 'gpt-realtime-9'\naudio_out = 1.0"
    )
    assert len(priced) == 1 and "[[usage.prices]]" not in priced[0]
