"""The control socket on the whole device: a controller drives the real daemon (virtual card, mock GPIO,
the emulator) through the real Unix socket."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from conftest import silence, speak
from device import Device, run_device

from edgevoice.audio.xruns import XRuns
from edgevoice.control.api import ControlError
from edgevoice.control.client import ControlClient
from edgevoice.devkit.emulator import FunctionCallReply, SpokenReply, Tone
from edgevoice.devkit.sound_card import VirtualSoundCard

RATE = 48000
LONG = SpokenReply("A long answer that goes on for a while.", (Tone(500.0, 1.5), Tone(700.0, 1.5)))


class Controller:
    """A connected client that also records every event it was sent."""

    def __init__(self, device: Device) -> None:
        self.client = ControlClient(str(device.socket_path))
        self.events: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Controller:
        await self.client.connect()

        async def collect() -> None:
            async for event in self.client.events():
                self.events.append(event)

        self._task = asyncio.create_task(collect())
        await asyncio.sleep(0.05)  # subscribed: the first event is the state snapshot
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.close()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    def states(self) -> list[str]:
        return [e["state"] for e in self.of("state")]


def test_a_controller_holds_a_turn_and_follows_it(sound_card: VirtualSoundCard) -> None:
    speech = speak("What time is it?")
    mic = np.concatenate((silence(0.3), speech, silence(20)))

    async def scenario(device: Device) -> Controller:
        async with Controller(device) as robot:
            hello = await robot.client.request("hello")
            assert hello["state"] == "idle" and "listen" in hello["commands"]
            await device.wait_capture(0.25)
            await robot.client.request("listen")
            await device.wait_capture(0.3 + len(speech) / RATE + 0.2)
            await robot.client.request("stop")
            await device.wait_state("idle", after="speaking")
            await asyncio.sleep(0.3)
            status = await robot.client.request("status")
            assert status["state"] == "idle" and status["session"]["up"] and status["conversation"]["active"]
            audio = status["audio"]  # the sound devices' losses (part of the status since they opened)
            assert audio["open"] is True and set(audio) == {"open", *XRuns().as_dict()}
            assert audio["capture_overflows"] == audio["playback_underflows"] == 0
            return robot

    device, robot = run_device({"card": sound_card, "mic": mic}, scenario)
    assert robot.states()[0] == "idle" and robot.of("state")[0].get("snapshot")
    assert robot.states()[1:] == ["connecting", "listening", "thinking", "speaking", "idle"]
    finals = [(e["role"], e["text"]) for e in robot.of("transcript") if e["final"]]
    assert ("assistant", "Hello from the edgevoice emulator.") in finals and any(r == "user" for r, _ in finals)
    levels = [e["level"] for e in robot.of("level")]
    assert len(levels) >= 10 and max(levels) > 0.5 and levels[-1] == 0.0  # lip-sync, ~20 Hz, then silence
    assert robot.of("usage") and robot.of("usage")[0]["usd"] > 0
    assert [e["type"] for e in device.emulator.received][-2:] == ["input_audio_buffer.commit", "response.create"]


def test_say_speak_image_cancel_end_mute_and_volume(sound_card: VirtualSoundCard) -> None:
    png = b"\x89PNG\r\n\x1a\n" + zlib.compress(b"not really a picture, but the type is what matters")

    async def answered(device: Device, count: int) -> None:
        await device.until(lambda: device.states.count("speaking") >= count and device.state == "idle", 15)

    async def scenario(device: Device) -> Controller:
        async with Controller(device) as robot:
            request = robot.client.request
            await request("say", text="Tell me a joke.")
            await answered(device, 1)
            await request("speak", text="Battery low.")
            await answered(device, 2)
            await request("image", data=base64.b64encode(png).decode(), prompt="What is this?")
            await answered(device, 3)
            with pytest.raises(ControlError) as refused:
                await request("cancel")
            assert refused.value.code == "invalid_state"
            device.emulator.queue_reply(LONG)
            await request("say", text="Tell me a long story.")
            await device.wait_state("speaking", after="thinking")
            await asyncio.sleep(0.5)
            await request("cancel")
            assert (await request("mute"))["muted"] is True
            with pytest.raises(ControlError, match="muted"):
                await request("listen")
            assert (await request("unmute"))["muted"] is False
            assert (await request("volume", level=0.25))["volume"] == 0.25
            assert (await request("status"))["volume"] == 0.25
            await request("end")
            await asyncio.sleep(0.3)
            return robot

    device, robot = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    items = [e["item"] for e in device.sent("conversation.item.create")]
    assert items[0]["content"] == [{"type": "input_text", "text": "Tell me a joke."}]
    speak_ask = device.sent("response.create")[1]
    assert "Battery low." in speak_ask["response"]["instructions"]
    image = next(i for i in items if i["content"][0]["type"] == "input_image")
    assert image["content"][0]["image_url"].startswith("data:image/png;base64,")
    assert image["content"][1] == {"type": "input_text", "text": "What is this?"}
    assert device.sent("conversation.item.truncate") and robot.of("interrupted")
    assert "muted" in robot.states() and robot.of("conversation_ended")
    assert robot.of("volume")[-1]["level"] == 0.25


def test_a_controller_serves_a_tool_the_model_calls(sound_card: VirtualSoundCard) -> None:
    calls: list[dict[str, Any]] = []

    async def battery(arguments: dict[str, Any]) -> dict[str, Any]:
        calls.append(arguments)
        return {"percent": 87}

    async def scenario(device: Device) -> Controller:
        async with Controller(device) as robot:
            await robot.client.serve_tool(
                "battery_level", "The robot's battery charge.", {"type": "object", "properties": {}}, battery
            )
            device.emulator.queue_reply(FunctionCallReply("battery_level", '{"unit": "percent"}'))
            await robot.client.request("say", text="How is your battery?")
            await device.wait_state("idle", after="speaking")
            return robot

    device, robot = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    assert calls == [{"unit": "percent"}]
    assert device.sent("session.update")[0]["session"]["tools"][0]["name"] == "battery_level"
    kinds = [e["type"] for e in device.emulator.received]
    output_at = next(
        i for i, e in enumerate(device.emulator.received)
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    )  # fmt: skip
    assert json.loads(device.emulator.received[output_at]["item"]["output"]) == {"percent": 87}
    assert kinds[output_at + 1] == "response.create"  # the output, then one ask for the answer
    assert [e["name"] for e in device.of("tool_call")] == ["battery_level"]  # what other controllers see
    assert not robot.of("tool_call")  # its server got it once, through serve_tool


def test_a_controller_that_vanishes_mid_call_leaves_the_model_an_answer(sound_card: VirtualSoundCard) -> None:
    async def hang(arguments: dict[str, Any]) -> str:
        await asyncio.sleep(3600)
        return "never"

    async def scenario(device: Device) -> float:
        robot = ControlClient(str(device.socket_path))
        await robot.connect()
        await robot.serve_tool("move", "Move forward.", {"type": "object", "properties": {}}, hang, timeout_s=60)
        device.emulator.queue_reply(FunctionCallReply("move", "{}"))
        async with Controller(device) as other:
            await other.client.request("say", text="Come here.")
            await device.until(lambda: any(e["event"] == "tool_call" for e in device.events), 10, "the call")
            gone = time.monotonic()
            await robot.close()  # the robot's controller crashes mid-call
            await device.emulator.wait_for("response.create", count=2, timeout=5)
            answered_in = time.monotonic() - gone
            await device.wait_state("idle", after="speaking")
            await device.emulator.wait_for("session.update", count=2)  # its tool is gone from the session
        return answered_in

    device, answered_in = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    assert answered_in < 2.0  # at once, not after the 60 s timeout
    (output,) = [
        e["item"] for e in device.sent("conversation.item.create") if e["item"]["type"] == "function_call_output"
    ]
    assert "error" in json.loads(output["output"])
    assert device.sent("session.update")[-1]["session"]["tools"] == []


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_a_shell_script_drives_it_with_socat(sound_card: VirtualSoundCard) -> None:
    async def scenario(device: Device) -> list[dict[str, Any]]:
        lines = '{"id": 1, "cmd": "status"}\nnot json\n{"id": 2, "cmd": "volume", "level": 0.5}\n'
        out = await asyncio.to_thread(
            subprocess.run,
            ["socat", "-t", "1", "-", f"UNIX-CONNECT:{device.socket_path}"],
            input=lines, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return [json.loads(line) for line in out.stdout.splitlines()]

    quiet = "status and volume need no session"
    _, replies = run_device({"card": sound_card, "mic": silence(30), "sends_nothing": quiet}, scenario)
    assert replies[0]["id"] == 1 and replies[0]["ok"] and replies[0]["result"]["state"] == "idle"
    assert replies[1]["ok"] is False and replies[1]["error"]["code"] == "bad_json"
    assert replies[2] == {"id": 2, "ok": True, "result": {"volume": 0.5}}


def test_garbage_on_the_socket_never_stops_the_device_or_other_controllers(sound_card: VirtualSoundCard) -> None:
    rng = random.Random(2026)
    pieces = [b"{", b"}", b'"cmd"', b":", b'"say"', b'"text"', b"\xff\xfe", b"\n", b"[]", b"null", b"1e999",
              b'{"cmd": "listen", "id": {}}', b'{"id": 1, "cmd": "tools.register", "tools": [{"name": "x y"}]}',
              b'{"id": 2, "cmd": "image", "data": "####"}', b"\x00" * 50, b"a" * 70000]  # fmt: skip

    async def garbage() -> AsyncIterator[bytes]:
        for _ in range(400):
            yield b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))

    async def scenario(device: Device) -> tuple[float, float]:
        assert device.daemon is not None
        captured_before = device.daemon.capture_seconds
        async with Controller(device) as witness:
            _, writer = await asyncio.open_unix_connection(str(device.socket_path))
            async for chunk in garbage():
                writer.write(chunk + b"\n")
                await writer.drain()
            for _ in range(5):
                status = await witness.client.request("status")
                assert status["state"] == "idle"
            writer.close()
        await asyncio.sleep(0.3)
        return captured_before, device.daemon.capture_seconds

    quiet = "no garbage makes a command that reaches the model"
    device, (before, after) = run_device({"card": sound_card, "mic": silence(30), "sends_nothing": quiet}, scenario)
    assert after > before + 0.2  # the audio path kept running
    assert device.daemon is not None and device.daemon.sound is not None
    assert device.daemon.sound.capture.dropped == 0  # and never fell behind


def test_requests_while_the_link_is_down_are_bounded_and_refused_with_busy(
    sound_card: VirtualSoundCard, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Regression: while the link was down every picture waited for it, 5.6 MB each (234 requests: 1.26 GB of RSS),
    and every `speak` queued a billed answer. Now the waiting room is bounded and the rest is refused as busy."""
    picture = tmp_path / "camera.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(3 * 1024 * 1024))  # 4 MB as a data URL

    async def outcome(request: Callable[..., Awaitable[dict[str, Any]]], cmd: str, **args: Any) -> str:
        try:
            await request(cmd, **args)
        except ControlError as exc:
            assert exc.code != "busy" or "try again" in exc.message or "wait" in exc.message, exc.message
            return exc.code
        return "ok"

    async def scenario(device: Device) -> tuple[list[str], list[str], dict[str, Any]]:
        async with Controller(device) as robot:
            request = robot.client.request
            pictures = [await outcome(request, "image", path=str(picture)) for _ in range(6)]
            speeches = [await outcome(request, "speak", text=f"Announcement {i}.") for i in range(12)]
            return pictures, speeches, await request("status")

    unreachable = "ws://127.0.0.1:9/v1/realtime"  # nothing listens: the link stays down
    quiet = "the link never comes up"
    _, (pictures, speeches, status) = run_device(
        {"card": sound_card, "mic": silence(30), "url": unreachable, "sends_nothing": quiet}, scenario
    )
    assert pictures[:2] == ["ok", "ok"] and set(pictures[2:]) == {"busy"}, pictures
    assert speeches[:6] == ["ok"] * 6 and "busy" in speeches and set(speeches) <= {"ok", "busy"}, speeches
    assert status["state"] in ("offline", "connecting", "thinking")  # and it still answers


def test_a_tool_schema_the_server_would_refuse_is_refused_at_registration(sound_card: VirtualSoundCard) -> None:
    """Regression: such a schema became a fatal session error that kept the device in `error` for 300 s."""
    bad = {"name": "arm", "parameters": {"type": "object", "properties": {"joint": {"type": "strin"}}}}
    good = {"name": "arm", "parameters": {"type": "object", "properties": {"joint": {"type": "string"}}}}

    async def scenario(device: Device) -> tuple[ControlError, dict[str, Any]]:
        async with Controller(device) as robot:
            with pytest.raises(ControlError) as refused:
                await robot.client.request("tools.register", tools=[bad])
            await robot.client.request("tools.register", tools=[good])
            await robot.client.request("say", text="Move the arm.")
            await device.wait_state("idle", after="speaking")
            return refused.value, await robot.client.request("status")

    device, (refused, status) = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    assert refused.code == "bad_request" and "properties.joint.type = 'strin'" in refused.message
    assert status["state"] == "idle" and status["tools"] == ["arm"]
    assert device.sent("session.update")[0]["session"]["tools"][0]["parameters"] == good["parameters"]
