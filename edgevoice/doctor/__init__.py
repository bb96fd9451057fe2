"""`edgevoice doctor`: is this device ready to run edgevoice, and if not, what exactly to do about it.

Each check is a small function returning a `Finding` (pass, warn, fail or skip, what it saw, what to do).
They run in order, the blocking ones in a worker thread so the event loop stays free; a check that needs
something an earlier one failed to provide (a valid configuration, a reachable host) says so and skips.
Exit code 1 if any check failed. The API key is used for the handshake and never printed.

    local    configuration, hardware profile, sound devices, microphone level, GPIO pins, control socket
    network  DNS, TLS, a real Realtime WebSocket handshake with the configured key
    fleet    the [mqtt] broker: the password file and a real connection
    host     clock synchronisation, CPU temperature and throttling (Raspberry Pi), free disk
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from edgevoice.config import Config

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Finding:
    """The outcome of one doctor check: its name, pass/warn/fail/skip, what it saw (`detail`) and, for a
    warning or failure, what the installer should do (`fix`, printed only then). `line()` is its row in the
    report; with `--json` its fields are printed as they are, so `detail` and `fix` must never hold a secret."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():<4}  {self.check:<14} {self.detail}"
        return text + (f"\n      {'':<14} -> {self.fix}" if self.fix and self.status in ("warn", "fail") else "")


@dataclass
class Context:
    """What the checks share: the configuration (None if invalid) and what earlier checks learned."""

    config_path: str | None
    config: Config | None = None
    resolved: bool = False  # DNS found the endpoint
    listen_s: float = 1.0  # how long the microphone check records
    service_active: bool = False  # the daemon holds the sound card and GPIO: leave them alone


async def diagnose(ctx: Context, only: set[str] | None = None) -> list[Finding]:
    """Run every check (or the ones named in `only`), in order."""
    from edgevoice.doctor import fleet, host, local, network

    sync_checks: list[tuple[str, Callable[[Context], Finding]]] = [
        ("config", local.check_config),
        ("profile", local.check_profile),
        ("audio", local.check_audio_devices),
        ("microphone", local.check_microphone),
        ("echo", local.check_echo),
        ("gpio", local.check_gpio),
        ("control socket", local.check_control_socket),
        ("dns", network.check_dns),
        ("tls", network.check_tls),
    ]
    findings = []
    for name, check in sync_checks:
        if only is None or name in only:
            findings.append(await asyncio.to_thread(_safe, name, check, ctx))
    if only is None or "realtime" in only:
        try:
            findings.append(await network.check_handshake(ctx))
        except Exception as exc:  # a bug in a check must not hide the others
            findings.append(Finding("realtime", "fail", f"the check itself failed: {exc!r}"))
    if only is None or "mqtt" in only:
        try:
            findings.append(await fleet.check_broker(ctx))
        except Exception as exc:
            findings.append(Finding("mqtt", "fail", f"the check itself failed: {exc!r}"))
    for name, check in (
        ("clock", host.check_clock),
        ("temperature", host.check_temperature),
        ("disk", host.check_disk),
    ):
        if only is None or name in only:
            findings.append(await asyncio.to_thread(_safe, name, check, ctx))
    return findings


def _safe(name: str, check: Callable[[Context], Finding], ctx: Context) -> Finding:
    try:
        return check(ctx)
    except Exception as exc:
        return Finding(name, "fail", f"the check itself failed: {exc!r}", "please report this as a bug")


def report(findings: list[Finding], as_json: bool) -> str:
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    if as_json:
        return json.dumps({"checks": [asdict(f) for f in findings], "failed": failed, "warnings": warned}, indent=2)
    lines = [f.line() for f in findings]
    lines.append(f"\n{failed} failed, {warned} warning(s), {len(findings) - failed - warned} passed or skipped")
    return "\n".join(lines)


def run_doctor(config_path: str | None, *, as_json: bool = False, listen_s: float = 1.0) -> int:
    """`edgevoice doctor`: print the findings; 1 if any check failed."""
    from edgevoice.doctor.local import service_is_active

    ctx = Context(config_path, listen_s=listen_s, service_active=service_is_active())
    findings = asyncio.run(diagnose(ctx))
    print(report(findings, as_json))
    sys.stdout.flush()
    return 1 if any(f.status == "fail" for f in findings) else 0


__all__ = ["Context", "Finding", "diagnose", "report", "run_doctor"]
