"""Doctor check of the fleet's broker ([mqtt]): the password file, then a real connection with the device's
credentials (under a client id of its own, so that a running daemon keeps its connection and its will)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from edgevoice.doctor import Context, Finding
from edgevoice.fleet.credentials import BrokerCredentialsError, load_password
from edgevoice.fleet.settings import device_id

TIMEOUT_S = 5.0


async def check_broker(ctx: Context) -> Finding:
    if ctx.config is None:
        return Finding("mqtt", "skip", "needs a valid configuration")
    settings = ctx.config.mqtt
    if not settings.enabled:
        return Finding("mqtt", "skip", "no [mqtt] url: the device reports to no broker")
    try:
        device = device_id(settings)
        password = load_password(settings.password_file)
    except (ValueError, BrokerCredentialsError) as exc:
        return Finding("mqtt", "fail", str(exc), "see docs/fleet.md")
    try:
        from edgevoice.fleet.bridge import PUBLISH_TIMEOUT_S, SafeClient, explain
        from edgevoice.fleet.settings import broker_address
    except ImportError:
        return Finding("mqtt", "fail", "the mqtt extra is not installed", "pip install 'edgevoice[mqtt]'")
    import ssl

    import aiomqtt

    address = broker_address(settings.url)
    tls = aiomqtt.TLSParameters(ca_certs=settings.ca_file or None, cert_reqs=ssl.CERT_REQUIRED) if address.tls else None
    client = SafeClient(
        address.host, address.port or 1883, transport=address.transport, identifier=f"edgevoice-doctor-{device}",
        username=settings.username or None, password=password.value if password else None, tls_params=tls,
        timeout=min(TIMEOUT_S, PUBLISH_TIMEOUT_S),
    )  # fmt: skip
    started = time.monotonic()
    try:
        async with asyncio.timeout(TIMEOUT_S + 1):
            await client.__aenter__()
    except (aiomqtt.MqttError, OSError, ValueError, TimeoutError) as exc:
        why = explain(exc) if not isinstance(exc, TimeoutError) else f"no answer within {TIMEOUT_S:g} s"
        return Finding("mqtt", "fail", f"{settings.url}: {why}", "check [mqtt] (docs/fleet.md) and the broker")
    took = (time.monotonic() - started) * 1000
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)
    who = f" as {settings.username}" if settings.username else ""
    return Finding("mqtt", "pass", f"{settings.url}{who}: connected ({took:.0f} ms); device id {device}")
