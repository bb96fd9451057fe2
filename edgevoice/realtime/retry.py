"""When to try again after a session failed: classification of failures and the backoff schedule.

Three kinds of failure, three answers:
- transient (network down, DNS, timeouts, 5xx, close codes 1006/1011/1012/1013, a dead link): retry fast,
  with exponential backoff and full jitter (a random delay in [0, min(cap, base * 2^attempt)]), so that a
  fleet of devices does not reconnect in lockstep after a server restart;
- rate limits (HTTP 429, failed responses naming a rate limit): wait as long as the server asks;
- fatal (the key refused, the beta shape refused, no quota, a wrong URL): retrying cannot help until a person
  fixes something, so show `error` and try again only every `fatal_retry_s` (minutes), never in a loop.
A session that ends at its time limit (close 1001, `session_expired`) is not a failure: it rolls over now.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from edgevoice.realtime.failures import SessionError
from edgevoice.realtime.settings import ReconnectSettings

MIN_DELAY_S = 0.05  # even full jitter never reconnects in a hot loop
FATAL_CODES = frozenset({"invalid_api_key", "beta_api_shape_disabled", "insufficient_quota"})
RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded", "rate_limit_error", "requests_limit_exceeded"})
_RETRY_IN = re.compile(r"try again in\s+(\d+(?:\.\d+)?)\s*(ms|s|m)\b", re.IGNORECASE)


@dataclass(frozen=True)
class RetryDecision:
    """What `RetryPolicy.after` decided about one failure: how long to wait before the next connect, whether
    a person must act (the device shows `error` meanwhile), and whether it grows the backoff."""

    delay_s: float
    needs_person: bool  # show `error`: retrying alone will not fix it
    counts_as_failure: bool  # grows the backoff (a rollover does not)


def retry_after_from_message(message: str) -> float | None:
    """The wait a rate-limit message asks for ("... Please try again in 20s." / "in 850ms" / "in 2m")."""
    match = _RETRY_IN.search(message or "")
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2).lower()
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


class RetryPolicy:
    """The backoff schedule of `[realtime.reconnect]` and the classification of failures (see the module
    docstring). Pure: `after(error, attempt)` decides, the caller waits and counts the attempts. Pass a
    seeded `rng` for repeatable jitter in tests."""

    def __init__(self, settings: ReconnectSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)], never below MIN_DELAY_S."""
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2 ** min(attempt, 30))
        return max(MIN_DELAY_S, self._rng.uniform(0, ceiling))

    def after(self, error: SessionError, attempt: int) -> RetryDecision:
        """What to do after `error`, the `attempt`-th failure in a row (0 = the first)."""
        if error.kind == "expired":
            return RetryDecision(0.0, needs_person=False, counts_as_failure=False)
        if error.kind in ("auth", "protocol", "quota"):
            jitter = self._rng.uniform(0.9, 1.1)  # a fleet with a revoked key must not retry in lockstep
            return RetryDecision(self.settings.fatal_retry_s * jitter, needs_person=True, counts_as_failure=True)
        if error.kind == "rate_limit":
            asked = error.retry_after_s or retry_after_from_message(error.message) or 0.0
            return RetryDecision(max(asked, self.backoff(attempt)), needs_person=False, counts_as_failure=True)
        return RetryDecision(self.backoff(attempt), needs_person=False, counts_as_failure=True)
