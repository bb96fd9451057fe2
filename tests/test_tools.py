"""Command tools: whatever the program does (hang, leave children, flood its output), the call ends at its
timeout with nothing left running, the output is bounded, and the program never sees the daemon's secrets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edgevoice.realtime.settings import ToolSettings
from edgevoice.realtime.tools import MAX_OUTPUT_CHARS, ToolRegistry, command_tool, run_tool


def call(command: tuple[str, ...], timeout_s: float = 10.0, arguments: str = "{}") -> str:
    registry = ToolRegistry()
    registry.register(command_tool(ToolSettings(name="probe", command=command, timeout_s=timeout_s)))
    return asyncio.run(run_tool(registry, "probe", arguments, "call_1"))


def group_alive(pgid: int) -> bool:
    """A process of the group still runs (a zombie waiting for its parent to reap it does not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_a_program_that_hangs_is_killed_with_its_children_at_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    output = call(("sh", "-c", f"echo $$ > {pidfile}; sleep 30; echo late"), timeout_s=0.5)
    assert json.loads(output) == {"error": "the tool probe did not answer within 0.5 s"}
    assert not group_alive(int(pidfile.read_text()))  # the shell and its sleep: gone


def test_a_child_left_holding_the_output_does_not_hold_the_call(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # The shell answers and exits; the sleep it started in the background keeps stdout open for 30 s.
    output = call(("sh", "-c", f"echo $$ > {pidfile}; sleep 30 & echo answered"), timeout_s=10)
    assert output == "answered"  # not the timeout error: nothing waited for the sleep's pipe
    assert not group_alive(int(pidfile.read_text()))


def test_a_flood_of_output_is_read_and_cut(tmp_path: Path) -> None:
    output = call(("sh", "-c", "head -c 50000000 /dev/zero | tr '\\0' x"), timeout_s=20)
    assert len(output) == MAX_OUTPUT_CHARS and set(output) == {"x"}


def test_a_failing_program_says_why_with_the_end_of_its_stderr() -> None:
    output = call(("sh", "-c", "head -c 100000 /dev/zero | tr '\\0' e >&2; echo the real reason >&2; exit 3"))
    error = json.loads(output)["error"]
    assert "exited with status 3" in error and error.endswith("the real reason")


def test_the_program_gets_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "-".join(("sk", "not", "for", "tools")))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/edgevoice.service")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    env = dict(line.split("=", 1) for line in call(("env",)).splitlines())
    assert not {"OPENAI_API_KEY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET"} & set(env)
    assert env["EDGEVOICE_TOOL"] == "probe" and env["EDGEVOICE_CALL_ID"] == "call_1" and env["PATH"]


def test_arguments_arrive_on_stdin_even_when_large() -> None:
    arguments = json.dumps({"text": "y" * 200_000})
    assert call(("sh", "-c", "wc -c"), arguments=arguments) == str(len(arguments))
