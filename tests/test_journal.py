"""Structured journal fields, received the way journald receives them.

A child process runs in its own mount namespace with a tmpfs on /run, binds /run/systemd/journal/socket
itself and logs through systemd-python's JournalHandler (libsystemd's sd_journal_sendv), so the datagrams
it reads are byte for byte what journald would get.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from edgevoice.system import logs

CHILD = textwrap.dedent(
    """
    import json, logging, os, socket, struct
    os.makedirs("/run/systemd/journal")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/run/systemd/journal/socket")
    sock.settimeout(2)
    from edgevoice.system import logs
    logs.setup_logging("info", journald=True)
    logs.add_secret("sk-" + "proj-abcdefghijklmnop")
    log = logging.getLogger("edgevoice.test")
    logs.set_log_context(STATE="listening", SESSION_ID="sess_42")
    log.info("turn started")
    log.error("refused: %s", "bad key", extra={"ERROR_CODE": "auth", "DEVICE": "sk-" + "proj-abcdefghijklmnop"})
    logs.set_log_context(SESSION_ID="")
    log.warning("multi\\nline")

    def parse(data):
        fields, i = {}, 0
        while i < len(data):
            nl = data.index(b"\\n", i)
            line = data[i:nl]
            if b"=" in line:
                key, value = line.split(b"=", 1)
                i = nl + 1
            else:  # binary-safe form: KEY\\n, little-endian 64-bit length, value, \\n
                key = line
                (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
                value = data[nl + 9 : nl + 9 + size]
                i = nl + 9 + size + 1
            fields[key.decode()] = value.decode(errors="replace")
        return fields

    print(json.dumps([parse(sock.recv(65536)) for _ in range(3)]))
    """
)


def test_records_reach_the_journal_with_state_session_and_error_fields() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /run")
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs /run && exec "$0" -c "$1"',
         sys.executable, CHILD],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if out.returncode != 0 and "unshare failed" in out.stderr:
        pytest.skip(f"no mount namespaces here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    first, second, third = json.loads(out.stdout)
    assert first["MESSAGE"] == "edgevoice.test: turn started"
    assert first["SYSLOG_IDENTIFIER"] == "edgevoice" and first["PRIORITY"] == "6"
    assert first["STATE"] == "listening" and first["SESSION_ID"] == "sess_42" and "ERROR_CODE" not in first
    assert second["ERROR_CODE"] == "auth" and second["PRIORITY"] == "3" and second["STATE"] == "listening"
    assert second["DEVICE"] == "<redacted>"  # a field must not leak a secret either
    assert "sk-proj" not in out.stdout
    assert "SESSION_ID" not in third and third["MESSAGE"] == "edgevoice.test: multi\nline"


def test_fields_show_on_stderr_too(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup_logging("info", journald=False)
    try:
        logs.set_log_context(STATE="thinking")
        logging.getLogger("edgevoice.test").warning("slow answer", extra={"ERROR_CODE": "timeout"})
        with pytest.raises(ValueError, match="journal field name"):
            logs.set_log_context(state="lower")
    finally:
        logs.set_log_context(STATE="")
        logging.getLogger().handlers.clear()
    assert "slow answer [ERROR_CODE=timeout STATE=thinking]" in capsys.readouterr().err
