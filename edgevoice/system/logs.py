"""Logging set-up: journald under systemd, stderr otherwise, and secrets scrubbed from every record.

Records can carry structured fields for the journal: upper-case names given as `extra=` (for example
`log.error("...", extra={"ERROR_CODE": "config_invalid"})`), plus the context every record gets while it
is set (`set_log_context(STATE="listening", SESSION_ID="sess_...")`). JournalHandler sends them as journal
fields, so `journalctl -u edgevoice STATE=error` or `SESSION_ID=sess_...` finds the lines; on stderr they
are appended as `[KEY=value ...]`.

The redaction is a last line of defence: code never logs the key on purpose, but a library might (the
websockets client logs request headers at debug level). Known secret values are replaced wherever they
appear, and so is anything shaped like a bearer token or an OpenAI key.
"""

from __future__ import annotations

import logging
import os
import re
import sys

_PATTERNS = [
    re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+"),
    re.compile(r"()\b(?:sk|ek)[-_][A-Za-z0-9_-]{8,}"),
]
REDACTED = "<redacted>"


class RedactSecrets(logging.Filter):
    """Replace registered secret values and key-shaped strings in a record's final message."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_redactor = RedactSecrets()

_FIELD_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")  # journald's rule: no leading '_', upper case, <= 64


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """The structured fields a record carries: its upper-case attributes (from `extra=` or the context)."""
    return {
        key: _redactor.redact(str(value))
        for key, value in record.__dict__.items()
        if _FIELD_NAME.match(key) and value is not None and value != ""
    }


class LogContext(logging.Filter):
    """Adds the current context fields to every record that does not set them itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        for key, value in journal_fields(record).items():  # a field must not leak a secret either
            setattr(record, key, value)
        return True


_context = LogContext()


def set_log_context(**fields: str) -> None:
    """Set (or with "" clear) fields every following record carries, e.g. STATE and SESSION_ID."""
    for key, value in fields.items():
        if not _FIELD_NAME.match(key):
            raise ValueError(f"{key!r} is not a journal field name (upper case letters, digits, '_')")
        if value:
            _context.fields[key] = str(value)
        else:
            _context.fields.pop(key, None)


class _StderrFormatter(logging.Formatter):
    """The usual line, plus the record's structured fields at the end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = journal_fields(record)
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in sorted(fields.items())) + "]"
        return line


def add_secret(value: str) -> None:
    """Never let this value reach a log line."""
    if value and len(value) >= 6:
        _redactor.secrets.add(value)


def under_systemd(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return bool(environ.get("INVOCATION_ID") or environ.get("JOURNAL_STREAM"))


def setup_logging(level: str = "info", *, journald: bool | None = None) -> None:
    """Configure the root logger once: journald when run by systemd, stderr otherwise."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler | None = None
    if journald if journald is not None else under_systemd():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="edgevoice")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_redactor)
    handler.addFilter(_context)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_noisy_loggers()


def quiet_noisy_loggers() -> None:
    """websockets logs every frame, and the request headers, at debug level: too much, and secret-bearing."""
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))
