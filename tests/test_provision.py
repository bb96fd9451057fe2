"""scripts/provision end to end against a throwaway root: files, users, groups, permissions, the unit;
a second run changes nothing, --dry-run changes nothing, --uninstall takes back what it added."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROVISION = REPO / "scripts" / "provision"
KEY = "sk-" + "proj-provisiontest0123456789"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "groupadd", "systemctl")),
    reason="needs root, shadow's useradd/groupadd and systemctl",
)


def fresh_root(root: Path) -> Path:
    """The /etc of a fresh Debian as far as provisioning cares: root, and an audio group (no gpio, no spi)."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\naudio:x:29:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\naudio:*::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o640)
    return root


def provision(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, str(PROVISION), "--root", str(root), "--no-deps", "--non-interactive", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert KEY not in out.stdout + out.stderr
    return out.stdout


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str, int]]:
    """Every path under root: mode, owner, group, content hash (or link target), mtime."""
    result = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            content = os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = "dir"
        result[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, content, st.st_mtime_ns)
    return result


def entries(root: Path, name: str) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc" / name).read_text().splitlines()}


def test_provision_installs_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    root = fresh_root(tmp_path / "root")
    out = provision(root, "--profile", "respeaker-2mic", env={"EDGEVOICE_API_KEY": KEY})
    assert "create         user edgevoice" in out and "enable         edgevoice.service" in out

    user = entries(root, "passwd")["edgevoice"]
    uid, gid = int(user[2]), int(user[3])
    assert user[5:] == ["/var/lib/edgevoice", "/usr/sbin/nologin"] and uid < 1000  # a system user, no login
    groups = entries(root, "group")
    for group in ("audio", "gpio", "spi"):
        assert "edgevoice" in groups[group][3].split(","), group
    assert int(groups["edgevoice"][2]) == gid

    def mode(rel: str) -> tuple[int, int, int]:
        st = (root / rel).stat()
        return st.st_mode & 0o7777, st.st_uid, st.st_gid

    assert (root / "etc/credstore/openai_api_key").read_text() == KEY + "\n"
    assert mode("etc/credstore/openai_api_key") == (0o600, 0, 0)
    assert mode("etc/credstore") == (0o700, 0, 0)
    assert mode("var/lib/edgevoice") == (0o750, uid, gid)
    config = (root / "etc/edgevoice/config.toml").read_text()
    assert '[hardware]\nprofile = "respeaker-2mic"' in config and KEY not in config
    assert mode("etc/edgevoice/config.toml") == (0o644, 0, 0)
    unit = root / "etc/systemd/system/edgevoice.service"
    assert unit.read_text() == (REPO / "systemd/edgevoice.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/edgevoice.service"
    assert os.readlink(wants) == "/etc/systemd/system/edgevoice.service"
    version = subprocess.run([root / "opt/edgevoice/venv/bin/edgevoice", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("edgevoice ")

    before = snapshot(root)
    again = provision(root, "--profile", "respeaker-2mic", env={"EDGEVOICE_API_KEY": KEY})
    assert "0 change(s); done." in again
    assert snapshot(root) == before

    # A new key replaces the old one in place; nothing else moves.
    provision(root, env={"EDGEVOICE_API_KEY": KEY + "x"})
    assert (root / "etc/credstore/openai_api_key").read_text() == KEY + "x\n"
    assert mode("etc/credstore/openai_api_key") == (0o600, 0, 0)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = fresh_root(tmp_path / "root")
    before = snapshot(root)
    out = provision(root, "--dry-run", env={"EDGEVOICE_API_KEY": KEY})
    assert "would create   user edgevoice" in out and "would create   /etc/credstore/openai_api_key" in out
    assert "change(s) would be made" in out
    assert snapshot(root) == before


def test_uninstall_removes_what_it_added_and_keeps_the_config_unless_purged(tmp_path: Path) -> None:
    root = fresh_root(tmp_path / "root")
    seed = {name: (root / "etc" / name).read_text() for name in ("passwd", "group", "shadow", "gshadow")}
    provision(root, env={"EDGEVOICE_API_KEY": KEY})
    out = provision(root, "--uninstall")
    assert "remove         group gpio (created by provision)" in out and "group audio" not in out
    for name, text in seed.items():
        assert (root / "etc" / name).read_text() == text, name  # user and created groups gone, audio kept
    for gone in ("opt/edgevoice", "etc/credstore", "etc/systemd/system/edgevoice.service",
                 "etc/systemd/system/multi-user.target.wants/edgevoice.service"):  # fmt: skip
        assert not (root / gone).exists(), gone
    assert (root / "etc/edgevoice/config.toml").exists() and (root / "var/lib/edgevoice").exists()
    provision(root, "--uninstall", "--purge")
    assert not (root / "etc/edgevoice").exists() and not (root / "var/lib/edgevoice").exists()
    assert "\n  remove " not in provision(root, "--uninstall")  # nothing left: a quiet no-op


def test_a_token_url_device_stores_no_api_key_and_its_unit_loads_the_device_token(tmp_path: Path) -> None:
    root = fresh_root(tmp_path / "root")
    token = tmp_path / "device-token"
    token.write_text("dev-0123456789abcdef\n")
    url = "https://fleet.example.com/edgevoice/secret"
    out = provision(root, "--token-url", url, "--device-token-file", str(token), env={"EDGEVOICE_API_KEY": KEY})
    assert "not needed with --token-url" in out
    assert not (root / "etc/credstore/openai_api_key").exists()  # even with a key in the environment
    stored = root / "etc/credstore/edgevoice_device_token"
    assert stored.read_text() == "dev-0123456789abcdef\n" and stored.stat().st_mode & 0o7777 == 0o600
    assert f'[realtime]\ntoken_url = "{url}"' in (root / "etc/edgevoice/config.toml").read_text()
    dropin = root / "etc/systemd/system/edgevoice.service.d/credentials.conf"
    assert dropin.read_text().splitlines()[-2:] == [
        "LoadCredential=",  # the unit's openai_api_key credential is dropped: there is no key file to load
        "LoadCredential=edgevoice_device_token:/etc/credstore/edgevoice_device_token",
    ]
    # systemd reads the unit and the drop-in without complaint.
    unit_dir = tmp_path / "units"
    (unit_dir / "edgevoice.service.d").mkdir(parents=True)
    binary = unit_dir / "edgevoice"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = (REPO / "systemd/edgevoice.service").read_text().replace("/opt/edgevoice/venv/bin/edgevoice", str(binary))
    (unit_dir / "edgevoice.service").write_text(unit)
    shutil.copy(dropin, unit_dir / "edgevoice.service.d" / "credentials.conf")
    check = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_dir / "edgevoice.service")],
        capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
    )  # fmt: skip
    about_dropin = [line for line in (check.stdout + check.stderr).splitlines() if "credentials.conf" in line]
    assert check.returncode == 0 and about_dropin  # the drop-in was read...
    assert not [line for line in about_dropin if "Unknown" in line or "Failed" in line or "Invalid" in line]
    assert "0 change(s)" in provision(root, "--token-url", url)  # ...and a second run keeps it all
    provision(root, "--uninstall")
    assert not dropin.parent.exists() and not stored.exists()
