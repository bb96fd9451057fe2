"""Where the API key comes from. It never lives in config.toml, argv or logs.

Looked up in this order:
1. `$CREDENTIALS_DIRECTORY/openai_api_key` (systemd `LoadCredential=`, the production path);
2. the file named by `[realtime] api_key_file`, which must not be readable by group or others;
3. the `OPENAI_API_KEY` environment variable (development).
Or, with `[realtime] token_url`, no API key at all: `EphemeralSecrets` fetches short-lived client secrets.

`secrets_for` is the policy: a token service if configured, else the API key, which is always sent when
there is one, loopback or not (a local TLS tunnel or an authenticating relay needs it). Only when there is no
key at all does a loopback endpoint (the emulator, a local compatible server) get the placeholder `local`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgevoice.realtime.settings import RealtimeSettings
from edgevoice.realtime.urls import is_loopback_url
from edgevoice.secret_files import SecretFileError, read_secret_file

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "openai_api_key"
LOCAL_PLACEHOLDER = "local"  # what a loopback endpoint gets when the device has no key at all


class CredentialsError(Exception):
    """No usable API key; the message says where edgevoice looked and how to provide one."""


@dataclass(frozen=True)
class ApiKey:
    """The API key, and where `load_api_key` found it. Its repr and str hide the key, so it can be logged or
    shown in a traceback; `value` is the secret itself: it goes into the handshake's auth header, never a log."""

    value: str
    source: str  # where it came from, safe to log

    def __repr__(self) -> str:  # never show the key, even in a traceback's locals
        return f"ApiKey(<hidden>, source={self.source!r})"

    __str__ = __repr__


def _read_key_file(path: Path, *, check_mode: bool) -> str:
    try:
        key = read_secret_file(path, "the API key file", check_mode=check_mode).strip()
    except SecretFileError as exc:
        raise CredentialsError(str(exc)) from None
    if not key or any(c.isspace() for c in key):
        raise CredentialsError(f"the API key file {path} is empty or holds more than one word")
    return key


def load_api_key(key_file: str = "", environ: Mapping[str, str] = os.environ) -> ApiKey:
    """The API key from the first place that has one (see the module docstring)."""
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).exists():
        # systemd already made this private to the service; its mode is not ours to judge.
        path = Path(cred_dir) / CREDENTIAL_NAME
        return ApiKey(_read_key_file(path, check_mode=False), f"systemd credential {CREDENTIAL_NAME}")
    if key_file:
        path = Path(key_file)
        return ApiKey(_read_key_file(path, check_mode=True), f"key file {path}")
    key = environ.get("OPENAI_API_KEY", "").strip()
    if key:
        return ApiKey(key, "OPENAI_API_KEY")
    raise CredentialsError(
        "no API key: provide one as a systemd credential (LoadCredential=openai_api_key:...), "
        "in a file of mode 0600 named by [realtime] api_key_file, or in OPENAI_API_KEY"
    )


class TokenUnavailable(Exception):
    """The token service could not be reached or failed (transient: retry with backoff)."""


DEVICE_TOKEN_NAME = "edgevoice_device_token"
REFRESH_MARGIN_S = 60.0  # fetch a new secret when the cached one expires within this


def load_device_token(environ: Mapping[str, str] = os.environ) -> str | None:
    """The device's own credential for the token service, if it has one (systemd credential or environment)."""
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / DEVICE_TOKEN_NAME).exists():
        return _read_key_file(Path(cred_dir) / DEVICE_TOKEN_NAME, check_mode=False)
    return environ.get("EDGEVOICE_DEVICE_TOKEN") or None


class EphemeralSecrets:
    """Ephemeral `ek_` client secrets from the operator's backend, fetched shortly before each connect.

    The backend holds the real API key and mints secrets with `POST /v1/realtime/client_secrets`; the device
    only ever sees a secret that can open sessions for a few minutes. The backend answers a POST to
    `token_url` with the OpenAI response shape `{"value": "ek_...", "expires_at": <unix time>}` (or the older
    `{"client_secret": {"value": ..., "expires_at": ...}}`). A secret is reused until a minute before it expires.
    """

    def __init__(self, url: str, device_token: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self._device_token = device_token
        self._timeout_s = timeout_s
        self._value: str | None = None
        self._expires_at = 0.0

    async def secret(self) -> str:
        if self._value is None or self._expires_at - time.time() < REFRESH_MARGIN_S:
            value, self._expires_at = await asyncio.to_thread(self._fetch)
            self._value = value
            return value
        return self._value

    def _fetch(self) -> tuple[str, float]:
        import urllib.error  # loaded at the first connection, not at start-up
        import urllib.request

        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._device_token:
            headers["Authorization"] = f"Bearer {self._device_token}"
        request = urllib.request.Request(self.url, data=b"{}", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                body = response.read(65536)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise CredentialsError(f"the token service {self.url} refused this device (HTTP {exc.code})") from None
            raise TokenUnavailable(f"the token service {self.url} failed (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TokenUnavailable(f"cannot reach the token service {self.url}: {reason}") from None
        try:
            data = json.loads(body)
            holder = data["client_secret"] if isinstance(data.get("client_secret"), dict) else data
            value, expires_at = holder["value"], float(holder.get("expires_at") or time.time() + 600)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenUnavailable(f"the token service {self.url} answered something that is not a secret") from None
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise TokenUnavailable(f"the token service {self.url} answered an empty or malformed secret")
        return value, expires_at


class StaticSecret:
    """An API key that does not change while edgevoice runs."""

    def __init__(self, value: str) -> None:
        self._value = value

    async def secret(self) -> str:
        return self._value


class ApiKeySecret:
    """The API key, looked up again before every connect: a key fixed on disk is used without a restart."""

    def __init__(
        self,
        key_file: str = "",
        on_found: Callable[[str], None] | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._key_file = key_file
        self._on_found = on_found
        self._environ = environ

    async def secret(self) -> str:
        key = await asyncio.to_thread(load_api_key, self._key_file, self._environ)
        if self._on_found is not None:
            self._on_found(key.value)
        return key.value


class MissingSecret:
    """No credentials at all: every attempt fails with the same explanation."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    async def secret(self) -> str:
        raise CredentialsError(self.problem)


class SecretSource(Protocol):
    """Where the credential for the next connection comes from (an API key or an ephemeral secret)."""

    async def secret(self) -> str: ...


def secrets_for(
    settings: RealtimeSettings,
    on_secret: Callable[[str], None] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> SecretSource:
    """The credentials the session manager uses (see the module docstring for the policy)."""
    if settings.token_url:
        return EphemeralSecrets(settings.token_url, load_device_token(environ))
    try:
        key = load_api_key(settings.api_key_file, environ)
    except CredentialsError as exc:
        if is_loopback_url(settings.url):
            log.info("no API key: the local endpoint %s gets a placeholder", settings.url)
            return StaticSecret(LOCAL_PLACEHOLDER)
        log.error("%s", exc)
        return MissingSecret(str(exc))
    if on_secret is not None:
        on_secret(key.value)
    log.info("API key from %s", key.source)
    return ApiKeySecret(settings.api_key_file, on_secret, environ)
