"""The broker password: as the API key, never in config.toml, argv or logs.

Looked up in this order: `$CREDENTIALS_DIRECTORY/mqtt_password` (systemd `LoadCredential=`), then the file named
by `[mqtt] password_file`, which must not be readable by group or others. No password at all is fine for a
broker that needs none (a Unix socket, a client certificate, a test broker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from edgevoice.secret_files import SecretFileError, read_secret_file

CREDENTIAL_NAME = "mqtt_password"


class BrokerCredentialsError(Exception):
    """The password file is unusable; the message says which file and what to do (never the password)."""


class Password:
    """The broker password and where it came from; its repr hides it, so it may reach a traceback or a log."""

    def __init__(self, value: str, source: str) -> None:
        self.value = value
        self.source = source

    def __repr__(self) -> str:
        return f"Password(<hidden>, source={self.source!r})"

    __str__ = __repr__


def load_password(password_file: str, environ: Mapping[str, str] = os.environ) -> Password | None:
    """The password from the first place that has one, or None when none is configured."""
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).exists():
        path = Path(cred_dir) / CREDENTIAL_NAME  # systemd made it private to the service
        return Password(_read(path, check_mode=False), f"systemd credential {CREDENTIAL_NAME}")
    if password_file:
        path = Path(password_file)
        return Password(_read(path, check_mode=True), f"password file {path}")
    return None


def _read(path: Path, *, check_mode: bool) -> str:
    try:
        text = read_secret_file(path, "the broker password file", check_mode=check_mode)
    except SecretFileError as exc:
        raise BrokerCredentialsError(str(exc)) from None
    value = text.rstrip("\r\n")  # a password may hold spaces; only the file's final newline is not part of it
    if not value or "\n" in value:
        raise BrokerCredentialsError(f"the broker password file {path} is empty or holds more than one line")
    return value
