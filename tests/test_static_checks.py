"""The code is type-checked (mypy, strict, as pyproject.toml says) and lint-clean (ruff), on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_finds_no_error_in_the_package() -> None:
    result = run("mypy", "--no-error-summary")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing_to_fix_or_reformat() -> None:
    check = run("ruff", "check", "edgevoice", "tests", "bench")
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = run("ruff", "format", "--check", "edgevoice", "tests", "bench")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
