"""The devkit's boundaries: the emulator is a leaf, and the device never loads the development tools."""

from __future__ import annotations

import subprocess
import sys


def modules_after_import(*names: str) -> list[str]:
    """The edgevoice modules a fresh interpreter holds after importing `names`."""
    code = f"import sys, {', '.join(names)}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return [name for name in out.stdout.split() if name.split(".")[0] == "edgevoice"]


def test_the_emulator_imports_nothing_of_edgevoice_outside_the_devkit() -> None:
    """A separate process can run it (`edgevoice emulator`) without the device's code."""
    loaded = modules_after_import("edgevoice.devkit.emulator")
    assert "edgevoice.devkit.emulator.server" in loaded
    assert [name for name in loaded if not name.startswith("edgevoice.devkit") and name != "edgevoice"] == []


def test_edgevoice_run_never_loads_the_devkit() -> None:
    loaded = modules_after_import("edgevoice.cli", "edgevoice.service", "edgevoice.daemon")
    assert "edgevoice.daemon" in loaded
    assert [name for name in loaded if name.startswith("edgevoice.devkit")] == []
