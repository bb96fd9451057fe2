"""Where the API key comes from, and that it never reaches a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgevoice.realtime.credentials import CredentialsError, load_api_key
from edgevoice.system import logs

KEY = "sk-test-" + "a1B2c3D4" * 4


def test_systemd_credential_wins(tmp_path: Path) -> None:
    (tmp_path / "openai_api_key").write_text(KEY + "\n")
    key = load_api_key("", {"CREDENTIALS_DIRECTORY": str(tmp_path), "OPENAI_API_KEY": "sk-other"})
    assert key.value == KEY and "systemd" in key.source
    assert KEY not in repr(key) and KEY not in str(key)


def test_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY)
    path.chmod(0o644)
    with pytest.raises(CredentialsError, match=r"readable by other users \(mode 0644\); run: chmod 600"):
        load_api_key(str(path), {})
    path.chmod(0o600)
    assert load_api_key(str(path), {}).value == KEY


def test_environment_is_the_last_resort_and_absence_is_explained(tmp_path: Path) -> None:
    assert load_api_key("", {"OPENAI_API_KEY": KEY}).source == "OPENAI_API_KEY"
    with pytest.raises(CredentialsError, match=r"LoadCredential.*api_key_file.*OPENAI_API_KEY"):
        load_api_key("", {})
    bad = tmp_path / "key"
    bad.write_text("two words")
    bad.chmod(0o600)
    with pytest.raises(CredentialsError, match="more than one word"):
        load_api_key(str(bad), {})
    with pytest.raises(CredentialsError, match="cannot read"):
        load_api_key(str(tmp_path / "missing"), {})


def test_log_records_are_scrubbed_of_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup_logging("debug", journald=False)
    logs.add_secret("plainsecret123")
    log = logging.getLogger("edgevoice.test")
    log.info("header > Authorization: Bearer %s", KEY)
    log.info("key %s and %s", KEY, "plainsecret123")
    log.info("azure api-key: abcdefgh12345")
    try:
        raise RuntimeError(f"failed with {KEY}")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert KEY not in err and "plainsecret123" not in err and "abcdefgh12345" not in err
    assert err.count("<redacted>") >= 5
    logging.getLogger().handlers.clear()
