"""Where the API key comes from, and that it never reaches a log line."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
from edgevoice.realtime.credentials import (
    LOCAL_PLACEHOLDER,
    CredentialsError,
    EphemeralSecrets,
    MissingSecret,
    load_api_key,
    secrets_for,
)
from edgevoice.realtime.session import RealtimeSession
from edgevoice.realtime.settings import RealtimeSettings, TranscriptionSettings
from edgevoice.realtime.urls import is_loopback_host, is_loopback_url
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


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost.attacker.example", False),
        ("127.0.0.1.nip.io", False),
        ("api.openai.com", False),
        ("10.0.0.1", False),
        ("", False),
    ],
)
def test_loopback_is_one_exact_check_of_the_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_the_url_check_reads_the_host_not_a_prefix() -> None:
    assert is_loopback_url("ws://127.0.0.1:8765/v1/realtime")
    assert is_loopback_url("ws://[::1]:8765/v1/realtime")
    assert not is_loopback_url("ws://localhost.attacker.example/v1/realtime")
    assert not is_loopback_url("http://127.0.0.1@evil.example/")  # user info is not the host
    assert not is_loopback_url("ws://[::1/v1")  # malformed: not loopback, and no exception


def test_a_configured_key_is_always_sent_and_the_placeholder_only_without_one() -> None:
    local = RealtimeSettings(url="ws://127.0.0.1:9/v1/realtime")
    remote = RealtimeSettings(url="wss://api.openai.com/v1/realtime")
    assert asyncio.run(secrets_for(local, environ={"OPENAI_API_KEY": KEY}).secret()) == KEY
    assert asyncio.run(secrets_for(local, environ={}).secret()) == LOCAL_PLACEHOLDER
    missing = secrets_for(remote, environ={})
    assert isinstance(missing, MissingSecret) and "OPENAI_API_KEY" in missing.problem
    with pytest.raises(CredentialsError):
        asyncio.run(missing.secret())
    tokens = secrets_for(dataclasses.replace(remote, token_url="https://tokens.example/mint"), environ={})
    assert isinstance(tokens, EphemeralSecrets)


def test_a_loopback_relay_that_checks_the_key_gets_it() -> None:
    """Regression: a TLS tunnel or authenticating relay on 127.0.0.1 got the placeholder and answered 401."""

    async def scenario() -> str:
        async with RealtimeEmulator(EmulatorSettings(api_key=KEY)) as relay:  # refuses any other key (401)
            settings = RealtimeSettings(url=relay.url, transcription=TranscriptionSettings(model=""))
            secrets = secrets_for(settings, environ={"OPENAI_API_KEY": KEY})
            session = RealtimeSession(settings, await secrets.secret(), lambda event: None)
            await session.open()
            session_id = session.session_id
            await session.close()
            return session_id

    assert asyncio.run(scenario())
