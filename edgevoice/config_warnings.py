"""What works but deserves an operator's attention in a valid configuration: logged at start, shown by doctor."""

from __future__ import annotations

import datetime
import shutil

from edgevoice.config import Config, button_sections
from edgevoice.realtime import models


def config_warnings(config: Config, today: datetime.date | None = None) -> list[str]:
    """Things that work but deserve an operator's attention (logged at start, shown by doctor)."""
    rt = config.realtime
    warnings = _model_warnings(config, today or datetime.date.today())
    if rt.turn_detection.type == "none" and not any(b.enabled for b in button_sections(config).values()):
        warnings.append(
            "push-to-talk ([realtime.turn_detection] type = 'none') with no button enabled: wire one and set "
            "[button] enabled = true and pin, or use server_vad"
        )
    for tool in rt.tools:
        program = tool.command[0] if tool.command else ""
        if program and shutil.which(program) is None:
            warnings.append(
                f"[[realtime.tools]] {tool.name!r}: its command {program!r} is not an executable program here "
                "(give an absolute path, or install it): every call will answer the model with an error"
            )
    return warnings


def _model_warnings(config: Config, today: datetime.date) -> list[str]:
    """What the model catalogue says about the configured model: unknown, shut down (soon), no reasoning."""
    rt = config.realtime
    model = models.find(rt.model)
    if model is None:
        warning = (
            f"[realtime] model {rt.model!r} is not in edgevoice's model catalogue "
            f"({', '.join(models.current_models())}, ...); it is used as given"
        )
        if not any(price.model == rt.model for price in config.usage.prices):
            warning += (
                f", and its cost counts as 0 until you give its prices in [[usage.prices]] (model = {rt.model!r})"
            )
        if rt.reasoning_effort:
            warning += "; reasoning_effort is sent as set (remove it if the server rejects it)"
        return [warning]
    warnings = []
    shutdown = models.shutdown_of(rt.model)
    if shutdown is not None:
        when = "was due to shut down" if shutdown.date <= today else "has an announced shutdown"
        warnings.append(
            f"[realtime] model {rt.model!r} {when} on {shutdown.date.isoformat()}; "
            f"move to {shutdown.replacement!r} (see docs/configuration.md, Models)"
        )
    if rt.reasoning_effort and not model.reasoning:
        warnings.append(
            f"[realtime] reasoning_effort is ignored: {rt.model!r} is not a reasoning model "
            f"(these are: {', '.join(models.reasoning_models())})"
        )
    return warnings
