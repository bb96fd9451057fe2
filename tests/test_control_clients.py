"""Clients of the control socket as users run them: `edgevoice ctl`, socat, and the Python and Node.js
examples of docs/control-protocol.md, each talking to a real server with a fake device."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from control_fake import Served, run, serving

from edgevoice.control.commands import COMMANDS
from edgevoice.control.ctl import add_arguments

DOC = Path(__file__).parent.parent / "docs" / "control-protocol.md"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300  # 77 kB: more than one line can carry


async def ctl(path: str, *args: str, python: str = sys.executable, **kwargs: Any) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        python, "-m", "edgevoice", "ctl", "--socket", path, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kwargs,
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def subscribed(s: Served) -> bool:
    return any(c.subscribed for c in s.server.clients.values())


# ---- edgevoice ctl ----------------------------------------------------------------------------------------


def test_ctl_offers_every_device_command_of_the_table_with_its_summary() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in subcommands._choices_actions}
    for name, spec in COMMANDS.items():
        if spec.handled_by == "device" or name in ("hello", "status"):
            assert helps[name] == spec.summary
    assert parser.parse_args(["volume"]).level is None and parser.parse_args(["volume", "0"]).level == 0.0
    assert parser.parse_args(["say", "hi there"]).text == "hi there"


def test_ctl_commands(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            code, out, _ = await ctl(s.path, "status")
            assert code == 0 and json.loads(out)["state"] == "idle" and out.startswith("{\n  ")
            assert (await ctl(s.path, "listen"))[:2] == (0, "")
            assert (await ctl(s.path, "say", "where is the kitchen?"))[0] == 0
            assert (await ctl(s.path, "speak", "battery low"))[0] == 0
            assert json.loads((await ctl(s.path, "mute"))[1]) == {"muted": True}
            assert json.loads((await ctl(s.path, "volume", "0.25"))[1]) == {"volume": 0.25}
            image = os.path.join(sockdir, "frame.png")
            Path(image).write_bytes(PNG)
            code, out, _ = await ctl(s.path, "image", image, "--prompt", "what is it?")
            assert code == 0 and json.loads(out)["received"] == len(PNG)
            assert s.device.calls == [
                ("listen",),
                ("say", "where is the kitchen?"),
                ("speak", "battery low"),
                ("mute",),
                ("volume", 0.25),
                ("image", PNG, "image/png", "what is it?"),
            ]
            s.device.state = "error"
            code, _, err = await ctl(s.path, "listen")
            assert (
                code == 1
                and err == "edgevoice ctl: listen: the device needs a person: see its status (invalid_state)\n"
            )
            code, _, err = await ctl(s.path, "volume", "2")
            assert code == 2 and err == "edgevoice ctl: volume: level = 2.0: must be between 0 and 1\n"

    run(main())


def test_ctl_explains_a_missing_socket_and_a_dead_one(sockdir: str) -> None:
    async def main() -> None:
        code, _, err = await ctl(os.path.join(sockdir, "nothing.sock"), "status")
        assert code == 3 and "no control socket at" in err and "is edgevoice running" in err
        async with serving(sockdir) as s:
            path = s.path
            os.link(path, path + ".old")  # the same socket file, after the daemon is gone
        code, _, err = await ctl(path + ".old", "status")
        assert code == 3 and "nothing listens on it" in err

    run(main())


def test_ctl_says_which_group_to_join(sockdir: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")

    async def main() -> None:
        async with serving(sockdir, mode=0o660, group="0") as s:
            # the system's Python with this checkout on its path: the test's own may live where nobody cannot go
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
            code, _, err = await ctl(
                s.path, "status", python="python3", user=65534, group=65534, extra_groups=[], env=env
            )
            if "No module named" in err:
                pytest.skip(f"the nobody user cannot run edgevoice ctl here: {err.strip()[-200:]}")
            assert code == 3, err
            assert "permission denied on" in err and "sudo usermod -aG root $USER" in err

    run(main())


def test_ctl_events_prints_json_lines_until_interrupted(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgevoice", "ctl", "--socket", s.path, "events",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert process.stdout is not None
            await wait_for(lambda: subscribed(s))
            s.device.publish({"event": "level", "level": 0.5})  # not asked for by default
            s.device.set_state("listening")
            lines = [json.loads(await process.stdout.readline()) for _ in range(2)]
            assert lines == [
                {"event": "state", "state": "idle", "snapshot": True},
                {"event": "state", "state": "listening", "previous": "idle"},
            ]
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 5) == 0

    run(main())


def test_ctl_tool_serves_a_shell_command(sockdir: str) -> None:
    script = os.path.join(sockdir, "lights.py")
    Path(script).write_text('import json, sys\nprint("lights", "on" if json.load(sys.stdin)["on"] else "off")\n')
    lights = f"{sys.executable} {script}"

    async def main() -> None:
        async with serving(sockdir) as s:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgevoice", "ctl", "--socket", s.path, "tool", "lights",
                "--command", lights, "--description", "Switch the lights",
                "--parameters", '{"type": "object", "properties": {"on": {"type": "boolean"}}}',
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await wait_for(lambda: "lights" in s.device.tools)
            tool = s.device.tools["lights"]
            assert tool.description == "Switch the lights" and tool.parameters["properties"]["on"]["type"] == "boolean"
            assert await s.device.call_tool("lights", "c1", {"on": True}) == "lights on"
            assert await s.device.call_tool("lights", "c2", {"on": False}) == "lights off"
            failed = json.loads(await s.device.call_tool("lights", "c3", {}))  # KeyError in the command
            assert "exited with status 1" in failed["error"] and "KeyError" in failed["error"]
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 5) == 0
            await wait_for(lambda: "lights" not in s.device.tools)

    run(main())


def test_ctl_tool_kills_a_command_the_device_stopped_waiting_for(sockdir: str) -> None:
    async def main() -> None:
        marker = os.path.join(sockdir, "finished")
        async with serving(sockdir) as s:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgevoice", "ctl", "--socket", s.path, "tool", "slow",
                "--command", f"sleep 1.5; touch {marker}", "--timeout", "0.3",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert process.stderr is not None
            await wait_for(lambda: "slow" in s.device.tools)
            assert "did not answer within 0.3 s" in await s.device.call_tool("slow", "c1", {})
            await process.stderr.readline()  # "serving the tool"
            assert "the command was killed" in (await asyncio.wait_for(process.stderr.readline(), 5)).decode()
            process.send_signal(signal.SIGINT)
            await process.wait()
        await asyncio.sleep(1.7)
        assert not os.path.exists(marker)

    run(main())


# ---- other languages ----------------------------------------------------------------------------------------


def test_socat_exchanges_lines(sockdir: str) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (scripts/dev-setup installs it)")

    async def main() -> None:
        async with serving(sockdir) as s:
            process = await asyncio.create_subprocess_exec(
                "socat", "-t", "2", "-", f"UNIX-CONNECT:{s.path}",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            lines = b'{"id": 1, "cmd": "status"}\n{"id": 2, "cmd": "say", "text": "hi"}\nnot json\n'
            out, _ = await process.communicate(lines)
            replies = [json.loads(line) for line in out.decode().splitlines()]
            assert [r["id"] for r in replies] == [1, 2, None]
            assert replies[0]["result"]["state"] == "idle" and replies[1]["ok"]
            assert replies[2]["error"]["code"] == "bad_json"
            assert s.device.calls == [("say", "hi")]

    run(main())


def doc_block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no {language} example in {DOC.name}"
    return match.group(1)


async def example_controller(s: Served, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run a documented controller: it serves `battery`, subscribes, speaks, and prints what it hears."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    assert process.stdout is not None
    try:
        await wait_for(lambda: ("speak", "I am ready.") in s.device.calls)
        assert "battery" in s.device.tools
        answer = json.loads(await s.device.call_tool("battery", "call_1", {}))
        assert answer["percent"] == 87
        s.device.publish({"event": "level", "level": 0.42})
        s.device.set_state("speaking")
        out = b""
        while b"speaking" not in out:
            out += await asyncio.wait_for(process.stdout.readline(), 5)
        assert b"0.42" in out
    finally:
        process.kill()
        await process.wait()
    await wait_for(lambda: "battery" not in s.device.tools)


def test_the_documented_python_controller_works(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            script = os.path.join(sockdir, "robot.py")
            Path(script).write_text(doc_block("python"))
            await example_controller(s, [sys.executable, script], {"EDGEVOICE_SOCKET": s.path})

    run(main())


def test_the_documented_nodejs_controller_works(sockdir: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")

    async def main() -> None:
        async with serving(sockdir) as s:
            script = os.path.join(sockdir, "robot.js")
            Path(script).write_text(doc_block("js"))
            await example_controller(s, [node, script, s.path])

    run(main())


def test_image_chunks_from_a_raw_client_follow_the_documented_rules(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            reader, writer = await asyncio.open_unix_connection(s.path)
            pieces = [PNG[:40_000], PNG[40_000:]]
            for i, piece in enumerate(pieces):
                request: dict[str, Any] = {"id": i, "cmd": "image", "data": base64.b64encode(piece).decode()}
                if i == 0:
                    request.update(more=True, prompt="count the pixels")
                writer.write(json.dumps(request).encode() + b"\n")
            results = [json.loads(await reader.readline())["result"] for _ in pieces]
            assert results == [
                {"received": 40_000, "complete": False},
                {"received": len(PNG), "complete": True, "mime": "image/png"},
            ]
            assert s.device.calls == [("image", PNG, "image/png", "count the pixels")]
            writer.close()

    run(main())
