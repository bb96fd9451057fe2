"""Where the API key comes from. It never lives in config.toml, argv or logs.

Looked up in this order:
1. `$CREDENTIALS_DIRECTORY/openai_api_key` (systemd `LoadCredential=`, the production path);
2. the file named by `[realtime] api_key_file`, which must not be readable by group or others;
3. the `OPENAI_API_KEY` environment variable (development).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CREDENTIAL_NAME = "openai_api_key"


class CredentialsError(Exception):
    """No usable API key; the message says where edgevoice looked and how to provide one."""


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str  # where it came from, safe to log

    def __repr__(self) -> str:  # never show the key, even in a traceback's locals
        return f"ApiKey(<hidden>, source={self.source!r})"

    __str__ = __repr__


def _read_key_file(path: Path, *, check_mode: bool) -> str:
    try:
        if check_mode:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CredentialsError(
                    f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
                )
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"the API key file {path} is not text") from None
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
