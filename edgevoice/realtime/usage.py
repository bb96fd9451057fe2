"""Token usage and its estimated cost, per session and per day, and the daily budget.

Every `response.done` carries the tokens the response used (earlier turns are billed again as input on every
response, cached at a lower rate). The meter prices them with the rates of the model catalogue
(`edgevoice.realtime.models`, overridable in `[[usage.prices]]`), keeps the session's and the day's totals,
and says when the day's budget is spent. The day's totals are saved in the state directory so a restart does
not reset the budget.

A push-to-talk turn is billed for all the audio committed, speech or not: the conversation trims the silence
around the speech and tells, with the answer it asks for, what the turn sent against how long the visitor
spoke (`TurnAudio`). The meter keeps the day's totals of both, so that an operator sees what pauses cost.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevoice.realtime.models import price_for
from edgevoice.realtime.settings import ModelPrice, UsageSettings

log = logging.getLogger(__name__)


@dataclass
class Tokens:
    """Token counts by kind, as `tokens_of` reads them from a usage object; `text_in` and `audio_in` exclude
    the cached tokens, counted apart in `*_in_cached`. The field names match `ModelPrice`'s, which `cost` uses."""

    text_in: int = 0
    text_in_cached: int = 0
    audio_in: int = 0
    audio_in_cached: int = 0
    image_in: int = 0
    text_out: int = 0
    audio_out: int = 0

    def add(self, other: Tokens) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def cost(self, price: ModelPrice | None) -> float:
        if price is None:
            return 0.0
        return sum(getattr(self, f.name) * getattr(price, f.name) for f in dataclasses.fields(self)) / 1e6

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in dataclasses.fields(self))


@dataclass(frozen=True)
class TurnAudio:
    """A push-to-talk turn's audio: what was sent (the server bills it as input) against how long the visitor
    spoke (from the first to the last voiced frame, pauses between words included; 0 when no speech was found)."""

    sent_ms: int
    speech_ms: int

    def as_event(self) -> dict[str, float]:
        """The fields the `usage` event of the answer to this turn carries."""
        return {"input_audio_s": round(self.sent_ms / 1000, 2), "speech_s": round(self.speech_ms / 1000, 2)}


def _ratio(sent_ms: int, speech_ms: int) -> float | None:
    return round(sent_ms / speech_ms, 2) if speech_ms else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def tokens_of(usage: dict[str, Any]) -> Tokens:
    """The token counts of a `response.done` usage object (missing or malformed parts count as 0)."""
    details_in = _object(usage.get("input_token_details"))
    details_out = _object(usage.get("output_token_details"))
    cached = _object(details_in.get("cached_tokens_details"))
    text_in, audio_in = _int(details_in.get("text_tokens")), _int(details_in.get("audio_tokens"))
    text_cached, audio_cached = _int(cached.get("text_tokens")), _int(cached.get("audio_tokens"))
    if not details_in:  # only the totals: count them as text, the cheaper guess is the wrong one to make
        text_in = _int(usage.get("input_tokens"))
    if not details_out:
        text_out, audio_out = _int(usage.get("output_tokens")), 0
    else:
        text_out, audio_out = _int(details_out.get("text_tokens")), _int(details_out.get("audio_tokens"))
    return Tokens(
        text_in=max(0, text_in - text_cached),
        text_in_cached=text_cached,
        audio_in=max(0, audio_in - audio_cached),
        audio_in_cached=audio_cached,
        image_in=_int(details_in.get("image_tokens")),
        text_out=text_out,
        audio_out=audio_out,
    )


class UsageMeter:
    """Tokens and estimated cost of the current session and of today, for one model; `add` counts each
    `response.done`'s usage, `snapshot` is what control clients get, `budget_spent` (with a daily budget) stops
    new conversations until the next day. Today's totals are saved to `usage.json` in `[usage] state_dir` (or
    $STATE_DIRECTORY), so a restart keeps them; without either they last as long as the process."""

    def __init__(
        self,
        settings: UsageSettings,
        model: str,
        *,
        environ: dict[str, str] | os._Environ[str] = os.environ,
        today: Callable[[], datetime.date] = datetime.date.today,
    ) -> None:
        self.settings = settings
        self.model = model
        self.price = price_for(model, settings.prices)
        if self.price is None:
            log.warning(
                "no price known for model %r: costs are reported as 0; give its prices in [[usage.prices]]", model
            )
        self._today = today
        state_dir = settings.state_dir or environ.get("STATE_DIRECTORY", "").split(":")[0]
        self._state_file = Path(state_dir) / "usage.json" if state_dir else None
        self.session = Tokens()
        self.session_cost = 0.0
        self.day = self._today()
        self.day_tokens = Tokens()
        self.day_cost = 0.0
        self.responses_today = 0
        self.day_audio = TurnAudio(0, 0)  # today's push-to-talk turns: audio sent, and speech in it
        self._load()

    def new_session(self) -> None:
        self.session = Tokens()
        self.session_cost = 0.0

    def add(self, usage: dict[str, Any], turn: TurnAudio | None = None) -> float:
        """Count one response's usage (and the push-to-talk turn it answers); returns its estimated cost in USD."""
        self._roll_day()
        if turn is not None:
            day = self.day_audio
            self.day_audio = TurnAudio(day.sent_ms + turn.sent_ms, day.speech_ms + turn.speech_ms)
        tokens = tokens_of(usage)
        cost = tokens.cost(self.price)
        self.session.add(tokens)
        self.session_cost += cost
        self.day_tokens.add(tokens)
        self.day_cost += cost
        self.responses_today += 1
        self._save()
        return cost

    @property
    def budget_spent(self) -> bool:
        self._roll_day()
        return self.settings.daily_budget_usd > 0 and self.day_cost >= self.settings.daily_budget_usd

    def snapshot(self) -> dict[str, Any]:
        self._roll_day()
        return {
            "model": self.model,
            "session": {"tokens": dataclasses.asdict(self.session), "usd": round(self.session_cost, 6)},
            "today": {
                "date": self.day.isoformat(),
                "tokens": dataclasses.asdict(self.day_tokens),
                "usd": round(self.day_cost, 6),
                "responses": self.responses_today,
                "budget_usd": self.settings.daily_budget_usd,
                **self.day_audio.as_event(),
                "input_per_speech": _ratio(self.day_audio.sent_ms, self.day_audio.speech_ms),
            },
        }

    def _roll_day(self) -> None:
        today = self._today()
        if today != self.day:
            self.day, self.day_tokens, self.day_cost, self.responses_today = today, Tokens(), 0.0, 0
            self.day_audio = TurnAudio(0, 0)

    def _load(self) -> None:
        if self._state_file is None or not self._state_file.exists():
            return
        try:
            data = json.loads(self._state_file.read_text())
            if data.get("date") == self.day.isoformat():
                self.day_tokens = Tokens(**{k: _int(v) for k, v in data.get("tokens", {}).items()})
                self.day_cost = float(data.get("usd", 0.0))
                self.responses_today = _int(data.get("responses"))
                self.day_audio = TurnAudio(_int(data.get("input_audio_ms")), _int(data.get("speech_ms")))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable usage file %s: %s", self._state_file, exc)

    def _save(self) -> None:
        if self._state_file is None:
            return
        data = {
            "date": self.day.isoformat(),
            "tokens": dataclasses.asdict(self.day_tokens),
            "usd": self.day_cost,
            "responses": self.responses_today,
            "input_audio_ms": self.day_audio.sent_ms,
            "speech_ms": self.day_audio.speech_ms,
        }
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self._state_file)
        except OSError as exc:
            log.warning("cannot save usage to %s: %s", self._state_file, exc)
