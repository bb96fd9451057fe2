"""What a controller leaves behind when it goes, and what a tool the server refuses costs: the real daemon
(virtual card, mock GPIO, the emulator) driven through the real Unix socket (issue 15)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from conftest import silence
from device import Device

from edgevoice.control.client import ControlClient
from edgevoice.devkit.sound_card import VirtualSoundCard


def run(device_args: dict[str, Any], scenario: Callable[[Device], Awaitable[Any]]) -> tuple[Device, Any]:
    async def main() -> tuple[Device, Any]:
        async with Device(**device_args) as device:
            await device.wait_capture(0.1)
            result = await scenario(device)
        return device, result

    return asyncio.run(main())


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

    device, instructions = run({"card": sound_card, "mic": silence(60)}, scenario)
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

    _, instructions = run({"card": sound_card, "mic": silence(60)}, scenario)
    assert [text.rsplit(": ", 1)[-1] for text in instructions] == ["Announcement 0."], instructions
