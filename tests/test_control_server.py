"""The control socket through a real Unix socket: every command, every kind of bad line, tools served by a
client, events to slow and fast readers, floods, and who may connect (SO_PEERCRED, mode, group)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from typing import Any

import pytest
from control_fake import FakeDevice, LineClient, run, serving

from edgevoice.control.api import ControlError
from edgevoice.control.client import ControlClient
from edgevoice.control.clients import RESERVED_SLOTS
from edgevoice.control.limits import MAX_LINE

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(150_000)
WEBP_BODY = b"VP8 " + os.urandom(40_000)  # inline: fits a line


# ---- every command ----------------------------------------------------------------------------------


def test_every_command_reaches_the_device_and_gets_one_reply(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            c = await LineClient.connect(s.path)
            hello = await c.ask({"id": 1, "cmd": "hello"})
            assert hello["id"] == 1 and hello["ok"]
            result = hello["result"]
            assert result["protocol"] == 1 and result["state"] == "idle"
            assert "tools.register" in result["commands"] and "level" in result["events"]
            assert result["limits"]["line_bytes"] == MAX_LINE
            assert result["client"]["pid"] == os.getpid() and result["client"]["uid"] == os.getuid()

            status = (await c.ask({"id": "s", "cmd": "status"}))["result"]
            assert status["state"] == "idle" and status["volume"] == 0.5 and status["control"]["clients"] == 1

            for i, cmd in enumerate(["listen", "stop", "cancel", "end"]):
                assert await c.ask({"id": i, "cmd": cmd}) == {"id": i, "ok": True, "result": {}}
            assert (await c.ask({"id": 5, "cmd": "say", "text": "what time is it?"}))["ok"]
            assert (await c.ask({"id": 6, "cmd": "speak", "text": "battery low"}))["ok"]
            assert (await c.ask({"id": 7, "cmd": "mute"}))["result"] == {"muted": True}
            assert (await c.ask({"id": 8, "cmd": "unmute"}))["result"] == {"muted": False}
            assert (await c.ask({"id": 9, "cmd": "volume"}))["result"] == {"volume": 0.5}
            assert (await c.ask({"id": 10, "cmd": "volume", "level": 0.8}))["result"] == {"volume": 0.8}
            inline = {"id": 11, "cmd": "image", "data": base64.b64encode(PNG).decode(), "prompt": "what is this?"}
            assert (await c.ask(inline))["result"] == {"received": len(PNG), "complete": True, "mime": "image/png"}
            assert (await c.ask({"id": 12, "cmd": "subscribe", "events": ["state"]}))["result"] == {"events": ["state"]}
            assert await c.line() == {"event": "state", "state": "idle", "snapshot": True}
            assert (await c.ask({"id": 13, "cmd": "unsubscribe"}))["ok"]
            await c.close()
            assert s.device.calls == [
                ("listen",),
                ("stop",),
                ("cancel",),
                ("end",),
                ("say", "what time is it?"),
                ("speak", "battery low"),
                ("mute",),
                ("unmute",),
                ("volume", None),
                ("volume", 0.8),
                ("image", PNG, "image/png", "what is this?"),
            ]

    run(main())


def test_a_large_image_arrives_in_chunks_or_from_a_file(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s, ControlClient(s.path) as c:
            result = await c.send_image(JPEG, prompt="who is at the door?")  # 150 kB: four lines
            assert result == {"received": len(JPEG), "complete": True, "mime": "image/jpeg"}
            assert s.device.calls[-1] == ("image", JPEG, "image/jpeg", "who is at the door?")

            path = os.path.join(sockdir, "frame.jpg")
            with open(path, "wb") as f:
                f.write(JPEG)
            assert (await c.request("image", path=path))["received"] == len(JPEG)
            assert s.device.calls[-1] == ("image", JPEG, "image/jpeg", None)

            with open(path, "wb") as f:
                f.write(b"OPENAI_API_KEY=sk-secret\n")
            with pytest.raises(ControlError, match="not a JPEG or PNG picture") as refused:
                await c.request("image", path=path)  # the daemon reads files, but only pictures
            assert refused.value.code == "bad_request"
            with pytest.raises(ControlError, match="no such file"):
                await c.request("image", path="/nonexistent/frame.jpg")
            with pytest.raises(ControlError, match="mime says image/png but the data is image/jpeg"):
                await c.request("image", data=base64.b64encode(JPEG[:1000]).decode(), mime="image/png")
            assert len(s.device.calls) == 2

    run(main())


def test_a_webp_picture_is_refused_with_what_to_do_however_it_comes(sockdir: str) -> None:
    """The Realtime API takes JPEG and PNG only: WebP is refused at the socket, inline, in pieces, from a
    file or by its mime, and nothing reaches the device."""
    webp = b"RIFF" + (len(WEBP_BODY) + 4).to_bytes(4, "little") + b"WEBP" + WEBP_BODY
    convert = "the picture is WebP, which the model does not take: convert it to JPEG or PNG"

    async def main() -> None:
        async with serving(sockdir) as s:
            c = await LineClient.connect(s.path)
            inline = {"id": 1, "cmd": "image", "data": base64.b64encode(webp).decode(), "prompt": "what is it?"}
            assert await c.ask(inline) == {
                "id": 1,
                "ok": False,
                "error": {"code": "bad_request", "message": f"image: {convert}"},
            }
            first = {"id": 2, "cmd": "image", "data": base64.b64encode(webp[:20_000]).decode(), "more": True}
            assert (await c.ask(first))["result"] == {"received": 20_000, "complete": False}
            last = await c.ask({"id": 3, "cmd": "image", "data": base64.b64encode(webp[20_000:]).decode()})
            assert last["error"] == {"code": "bad_request", "message": f"image: {convert}"}
            path = os.path.join(sockdir, "frame.webp")
            with open(path, "wb") as f:
                f.write(webp)
            from_file = await c.ask({"id": 4, "cmd": "image", "path": path})
            assert from_file["error"] == {"code": "bad_request", "message": f"image: {convert}"}
            by_mime = await c.ask(
                {"id": 5, "cmd": "image", "data": base64.b64encode(PNG).decode(), "mime": "image/webp"}
            )
            assert by_mime["error"]["code"] == "bad_request"
            assert "mime 'image/webp' is not supported" in by_mime["error"]["message"]
            assert "convert the picture to JPEG or PNG" in by_mime["error"]["message"]
            assert s.device.calls == []
            png = await c.ask({"id": 6, "cmd": "image", "data": base64.b64encode(PNG).decode()})
            assert png["result"] == {"received": len(PNG), "complete": True, "mime": "image/png"}
            assert s.device.calls == [("image", PNG, "image/png", None)]

    run(main())


def test_the_device_refusing_or_failing_leaves_the_connection_usable(sockdir: str) -> None:
    async def main() -> None:
        device = FakeDevice()
        device.state = "error"
        device.refuse["say"] = RuntimeError("a bug in the device")
        async with serving(sockdir, device) as s:
            c = await LineClient.connect(s.path)
            refused = await c.ask({"id": 1, "cmd": "listen"})
            assert refused == {
                "id": 1,
                "ok": False,
                "error": {"code": "invalid_state", "message": "the device needs a person: see its status"},
            }
            failed = await c.ask({"id": 2, "cmd": "say", "text": "hi"})
            assert failed["error"]["code"] == "internal" and "a bug in the device" in failed["error"]["message"]
            assert (await c.ask({"id": 3, "cmd": "status"}))["ok"]

    run(main())


# ---- bad lines ----------------------------------------------------------------------------------------

BAD_LINES = [
    (b"\xff\xfe not utf-8", None, "bad_json", "not valid UTF-8"),
    (b'{"id": 1, "cmd": "status"', None, "bad_json", "not valid JSON"),
    (b"[1, 2, 3]", None, "bad_request", "not an array"),
    (b'"status"', None, "bad_request", "not a string"),
    (b"42", None, "bad_request", "not a number"),
    (b"[" * 100_00 + b"]" * 100_00, None, "bad_json", ""),
    (b'{"id": 2, "cmd": "volume", "level": NaN}', None, "bad_json", "NaN is not JSON"),
    (b'{"id": 3}', 3, "bad_request", 'needs "cmd"'),
    (b'{"id": 4, "cmd": 7}', 4, "bad_request", "cmd must be a string"),
    (b'{"id": 5, "cmd": "lisen"}', 5, "unknown_command", "did you mean 'listen'"),
    (b'{"id": 6, "cmd": "say", "txt": "hi"}', 6, "bad_request", 'needs "text" (you sent "txt")'),
    (b'{"id": 7, "cmd": "say", "text": 5}', 7, "bad_request", "text must be a string, not a number"),
    (b'{"id": 8, "cmd": "say", "text": "  "}', 8, "bad_request", "text is empty"),
    (b'{"id": 9, "cmd": "say", "text": "' + b"a" * 5000 + b'"}', 9, "bad_request", "the limit is 4096"),
    (b'{"id": 10, "cmd": "say", "text": "\\ud800"}', 10, "bad_request", "lone surrogate"),
    (b'{"id": 11, "cmd": "status", "verbose": true}', 11, "bad_request", "unknown field 'verbose'"),
    (b'{"id": 12, "cmd": "volume", "level": 1.5}', 12, "bad_request", "between 0 and 1"),
    (b'{"id": 13, "cmd": "volume", "level": true}', 13, "bad_request", "must be a number, not a boolean"),
    (b'{"id": true, "cmd": "status"}', None, "bad_request", "id must be"),
    (b'{"id": 1e3, "cmd": "status"}', None, "bad_request", "id must be"),
    (b'{"id": 99999999999999999999, "cmd": "status"}', None, "bad_request", "id must be"),
    (b'{"id": 14, "cmd": "subscribe", "events": ["states"]}', 14, "bad_request", "did you mean 'state'"),
    (b'{"id": 15, "cmd": "subscribe", "events": "state"}', 15, "bad_request", "array of strings"),
    (b'{"id": 16, "cmd": "tools.register", "tools": []}', 16, "bad_request", "non-empty array"),
    (b'{"id": 17, "cmd": "tools.register", "tools": [{"name": "move forward"}]}', 17, "bad_request", "1-64 letters"),
    (
        b'{"id": 18, "cmd": "tools.register", "tools": [{"name": "x", "parameters": []}]}',
        18,
        "bad_request",
        "JSON Schema",
    ),
    (b'{"id": 19, "cmd": "tools.register", "tools": [{"name": "x", "timeout_s": 0}]}', 19, "bad_request", "between"),
    (b'{"id": 20, "cmd": "tools.register", "tools": [{"name": "x", "secret": 1}]}', 20, "bad_request", "unknown field"),
    (b'{"id": 21, "cmd": "tool.result", "call_id": "c1"}', 21, "bad_request", 'needs "output"'),
    (b'{"id": 22, "cmd": "tool.result", "call_id": "c1", "output": "x"}', 22, "not_found", "no call 'c1' is waiting"),
    (b'{"id": 23, "cmd": "image", "data": "!!!"}', 23, "bad_request", "not valid base64"),
    (b'{"id": 24, "cmd": "image", "path": "frame.jpg"}', 24, "bad_request", "must be absolute"),
    (b'{"id": 25, "cmd": "image", "data": "AAAA", "path": "/x"}', 25, "bad_request", "either"),
    (b'{"id": 26, "cmd": "image", "data": "AAAA", "mime": "image/bmp"}', 26, "bad_request", "not supported"),
    (b'{"id": 27, "cmd": "image", "data": "AAAA"}', 27, "bad_request", "not a JPEG or PNG picture"),
]


def test_every_kind_of_bad_line_gets_an_error_reply_and_the_connection_stays_usable(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            c = await LineClient.connect(s.path)
            for line, request_id, code, words in BAD_LINES:
                reply = await c.ask(line + b"\n")
                assert reply["id"] == request_id and reply["ok"] is False, (line[:60], reply)
                assert reply["error"]["code"] == code, (line[:60], reply)
                assert words in reply["error"]["message"], (line[:60], reply)
                assert (await c.ask({"id": "after", "cmd": "status"}))["ok"], line[:60]
            assert s.device.calls == []

    run(main())


def test_an_over_long_line_is_skipped_to_its_newline(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            c = await LineClient.connect(s.path)
            # 200 KiB in pieces, then the next request on the same write as the end of the long one
            await c.send(b'{"id": 1, "cmd": "say", "text": "' + b"x" * 100_000)
            await c.send(b"y" * 100_000)
            await c.send(b'"}\n{"id": 2, "cmd": "say", "text": "short"}\n')
            assert await c.line() == {
                "id": None,
                "ok": False,
                "error": {
                    "code": "line_too_long",
                    "message": f"a line is at most {MAX_LINE} bytes; it was skipped to its newline",
                },
            }
            assert await c.line() == {"id": 2, "ok": True, "result": {}}
            exact = b'{"id": 3, "cmd": "status", "pad": "' + b"p" * (MAX_LINE - 37) + b'"}'
            assert len(exact) == MAX_LINE
            assert (await c.ask(exact + b"\r\n"))["error"]["message"].startswith("status: unknown field 'pad'")
            assert s.device.calls == [("say", "short")]  # the long one never reached the device

    run(main())


def test_blank_lines_and_crlf_are_accepted(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            c = await LineClient.connect(s.path)
            await c.send(b'\n\r\n   \n{"cmd": "listen"}\r\n')
            assert await c.line() == {"id": None, "ok": True, "result": {}}

    run(main())


# ---- events -------------------------------------------------------------------------------------------


def test_subscribers_get_a_snapshot_then_the_events_they_asked_for(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            every, states = await LineClient.connect(s.path), await LineClient.connect(s.path)
            quiet = await LineClient.connect(s.path)
            assert (await every.ask({"id": 1, "cmd": "subscribe"}))["result"] == {"events": "all"}
            await states.ask({"id": 1, "cmd": "subscribe", "events": ["state", "level"]})
            assert (await every.line())["snapshot"] and (await states.line())["snapshot"]
            s.device.set_state("listening")
            s.device.publish({"event": "transcript", "role": "user", "item_id": "i1", "text": "hi", "final": True})
            s.device.publish({"event": "level", "level": 0.25})
            s.device.publish({"event": "future_event", "x": 1})
            s.device.publish({"event": "bad", "value": float("nan")})  # not JSON: logged, never sent
            assert [(await every.line())["event"] for _ in range(4)] == ["state", "transcript", "level", "future_event"]
            assert await states.line() == {"event": "state", "state": "listening", "previous": "idle"}
            assert await states.line() == {"event": "level", "level": 0.25}
            assert (await quiet.ask({"id": 9, "cmd": "status"}))["id"] == 9  # no events before the reply
            await every.ask({"id": 2, "cmd": "unsubscribe"})
            s.device.set_state("thinking")
            assert (await every.ask({"id": 3, "cmd": "status"}))["id"] == 3
            await asyncio.sleep(0.05)
            assert not every.reader._buffer  # nothing after unsubscribe

    run(main())


def test_a_slow_reader_blocks_neither_the_device_nor_other_clients_and_learns_what_it_missed(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir, event_queue=64) as s:
            slow, other = await LineClient.connect(s.path), await LineClient.connect(s.path)
            slow.writer.transport.pause_reading()  # a controller that stopped reading its socket
            await slow.send({"id": 1, "cmd": "subscribe", "events": ["transcript"]})
            await asyncio.sleep(0.05)
            text = "x" * 2000
            published, worst, rtts = 20_000, 0.0, []
            for i in range(published):
                start = time.perf_counter()
                s.device.publish(
                    {"event": "transcript", "role": "assistant", "item_id": "i", "text": text, "final": False, "n": i}
                )
                worst = max(worst, time.perf_counter() - start)
                if i % 2000 == 0:
                    start = time.perf_counter()
                    assert (await other.ask({"id": i, "cmd": "status"}))["ok"]
                    rtts.append(time.perf_counter() - start)
            client = next(iter(s.server.clients.values()))
            assert client.outbox.queued_events <= 64
            assert max(rtts) < 1.0 and worst < 0.05  # generous bounds: the figures are in bench/control.py

            slow.writer.transport.resume_reading()
            assert (await slow.line())["id"] == 1
            assert (await slow.line())["snapshot"]
            received, dropped, last = 0, 0, -1
            while last < published - 1:
                line = await slow.line()
                if line["event"] == "dropped":
                    dropped += line["count"]
                else:
                    assert line["n"] > last  # in order, never duplicated
                    last = line["n"]
                    received += 1
            assert received + dropped == published and dropped > published // 2
            assert client.outbox.dropped_total == dropped

    run(main(), timeout=60)


# ---- tools ----------------------------------------------------------------------------------------------


def test_a_client_serves_a_tool_the_model_calls(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            robot, watcher = await LineClient.connect(s.path), await LineClient.connect(s.path)
            await robot.ask({"id": 1, "cmd": "subscribe", "events": ["tool_call"]})
            await watcher.ask({"id": 1, "cmd": "subscribe", "events": ["tool_call"]})
            await robot.line(), await watcher.line()  # snapshots
            tool = {"name": "move", "description": "Drive", "parameters": {"type": "object"}, "timeout_s": 2}
            assert (await robot.ask({"id": 2, "cmd": "tools.register", "tools": [tool]}))["result"] == {
                "registered": ["move"]
            }
            registered = s.device.tools["move"]
            assert (registered.description, registered.parameters, registered.timeout_s) == (
                "Drive",
                {"type": "object"},
                2,
            )
            assert registered.owner.startswith("control client 1 (pid ")

            call = asyncio.create_task(s.device.call_tool("move", "call_1", {"cm": 20}))
            ask = await robot.line()
            assert ask == {"event": "tool_call", "call_id": "call_1", "name": "move", "arguments": '{"cm": 20}'}
            assert (await watcher.line())["call_id"] == "call_1"  # others see the call too
            assert (await robot.ask({"id": 3, "cmd": "tool.result", "call_id": "call_1", "output": {"moved": 20}}))[
                "ok"
            ]
            assert await call == '{"moved": 20}'

            again = await robot.ask({"id": 4, "cmd": "tool.result", "call_id": "call_1", "output": "late"})
            assert again["error"]["code"] == "not_found"
            await asyncio.sleep(0.05)
            assert not robot.reader._buffer  # the owner got one tool_call, not the broadcast as well

            s.device.tools["move"].timeout_s = 0.2
            slow_call = await s.device.call_tool("move", "call_2", {})
            assert json.loads(slow_call) == {"error": "the tool move did not answer within 0.2 s"}
            assert (await robot.line())["call_id"] == "call_2"
            assert await robot.line() == {"event": "tool_cancelled", "call_id": "call_2", "name": "move"}

            assert (await robot.ask({"id": 5, "cmd": "tools.unregister", "names": ["move"]}))["result"] == {
                "unregistered": ["move"]
            }
            assert "move" not in s.device.tools

    run(main())


def test_a_name_taken_by_someone_else_is_refused_and_nothing_is_registered(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            c = await LineClient.connect(s.path)
            tools = [{"name": "lights"}, {"name": "config_tool"}]
            reply = await c.ask({"id": 1, "cmd": "tools.register", "tools": tools})
            assert reply["error"] == {"code": "busy", "message": "the tool 'config_tool' is already served by config"}
            assert "lights" not in s.device.tools  # all or nothing
            assert s.device.tools["config_tool"].owner == "config"

    run(main())


def test_a_client_that_disconnects_loses_its_tools_and_pending_calls_fail_at_once(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s:
            robot = await LineClient.connect(s.path)
            tools = [{"name": "arm", "timeout_s": 30}, {"name": "grip", "timeout_s": 30}]
            await robot.ask({"id": 1, "cmd": "tools.register", "tools": tools})
            call = asyncio.create_task(s.device.call_tool("arm", "call_9", {}))
            assert (await robot.line())["event"] == "tool_call"
            start = time.monotonic()
            await robot.close()
            output = json.loads(await call)
            assert time.monotonic() - start < 2.0  # not the 30 s timeout
            assert "disconnected before answering" in output["error"]
            await asyncio.sleep(0.05)
            assert "arm" not in s.device.tools and "grip" not in s.device.tools
            (released,) = s.device.released  # and the answers it asked for that still wait are dropped
            assert released.startswith("control client ") and f"pid {os.getpid()}" in released
            late = await s.device.call_tool("arm", "call_10", {})  # a call racing the unregistration
            assert "no tool named 'arm'" in late

    run(main())


def test_the_python_client_serves_tools(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir) as s, ControlClient(s.path) as c:

            async def battery(args: dict[str, Any]) -> dict[str, Any]:
                return {"percent": 81, "asked": args}

            def broken(args: dict[str, Any]) -> str:
                raise ValueError("sensor unplugged")

            await c.serve_tool("battery", "Battery level", {"type": "object", "properties": {}}, battery)
            await c.serve_tool("temperature", "Motor temperature", None, broken)
            assert json.loads(await s.device.call_tool("battery", "c1", {"unit": "%"})) == {
                "percent": 81,
                "asked": {"unit": "%"},
            }
            assert json.loads(await s.device.call_tool("temperature", "c2", {})) == {
                "error": "temperature failed: sensor unplugged"
            }
            with pytest.raises(ControlError, match="already served by config"):
                await c.serve_tool("config_tool", "", None, battery)

    run(main())


# ---- floods, limits, who may connect ---------------------------------------------------------------------


def test_a_flood_is_rate_limited_then_disconnected_and_others_are_served(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir, requests_per_s=20, request_burst=10, flood_disconnect=40) as s:
            flood, calm = await LineClient.connect(s.path), await LineClient.connect(s.path)
            await flood.send(b"".join(b'{"id": %d, "cmd": "status"}\n' % i for i in range(30)))
            replies = [await flood.line() for _ in range(30)]
            assert [r["ok"] for r in replies[:10]] == [True] * 10
            limited = [r for r in replies if not r["ok"]]
            assert len(limited) >= 15 and {r["error"]["code"] for r in limited} == {"rate_limited"}
            assert limited[0]["id"] == replies.index(limited[0])  # the refusal carries the request's id
            assert "at most 20 per second" in limited[0]["error"]["message"]
            assert (await calm.ask({"id": 1, "cmd": "status"}))["ok"]

            await flood.send(b'{"cmd": "status"}\n' * 200)
            lines = []
            while not (lines and lines[-1]["error"]["code"] == "flood"):
                lines.append(await flood.line())
            assert lines[-1]["id"] is None and "closing this connection" in lines[-1]["error"]["message"]
            assert await flood.eof()
            assert (await calm.ask({"id": 2, "cmd": "status"}))["result"]["control"]["clients"] == 1

    run(main())


def test_max_clients(sockdir: str, caplog: pytest.LogCaptureFixture) -> None:
    """The test runs as root, who finds RESERVED_SLOTS more than max_clients (a full socket never locks root out)."""

    async def main() -> None:
        async with serving(sockdir, max_clients=2) as s:
            clients = [await LineClient.connect(s.path) for _ in range(2 + RESERVED_SLOTS)]
            assert all([(await c.ask({"cmd": "status"}))["ok"] for c in clients])
            extra = await LineClient.connect(s.path)
            refusal = await extra.line()
            assert refusal["error"]["code"] == "too_many_clients" and "max_clients" in refusal["error"]["message"]
            assert await extra.eof()
            await clients[0].close()
            await asyncio.sleep(0.05)
            again = await LineClient.connect(s.path)
            assert (await again.ask({"cmd": "status"}))["ok"]

    run(main())


def test_a_silent_connection_is_closed_and_a_talking_one_is_not(sockdir: str) -> None:
    """Regression: 16 connections that never said anything held every slot, root's included."""

    async def main() -> None:
        async with serving(sockdir, first_request_s=0.5) as s:
            silent, talking = await LineClient.connect(s.path), await LineClient.connect(s.path)
            assert (await talking.ask({"id": 1, "cmd": "status"}))["ok"]
            goodbye = await silent.line()
            assert (
                goodbye["id"] is None and goodbye["error"]["code"] == "idle" and "0.5 s" in goodbye["error"]["message"]
            )
            assert await silent.eof()
            await asyncio.sleep(0.6)
            assert (await talking.ask({"id": 2, "cmd": "status"}))["ok"]  # it spoke once: it may now be quiet

    run(main())


def test_one_user_cannot_take_every_slot(sockdir: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("connecting as another user needs root")
    holder = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"cmd": "status"}\n')
s.settimeout(2)
data = b""
while b"\n" not in data:
    data += s.recv(65536)
print(data.splitlines()[0].decode(), flush=True)
time.sleep(5)
"""

    async def main() -> list[dict[str, Any]]:
        async with serving(sockdir, mode=0o666, max_clients=16, max_clients_per_uid=2) as s:
            processes = []
            for _ in range(3):  # the system's python3: the test's own may live where nobody cannot go
                command = ["python3", "-c", holder, s.path]
                processes.append(
                    await asyncio.create_subprocess_exec(
                        *command, user=65534, group=65534, extra_groups=[], stdout=asyncio.subprocess.PIPE
                    )
                )
                await asyncio.sleep(0.2)
            first_lines = [json.loads(await p.stdout.readline()) for p in processes if p.stdout is not None]
            root = await LineClient.connect(s.path)
            assert (await root.ask({"cmd": "status"}))["ok"]  # root is not counted with nobody
            for process in processes:
                process.kill()
                await process.wait()
            return first_lines

    first_lines = run(main())
    assert [line.get("ok") for line in first_lines[:2]] == [True, True]
    assert (
        first_lines[2]["error"]["code"] == "too_many_clients"
        and "max_clients_per_uid" in first_lines[2]["error"]["message"]
    )


def test_peer_credentials_are_logged_and_the_allow_list_refuses_others(
    sockdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.skip("connecting as another user needs root")
    caplog.set_level(logging.INFO, logger="edgevoice.control")
    script = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        's.sendall(b\'{"id": 1, "cmd": "status"}\\n\'); f = s.makefile(\'rb\'); '
        "sys.stdout.write(f.readline().decode()); s.shutdown(socket.SHUT_WR); sys.stdout.write(repr(f.read()))"
    )

    async def as_user(path: str, uid: int) -> str:
        process = await asyncio.create_subprocess_exec(
            "python3", "-c", script, path, user=uid, group=uid, extra_groups=[], stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        return out.decode()

    async def main() -> None:
        async with serving(sockdir, mode=0o666, allowed_uids=(1234,)) as s:
            refused = (await as_user(s.path, 65534)).splitlines()
            assert json.loads(refused[0]) == {
                "id": None,
                "ok": False,
                "error": {"code": "forbidden", "message": "uid 65534 is not in [control] allowed_uids of this device"},
            }
            assert refused[1] == "b''"  # and nothing else
            root = await LineClient.connect(s.path)  # root is always allowed
            assert (await root.ask({"cmd": "status"}))["ok"]
        async with serving(sockdir, mode=0o666) as s:
            allowed = (await as_user(s.path, 65534)).splitlines()
            assert json.loads(allowed[0])["ok"]

    run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("control: refused pid ") and "uid 65534, gid 65534" in m for m in messages)
    assert any(f"connected: pid {os.getpid()} (" in m and "uid 0, gid 0" in m for m in messages)


def test_shutting_down_tells_clients_and_answers_pending_calls(sockdir: str) -> None:
    async def main() -> None:
        s_ctx = serving(sockdir)
        s = await s_ctx.__aenter__()
        robot = await LineClient.connect(s.path)
        await robot.ask({"id": 1, "cmd": "tools.register", "tools": [{"name": "arm", "timeout_s": 30}]})
        call = asyncio.create_task(s.device.call_tool("arm", "c1", {}))
        await robot.line()
        await s_ctx.__aexit__(None, None, None)
        assert (await robot.line())["error"]["code"] == "shutting_down"
        assert await robot.eof()
        assert "disconnected" in await asyncio.wait_for(call, 2)
        assert not os.path.exists(s.path) and s.device.listeners == []

    run(main())


def test_a_client_that_stops_sending_still_gets_every_answer_at_its_own_pace(sockdir: str) -> None:
    async def main() -> None:
        async with serving(sockdir, requests_per_s=10000, request_burst=10000) as s:
            c = await LineClient.connect(s.path)
            await c.send(b"".join(b'{"id": %d, "cmd": "status"}\n' % i for i in range(3000)))
            c.writer.write_eof()  # nothing more to ask
            await asyncio.sleep(0.8)  # reads nothing for longer than the server's closing grace
            ids = [(await c.line())["id"] for _ in range(3000)]
            assert ids == list(range(3000))
            assert await c.eof()

    run(main())
