"""Doctor checks of the way to the Realtime API: DNS, TLS, and a real WebSocket handshake with the key."""

from __future__ import annotations

import os
import socket
import ssl
import time
import urllib.parse
from pathlib import Path

from edgevoice.doctor import Context, Finding
from edgevoice.realtime.credentials import CREDENTIAL_NAME, ApiKey, CredentialsError, load_api_key, secrets_for
from edgevoice.realtime.failures import SessionError
from edgevoice.realtime.session import RealtimeSession, endpoint_for

CREDSTORE = Path("/etc/credstore")  # where provision stores the key; the service gets it as a credential
TIMEOUT_S = 5.0


def _target(ctx: Context) -> tuple[str, int, bool] | None:
    """(host, port, is_loopback) of the configured endpoint."""
    if ctx.config is None:
        return None
    parts = urllib.parse.urlsplit(ctx.config.realtime.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return host, port, endpoint_for(ctx.config.realtime, "").is_loopback


def check_dns(ctx: Context) -> Finding:
    target = _target(ctx)
    if target is None:
        return Finding("dns", "skip", "needs a valid configuration")
    host, port, loopback = target
    if loopback:
        ctx.resolved = True
        return Finding("dns", "skip", f"skipped: loopback ({host})")
    started = time.monotonic()
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as exc:
        return Finding(
            "dns", "fail", f"cannot resolve {host}: {exc.strerror}", "check the network and /etc/resolv.conf"
        )
    ctx.resolved = True
    took = (time.monotonic() - started) * 1000
    return Finding("dns", "pass", f"{host} -> {', '.join(sorted(addresses)[:3])} ({took:.0f} ms)")


def check_tls(ctx: Context) -> Finding:
    target = _target(ctx)
    if target is None:
        return Finding("tls", "skip", "needs a valid configuration")
    host, port, loopback = target
    if loopback:
        return Finding("tls", "skip", f"skipped: loopback ({host})")
    if ctx.config is not None and ctx.config.realtime.url.startswith("ws://"):
        return Finding("tls", "warn", f"{host}: ws:// is not encrypted", "use wss:// for anything but a local emulator")
    if not ctx.resolved:
        return Finding("tls", "skip", f"{host} did not resolve")
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, port), timeout=TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        fix = "is the clock right (see the clock check)? Is a proxy intercepting TLS? Are ca-certificates installed?"
        return Finding("tls", "fail", f"{host}: certificate not trusted: {exc.verify_message}", fix)
    except (OSError, ssl.SSLError) as exc:
        return Finding("tls", "fail", f"{host}:{port}: {exc}", "check the network, firewall or proxy")
    days = (ssl.cert_time_to_seconds(str(cert["notAfter"])) - time.time()) / 86400 if "notAfter" in cert else 0
    return Finding("tls", "pass", f"{host}: {version}, certificate valid for {days:.0f} more days")


def _key(ctx: Context) -> tuple[ApiKey | None, str]:
    """The key doctor can test with, and, when there is none, the daemon's own reason (e.g. a key file of mode
    0644, which the daemon refuses) rather than a bare "no API key"."""
    assert ctx.config is not None
    try:
        return load_api_key(ctx.config.realtime.api_key_file), ""
    except CredentialsError as exc:
        reason = str(exc)
    stored = CREDSTORE / CREDENTIAL_NAME  # readable when doctor runs as root, as provision runs it
    if stored.is_file() and os.access(stored, os.R_OK):
        key = stored.read_text(encoding="utf-8").strip()
        if key:
            return ApiKey(key, f"{stored}"), ""
    return None, reason


async def check_handshake(ctx: Context) -> Finding:
    target = _target(ctx)
    if target is None or ctx.config is None:
        return Finding("realtime", "skip", "needs a valid configuration")
    host, _, loopback = target
    if not ctx.resolved:
        return Finding("realtime", "skip", f"{host} did not resolve")
    key: ApiKey | None
    if ctx.config.realtime.token_url:  # an ephemeral secret from the operator's token service, as the daemon does
        try:
            secret = await secrets_for(ctx.config.realtime).secret()
            key = ApiKey(secret, f"token service {ctx.config.realtime.token_url}")
        except Exception as exc:
            return Finding(
                "realtime", "fail", f"no ephemeral secret: {exc}", "check [realtime] token_url and its service"
            )
    else:
        key, reason = _key(ctx)
    if key is None and (not loopback or ctx.config.realtime.api_key_file):  # (a configured key must work)
        return Finding(
            "realtime",
            "fail",
            f"no usable API key: {reason}" if reason else "no API key",
            "store it: sudo scripts/provision --api-key-file FILE (or /etc/credstore/openai_api_key, mode 0600)",
        )
    source = key.source if key is not None else "none (local emulator)"
    started = time.monotonic()
    session = RealtimeSession(ctx.config.realtime, key.value if key is not None else "local", lambda event: None)
    try:
        await session.open()
    except SessionError as exc:
        fix = "check the key and its access to the model" if exc.needs_person else "check the network and the URL"
        return Finding("realtime", "fail", f"{exc.message} (key from {source})", fix)
    took = (time.monotonic() - started) * 1000
    session_id = session.session_id
    await session.close()
    return Finding(
        "realtime",
        "pass",
        f"{host}: session {session_id or '?'} opened with {ctx.config.realtime.model} in {took:.0f} ms "
        f"(key from {source})",
    )
