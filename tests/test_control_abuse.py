"""What a controller leaves behind when it goes, and what a tool the server refuses costs: the real daemon
(virtual card, mock GPIO, the emulator) driven through the real Unix socket (issue 15)."""

from __future__ import annotations

from typing import Any

from conftest import silence
from device import Device, run_device

from edgevoice.control.client import ControlClient
from edgevoice.devkit.sound_card import VirtualSoundCard


def asked(device: Device) -> list[str]:
    """The instructions of every response.create the server was sent, in order."""
    return [str((e.get("response") or {}).get("instructions", "")) for e in device.sent("response.create")]


def waiting(device: Device) -> int:
    """Answers asked for that have not started yet."""
    manager = device.daemon.manager if device.daemon is not None else None
    return manager.responses.answers_coming if manager is not None else -1


def test_a_controller_that_leaves_takes_its_waiting_answers_with_it(sound_card: VirtualSoundCard) -> None:
    """Regression: each `speak` queued a billed answer, spoken long after its client had gone (807 of them)."""

    async def scenario(device: Device) -> list[str]:
        device.emulator.set_delay(2.0)  # the first answer is still on its way when the flooder leaves
        flooder = ControlClient(str(device.socket_path))
        await flooder.connect()
        async with ControlClient(str(device.socket_path)) as other:
            for i in range(6):
                await flooder.request("speak", text=f"Flood {i}.")
            await other.request("speak", text="Other 0.")
            await device.emulator.wait_for("response.create")
            await flooder.close()
            await device.until(lambda: waiting(device) == 1, 5, "the flood dropped")  # Other 0 alone waits
            device.emulator.set_delay(0.1)
            await other.request("speak", text="Other 1.")  # the other client's requests still go
            await device.emulator.wait_for("response.create", count=3, timeout=10)
            await device.wait_state("idle", after="speaking", timeout=20)
            return asked(device)

    device, instructions = run_device({"card": sound_card, "mic": silence(60)}, scenario)
    spoken = [text.rsplit(": ", 1)[-1] for text in instructions]
    assert spoken == ["Flood 0.", "Other 0.", "Other 1."], spoken  # Flood 1-5 never reached the server
    assert sum(1 for e in device.events if e["event"] == "usage") == 3  # three answers billed, not eight


def test_a_controller_that_asks_and_leaves_while_the_link_is_down_is_answered_once(
    sound_card: VirtualSoundCard,
) -> None:
    """`edgevoice ctl speak` asks and leaves at once: its answer is not lost, but a flood is not kept either."""

    async def scenario(device: Device) -> list[str]:
        device.emulator.fail_handshakes(503, count=1)  # the first attempt fails: the requests wait for the link
        async with ControlClient(str(device.socket_path)) as flooder:
            for i in range(5):
                await flooder.request("speak", text=f"Announcement {i}.")
        await device.wait_state("idle", after="speaking", timeout=30)
        return asked(device)

    _, instructions = run_device({"card": sound_card, "mic": silence(60)}, scenario)
    assert [text.rsplit(": ", 1)[-1] for text in instructions] == ["Announcement 0."], instructions


class Robot:
    """A controller that serves a tool and keeps every event it is sent, subscribed or not."""

    def __init__(self, device: Device) -> None:
        self.client = ControlClient(str(device.socket_path))
        self.events: list[dict[str, Any]] = []

    async def serve(self, name: str) -> None:
        await self.client.connect()
        original = self.client._on_event

        def keep(event: dict[str, Any]) -> None:
            self.events.append(event)
            original(event)

        self.client._on_event = keep  # type: ignore[method-assign]
        schema = {"type": "object", "properties": {"cm": {"type": "integer"}}}
        await self.client.serve_tool(name, f"The {name} tool.", schema, lambda args: {"done": True})


def test_a_tool_the_server_refuses_when_the_session_opens_is_dropped_and_its_owner_told(
    sound_card: VirtualSoundCard,
) -> None:
    """Regression: a schema the server refused became a fatal session error, the device in `error` for 300 s."""

    async def scenario(device: Device) -> tuple[Robot, Robot, dict[str, Any]]:
        device.emulator.refuse_tools("arm")
        arm, wheels = Robot(device), Robot(device)
        await arm.serve("arm")
        await wheels.serve("wheels")
        await wheels.client.request("say", text="Drive to the kitchen.")
        await device.wait_state("idle", after="speaking")
        status = await wheels.client.request("status")
        await arm.client.close()
        await wheels.client.close()
        return arm, wheels, status

    device, (arm, wheels, status) = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    (refused,) = [e for e in arm.events if e["event"] == "tool_refused"]
    assert refused["name"] == "arm" and "Invalid schema for function 'arm'" in refused["message"]
    assert not any(e["event"] == "tool_refused" for e in wheels.events)  # only the owner is told
    assert list(arm.client.refused_tools) == ["arm"] and not wheels.client.refused_tools  # what `ctl tool` waits on
    assert status["tools"] == ["wheels"] and status["state"] == "idle"
    assert "error" not in device.states
    updates = [e["session"].get("tools") for e in device.sent("session.update")]
    assert [t["name"] for t in updates[0]] == ["arm", "wheels"] and [t["name"] for t in updates[1]] == ["wheels"]
    assert len(device.sent("response.create")) == 1  # the `say` was answered in the session opened again


def test_a_tool_the_server_refuses_in_a_running_session_is_dropped_and_the_session_goes_on(
    sound_card: VirtualSoundCard,
) -> None:
    async def scenario(device: Device) -> tuple[Robot, int, dict[str, Any]]:
        device.emulator.refuse_tools("arm")
        arm = Robot(device)
        async with ControlClient(str(device.socket_path)) as panel:
            await panel.request("speak", text="Ready.")
            await device.wait_state("idle", after="speaking")
            await arm.serve("arm")  # while the session is up: its tools update is refused
            await device.until(lambda: any(e["event"] == "tool_refused" for e in arm.events), 5, "tool_refused")
            await panel.request("speak", text="Still here.")
            await device.wait_state("idle", after="speaking")
            status = await panel.request("status")
        await arm.client.close()
        assert device.daemon is not None and device.daemon.manager is not None
        return arm, device.daemon.manager.connects, status

    device, (arm, connects, status) = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    assert connects == 1  # the session was never failed
    assert [e["name"] for e in arm.events if e["event"] == "tool_refused"] == ["arm"]
    assert status["tools"] == [] and "error" not in device.states
    assert device.sent("session.update")[-1]["session"]["tools"] == []  # the update again, without the tool
    assert len(device.sent("response.create")) == 2


def test_the_first_say_after_an_outage_reaches_the_new_session_once(sound_card: VirtualSoundCard) -> None:
    """Regression: it was sent twice, by the history's replay and by the outbox (the server answered "item
    already exists")."""

    def said(device: Device, text: str) -> int:
        return sum(
            1
            for e in device.sent("conversation.item.create")
            if any(part.get("text") == text for part in e["item"].get("content", []))
        )

    async def scenario(device: Device) -> int:
        async with ControlClient(str(device.socket_path)) as robot:
            await robot.request("say", text="First question.")
            await device.wait_state("idle", after="speaking")
            device.emulator.drop_connections()  # the network fails between turns
            await device.until(lambda: any(e.get("code") == "link_down" for e in device.events), 10, "link_down")
            await robot.request("say", text="Second question.")
            await device.until(lambda: said(device, "Second question.") > 0, 10, "the replay")
            await device.wait_state("idle", after="speaking")
            return said(device, "Second question.")

    device, sent = run_device({"card": sound_card, "mic": silence(30)}, scenario)
    assert sent == 1
    assert said(device, "First question.") == 2  # once in each session: the replay carries the conversation
    assert device.daemon is not None and device.daemon.manager is not None and device.daemon.manager.connects == 2
    assert not [e for e in device.emulator.sent if e.get("type") == "error"]  # no "item already exists"
    assert len(device.sent("response.create")) == 2
