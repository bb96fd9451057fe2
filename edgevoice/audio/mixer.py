"""The ALSA mixer settings a board needs, applied at start with `amixer` (alsa-utils).

Some codecs come up with their routing switched off: a WM8960 plays nothing until its output mixers take
the DAC ("Left Output Mixer PCM Playback Switch"), and records nothing until its input boost mixers take
the microphones. A profile's `[mixer]` says which controls to set; `apply_mixer` runs

    amixer -q -c CARD cset name='CONTROL' VALUE

once per control. A control that fails (no such card or control, a bad value, amixer not installed) is
logged as a warning that says what to check, and the rest are still applied: a mixer setting never stops
the device from starting. Blocking (one short process per control): run it off the event loop.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from edgevoice.audio.settings import MixerSettings

log = logging.getLogger(__name__)

AMIXER_TIMEOUT_S = 5.0


def control_value(value: Any) -> str | None:
    """A control's value as amixer takes it ("on", "80", "109,109"), or None if it is not one."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and "\n" not in value:
        return value.strip()
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return ",".join(control_value(v) or "" for v in value)
    return None


def mixer_problems(settings: MixerSettings) -> list[str]:
    """What is wrong with a `[mixer]` section (for the configuration's validation), in the user's words."""
    problems = []
    if settings.controls and not settings.card.strip():
        problems.append("[mixer] controls need [mixer] card: the card's id in /proc/asound/cards, or its number")
    for name, value in settings.controls.items():
        if not name.strip() or "\n" in name or ("'" in name and '"' in name):
            problems.append(f"[mixer.controls] {name!r}: not an ALSA control name (see `amixer -c CARD controls`)")
        elif control_value(value) is None:
            problems.append(
                f"[mixer.controls] {name!r} = {value!r}: use true/false, a whole number, a list of them (one "
                "per channel) or the text amixer takes"
            )
    return problems


@dataclass
class MixerReport:
    """What `apply_mixer` did: the controls set, and a problem per control that could not be."""

    applied: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _quoted(name: str) -> str:
    quote = '"' if "'" in name else "'"
    return f"{quote}{name}{quote}"


def apply_mixer(settings: MixerSettings, amixer: str = "amixer") -> MixerReport:
    """Set every control of `settings` on its card; never raises (see the module docstring)."""
    report = MixerReport()
    if not settings.controls:
        return report
    program = shutil.which(amixer)
    if program is None:
        problem = f"cannot set the {settings.card} mixer: {amixer!r} is not installed (apt install alsa-utils)"
        report.failed.append(problem)
        log.warning("%s", problem)
        return report
    for name, value in settings.controls.items():
        text = control_value(value)
        if text is None:
            report.failed.append(f"{name}: unusable value {value!r}")
            continue
        argv = [program, "-q", "-c", settings.card, "cset", f"name={_quoted(name)}", text]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=AMIXER_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            report.failed.append(f"{name}: {exc}")
            continue
        if done.returncode != 0:
            why = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
            report.failed.append(f"{name} = {text}: {why}")
        else:
            report.applied.append(name)
    if report.failed:
        log.warning(
            "mixer of card %r: %d of %d control(s) not set (%s); the sound may be silent or unrouted. Check "
            "`amixer -c %s controls` and [mixer] in the profile or config.toml",
            settings.card,
            len(report.failed),
            len(settings.controls),
            "; ".join(report.failed),
            settings.card,
        )
    else:
        log.info("mixer of card %r: %d control(s) set", settings.card, len(report.applied))
    return report
