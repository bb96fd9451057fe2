"""Reading a secret (the API key, the broker's password) from a file: refused while other users may read it.

Shared by the leaves that load secrets (realtime, fleet): a small file utility, not a part of the device.
"""

from __future__ import annotations

import stat
from pathlib import Path


class SecretFileError(Exception):
    """The file cannot be used; the message says why and what to do."""


def read_secret_file(path: Path, what: str, *, check_mode: bool) -> str:
    """The text of `path` (`what` names it in errors: "the API key file"). With `check_mode` a file that the
    group or others may read is refused (systemd's credentials are private already: their mode is not ours)."""
    try:
        if check_mode:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretFileError(
                    f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
                )
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{what} {path} is not UTF-8 text") from None
