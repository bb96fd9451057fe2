"""Soak: the whole device through a minute of turns with a fault every few seconds.

Bounded (about 40 s). Checks: the daemon is still up; no asyncio task and no file descriptor leaked; every
turn either completed (its answer played) or was reported (an error event); after every new session the
conversation's context was replayed whole; every client event still validates against the official types.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import numpy as np
from conftest import silence, speak
from device import Device

from edgevoice.config import Config, ConversationSettings
from edgevoice.devkit.emulator import EmulatorSettings
from edgevoice.devkit.sound_card import VirtualSoundCard
from edgevoice.realtime.settings import RealtimeSettings, ReconnectSettings

RATE = 48000
TURN_GAP_S = 2.6  # silence after each phrase: the answer plays in it
TURNS = 9
FAULT_EVERY_S = 3.7


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def inject_faults(device: Device, log: list[str]) -> None:
    """A fixed cycle of the faults a field device meets, one every FAULT_EVERY_S."""
    emulator = device.emulator
    faults: list[tuple[str, Any]] = [
        ("drop", emulator.drop_connections),
        ("garbage", lambda: emulator.inject('{"type": "response.output_audio.delta", "delta": "%%%"}')),
        ("close 1011", lambda: emulator.close_connections(1011, "internal error")),
        ("session expired", lambda: emulator.expire_sessions(via="error")),
        ("rate-limited answer", lambda: emulator.fail_next_response(message="Please try again in 0.5s.")),
        ("stall", None),
        ("handshake 500 + drop", None),
    ]
    index = 0
    while True:
        await asyncio.sleep(FAULT_EVERY_S)
        name, action = faults[index % len(faults)]
        index += 1
        log.append(name)
        if name == "stall":
            emulator.stall()
            await asyncio.sleep(1.2)
            emulator.stall(False)
        elif name == "handshake 500 + drop":
            emulator.fail_handshakes(500)
            emulator.drop_connections()
        else:
            result = action()
            if asyncio.iscoroutine(result):
                await result


def test_soak_faults_every_few_seconds(sound_card: VirtualSoundCard) -> None:
    phrase = speak("What is the weather like?")
    speech_s = len(phrase) / RATE
    turn = np.concatenate((phrase, silence(TURN_GAP_S)))
    mic = np.concatenate((silence(0.5), *([turn] * TURNS), silence(30)))
    reconnect = ReconnectSettings(
        backoff_base_s=0.05, backoff_cap_s=0.3, healthy_after_s=2.0, ping_interval_s=0.5, ping_timeout_s=0.5,
        rollover_after_s=9.0,
    )  # fmt: skip
    config = Config(
        realtime=RealtimeSettings(reconnect=reconnect),
        conversation=ConversationSettings(outage_buffer_s=4.0, idle_timeout_s=300.0),
    )
    emulator = EmulatorSettings(realtime_factor=2.0, response_delay_s=0.05, user_transcript="what is the weather")
    faults: list[str] = []
    replays: list[list[tuple[str, str]]] = []
    turns: list[int] = []  # index into device.events where each turn's press happened

    async def scenario() -> tuple[Device, int, int, bool]:
        tasks_before = len(asyncio.all_tasks())
        fds_before = open_fds()
        async with Device(sound_card, mic=mic, emulator=emulator, config=config) as device:
            assert device.daemon is not None and device.daemon.manager is not None
            manager = device.daemon.manager

            def on_session(event: dict[str, Any]) -> None:
                if event["event"] == "session" and event["status"] in ("open", "rolled_over") and event.get("replayed"):
                    replays.append([(r, t) for r, t in manager.history.texts()])

            device.daemon.subscribe(on_session)
            chaos = asyncio.create_task(inject_faults(device, faults))
            try:
                for n in range(TURNS):
                    start = 0.5 + n * (speech_s + TURN_GAP_S)
                    await device.wait_capture(start - 0.15)
                    turns.append(len(device.events))
                    device.press()
                    await device.wait_capture(start + speech_s + 0.15)
                    device.release()
                await device.wait_capture(0.5 + TURNS * (speech_s + TURN_GAP_S) + 1.0)
            finally:
                chaos.cancel()
            alive = device._task is not None and not device._task.done()
        await asyncio.sleep(0.2)
        return device, len(asyncio.all_tasks()) - tasks_before, open_fds() - fds_before, alive

    device, task_leak, fd_leak, alive = asyncio.run(scenario())
    assert alive, "the daemon stopped during the soak"
    assert task_leak == 0 and fd_leak <= 0, (task_leak, fd_leak)
    assert len(faults) >= 8, faults
    # Every turn: its answer played, or something was reported.
    turns.append(len(device.events))
    outcomes = []
    for begin, end in itertools.pairwise(turns):
        window = device.events[begin:end]
        played = any(e["event"] == "state" and e["state"] == "speaking" for e in window)
        reported = [e.get("code") for e in window if e["event"] in ("error", "notice")]
        outcomes.append("played" if played else reported)
        assert played or reported, f"turn {len(outcomes)} neither completed nor reported: {window}"
    assert outcomes.count("played") >= TURNS // 2, outcomes
    # Every session after the first got the whole conversation so far.
    assert len(replays) >= 3, f"too few reconnects to check replay: {faults}"
    sessions = _split_by_session(device.emulator.received)
    replayed_items = [
        [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in s if e["type"] == "conversation.item.create"
         and e["item"]["type"] == "message"]
        for s in sessions[1:]
    ]  # fmt: skip
    for expected in replays:
        assert any(got[: len(expected)] == expected for got in replayed_items), (expected, replayed_items)


def _split_by_session(received: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Client events grouped by session (each session starts with our session.update)."""
    sessions: list[list[dict[str, Any]]] = []
    for event in received:
        if event["type"] == "session.update" and "audio" in event["session"]:
            sessions.append([])
        if sessions:
            sessions[-1].append(event)
    return sessions
