"""scripts/provision for a fleet device: the [mqtt] section, the broker password as a 0600 credential that the
unit loads (never in config.toml or the output), the broker's CA; a second run changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_provision import KEY, PROVISION, fresh_root, provision, pytestmark, snapshot

from edgevoice.config import parse_config

__all__ = ["pytestmark"]
PASSWORD = "mqtt-" + "pa55 word"


def test_a_fleet_device_gets_its_broker_settings_and_password_credential(tmp_path: Path) -> None:
    root = fresh_root(tmp_path / "root")
    password, ca = tmp_path / "pw", tmp_path / "ca.crt"
    password.write_text(PASSWORD + "\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n")
    args = ("--mqtt-url", "mqtts://broker.example.org", "--mqtt-user", "kiosk7", "--mqtt-password-file", str(password),
            "--mqtt-ca-file", str(ca))  # fmt: skip
    out = provision(root, *args, env={"EDGEVOICE_API_KEY": KEY})
    assert PASSWORD not in out
    config_text = (root / "etc/edgevoice/config.toml").read_text()
    assert PASSWORD not in config_text
    mqtt = parse_config(config_text).mqtt  # what provision wrote is a valid configuration
    assert (mqtt.url, mqtt.username, mqtt.ca_file) == (
        "mqtts://broker.example.org",
        "kiosk7",
        "/etc/edgevoice/mqtt-ca.crt",
    )
    stored = root / "etc/credstore/mqtt_password"
    assert stored.read_text() == PASSWORD + "\n" and stored.stat().st_mode & 0o7777 == 0o600
    assert (root / "etc/edgevoice/mqtt-ca.crt").read_text() == ca.read_text()
    dropin = root / "etc/systemd/system/edgevoice.service.d/mqtt.conf"
    assert dropin.read_text().splitlines()[-1] == "LoadCredential=mqtt_password:/etc/credstore/mqtt_password"

    before = snapshot(root)
    assert "0 change(s); done." in provision(root, *args)
    assert snapshot(root) == before
    provision(root, "--uninstall")
    assert not stored.exists() and not dropin.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mqtt-url", "http://broker"), "must start with mqtt://, mqtts:// or unix:///"),
        (("--mqtt-url", "mqtt://broker", "--mqtt-ca-file", "/ca.crt"), "--mqtt-ca-file is for an mqtts://"),
    ],
)
def test_bad_mqtt_flags_are_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    root = fresh_root(tmp_path / "root")
    out = subprocess.run(
        [sys.executable, str(PROVISION), "--root", str(root), "--no-deps", "--non-interactive", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and message in out.stderr
