"""The catalogue of Realtime models edgevoice knows: one table, and the questions the rest of edgevoice asks it.

Config validation and its warnings, the `reasoning` field of `session.update` and the usage meter's prices all
come from `CATALOGUE`, so a new model is added here and nowhere else. A dated snapshot answers as its family
(prices, reasoning); a shutdown is announced per name, because OpenAI deprecates some snapshots of a family and
not others. A name that is not here is still used as given (an Azure deployment, or a model newer than this
table): config warns, `reasoning_effort` is sent as set, and its prices must come from `[[usage.prices]]`.

Sources (docs/configuration.md has the table for people):
- names, snapshots and shutdowns: the `model` Literal of the `openai` package 3.63.0 and its docstring,
  `openai/types/realtime/realtime_session_create_request.py`; the tests check the table against the installed SDK.
- prices and which models reason: https://developers.openai.com/api/docs/models/<model>, read 2026-12-07.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from edgevoice.realtime.settings import ModelPrice

PRICES_READ = "2026-12-07"


@dataclass(frozen=True)
class Shutdown:
    """OpenAI's announced end of some names of a family, and the model edgevoice suggests instead."""

    date: datetime.date
    names: tuple[str, ...]
    replacement: str


@dataclass(frozen=True)
class RealtimeModel:
    """One model family: its alias, its dated snapshots, what it accepts, its prices (USD per 1M tokens)."""

    name: str
    snapshots: tuple[str, ...] = ()
    reasoning: bool = False  # takes `reasoning` (and `parallel_tool_calls`) in the session
    price: ModelPrice | None = None  # None: no built-in price; `[[usage.prices]]` must give it
    price_note: str = ""  # where a price is not confirmed by the model page, this says so
    shutdown: Shutdown | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.snapshots)


_JAN_2027 = datetime.date(2027, 1, 20)  # the SDK docstring: "Announced shutdown date: 2027-01-20"
# The preview models: OpenAI's gpt-4o-realtime-preview page says "Shut down"; the date is from third-party trackers.
_PREVIEW_END = datetime.date(2026, 5, 7)

CATALOGUE: tuple[RealtimeModel, ...] = (
    RealtimeModel(
        "gpt-realtime-2.1",
        reasoning=True,
        price=ModelPrice("gpt-realtime-2.1", 4.00, 0.40, 32.00, 0.40, 5.00, 24.00, 64.00),
    ),
    RealtimeModel(
        "gpt-realtime-2.1-mini",
        reasoning=True,
        price=ModelPrice("gpt-realtime-2.1-mini", 0.60, 0.06, 10.00, 0.30, 0.80, 2.40, 20.00),
    ),
    RealtimeModel(
        "gpt-realtime-2",
        reasoning=True,
        price=ModelPrice("gpt-realtime-2", 4.00, 0.40, 32.00, 0.40, 5.00, 24.00, 64.00),
    ),
    RealtimeModel(
        "gpt-realtime-1.5",
        price=ModelPrice("gpt-realtime-1.5", 4.00, 0.40, 32.00, 0.40, 5.00, 16.00, 64.00),
    ),
    RealtimeModel(
        "gpt-realtime",
        snapshots=("gpt-realtime-2025-08-28",),
        price=ModelPrice("gpt-realtime", 4.00, 0.40, 32.00, 0.40, 5.00, 16.00, 64.00),
        price_note="not re-read: its model page was not available; edgevoice's table of 2026-11",
        shutdown=Shutdown(_JAN_2027, ("gpt-realtime", "gpt-realtime-2025-08-28"), "gpt-realtime-2.1"),
    ),
    RealtimeModel(
        "gpt-realtime-mini",
        snapshots=("gpt-realtime-mini-2025-10-06", "gpt-realtime-mini-2025-12-15"),
        price=ModelPrice("gpt-realtime-mini", 0.60, 0.06, 10.00, 0.30, 0.80, 2.40, 20.00),
        price_note="only text in ($0.60) re-read (gpt-realtime-2.1-mini's page); the rest edgevoice's table of 2026-11",
        # the SDK lists the alias and the 2025-12-15 snapshot as deprecated, not the 2025-10-06 one
        shutdown=Shutdown(_JAN_2027, ("gpt-realtime-mini", "gpt-realtime-mini-2025-12-15"), "gpt-realtime-2.1-mini"),
    ),
    RealtimeModel(
        "gpt-4o-realtime-preview",
        snapshots=(
            "gpt-4o-realtime-preview-2024-10-01",
            "gpt-4o-realtime-preview-2024-12-17",
            "gpt-4o-realtime-preview-2025-06-03",
        ),
        price=ModelPrice("gpt-4o-realtime-preview", 5.00, 2.50, 40.00, 2.50, 0.0, 20.00, 80.00),
        price_note="the family's page; the 2024-10-01 snapshot was once priced higher; no image input",
        shutdown=Shutdown(
            _PREVIEW_END,
            (
                "gpt-4o-realtime-preview",
                "gpt-4o-realtime-preview-2024-10-01",
                "gpt-4o-realtime-preview-2024-12-17",
                "gpt-4o-realtime-preview-2025-06-03",
            ),
            "gpt-realtime-2.1",
        ),
    ),
    RealtimeModel(
        "gpt-4o-mini-realtime-preview",
        snapshots=("gpt-4o-mini-realtime-preview-2024-12-17",),
        price=ModelPrice("gpt-4o-mini-realtime-preview", 0.60, 0.30, 10.00, 0.30, 0.0, 2.40, 20.00),
        price_note="no image input",
        shutdown=Shutdown(
            _PREVIEW_END,
            ("gpt-4o-mini-realtime-preview", "gpt-4o-mini-realtime-preview-2024-12-17"),
            "gpt-realtime-2.1-mini",
        ),
    ),
)

_BY_NAME: dict[str, RealtimeModel] = {name: model for model in CATALOGUE for name in model.names}


def find(name: str) -> RealtimeModel | None:
    """The family of a model name (its alias or one of its dated snapshots), or None for a name not here."""
    return _BY_NAME.get(name)


def known_names() -> tuple[str, ...]:
    """Every name in the catalogue, aliases and snapshots."""
    return tuple(_BY_NAME)


def current_models() -> tuple[str, ...]:
    """The families whose alias has no announced shutdown: what edgevoice suggests."""
    return tuple(m.name for m in CATALOGUE if m.shutdown is None or m.name not in m.shutdown.names)


def reasoning_models() -> tuple[str, ...]:
    """The families that take `reasoning` (and `parallel_tool_calls`)."""
    return tuple(m.name for m in CATALOGUE if m.reasoning)


def takes_reasoning(name: str) -> bool | None:
    """Whether the model takes `reasoning`; None when the name is not in the catalogue (nobody here knows)."""
    model = find(name)
    return None if model is None else model.reasoning


def shutdown_of(name: str) -> Shutdown | None:
    """The announced shutdown of exactly this name (a family's snapshots can differ), or None."""
    model = find(name)
    if model is None or model.shutdown is None or name not in model.shutdown.names:
        return None
    return model.shutdown


def price_for(name: str, overrides: Iterable[ModelPrice] = ()) -> ModelPrice | None:
    """The price to meter `name` with: an override for the exact name, else one for its family, else built in."""
    given = {p.model: p for p in overrides}
    if name in given:
        return given[name]
    model = find(name)
    if model is None:
        return None
    return given.get(model.name, model.price)
