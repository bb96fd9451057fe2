"""The session manager against the emulator, without a sound card: faults in, behaviour out.

async with Managed(EmulatorSettings(...)) as m:
    m.talk(0.5)                 # half a second of a tone into the uplink, then commit + response.create
    await m.until(lambda: m.done(1))
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from conformance import validate_client_event, validate_server_event

from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
from edgevoice.realtime import server_events as se
from edgevoice.realtime.carryover import CarryOver
from edgevoice.realtime.credentials import SecretSource, StaticSecret
from edgevoice.realtime.manager import LinkStatus, ManagerHooks, SessionManager
from edgevoice.realtime.settings import (
    RealtimeSettings,
    ReconnectSettings,
    TranscriptionSettings,
    TurnDetectionSettings,
)
from edgevoice.realtime.tools import ToolRegistry
from edgevoice.realtime.usage import TurnAudio, UsageMeter

KEY = "sk-harness-" + "Yx9" * 10
FAST = ReconnectSettings(
    backoff_base_s=0.05,
    backoff_cap_s=0.2,
    healthy_after_s=30.0,
    fatal_retry_s=0.6,
    ping_interval_s=0.3,
    ping_timeout_s=0.3,
)


def tone_frames(seconds: float, freq: float = 300.0) -> list[np.ndarray]:
    t = np.arange(int(24000 * seconds)) / 24000
    x = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [x[i : i + 480] for i in range(0, len(x) - 479, 480)]


class Managed:
    def __init__(
        self,
        emulator: EmulatorSettings | None = None,
        *,
        reconnect: ReconnectSettings = FAST,
        tools: ToolRegistry | None = None,
        usage: UsageMeter | None = None,
        secrets: SecretSource | None = None,
        between_turns: Callable[[], bool] = lambda: True,
        outage_buffer_s: float = 10.0,
        vad: bool = False,
    ) -> None:
        self.emulator = RealtimeEmulator(
            emulator or EmulatorSettings(api_key=KEY, realtime_factor=0, response_delay_s=0.0, user_transcript="hi")
        )
        self.reconnect = reconnect
        self.tools = tools or ToolRegistry()
        self.usage = usage
        self._secrets = secrets
        self._between_turns = between_turns
        self._outage_buffer_s = outage_buffer_s
        self._vad = vad
        self.events: list[se.ServerEvent] = []
        self.times: list[float] = []  # when each of `events` arrived (monotonic)
        self.links: list[LinkStatus] = []
        self.notices: list[dict[str, Any]] = []
        self.manager: SessionManager | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Managed:
        await self.emulator.start()
        settings = RealtimeSettings(
            url=self.emulator.url,
            model="gpt-realtime",
            turn_detection=TurnDetectionSettings(type="server_vad" if self._vad else "none"),
            transcription=TranscriptionSettings(model="gpt-4o-mini-transcribe"),
            reconnect=self.reconnect,
        )
        hooks = ManagerHooks(
            on_event=self._record,
            on_link=self.links.append,
            emit=self.notices.append,
            between_turns=self._between_turns,
        )
        self.manager = SessionManager(
            settings,
            self._secrets or StaticSecret(KEY),
            hooks,
            tools=self.tools,
            usage=self.usage,
            carry_over=CarryOver(self._outage_buffer_s),
        )
        self._task = asyncio.create_task(self.manager.run())
        self.manager.connect()
        return self

    def _record(self, event: se.ServerEvent) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())

    def time_of(self, predicate: Callable[[se.ServerEvent], bool], nth: int = 0) -> float:
        return [t for e, t in zip(self.events, self.times, strict=True) if predicate(e)][nth]

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        finally:
            await self.emulator.stop()

    # ---- driving --------------------------------------------------------------------------------------

    @property
    def m(self) -> SessionManager:
        assert self.manager is not None
        return self.manager

    def talk(self, seconds: float = 0.5, turn: TurnAudio | None = None) -> None:
        """A push-to-talk turn: audio, commit, ask for the answer (`turn`: what the conversation says of it)."""
        for frame in tone_frames(seconds):
            self.m.append_audio(frame)
        self.m.commit_input()
        self.m.create_response(turn=turn)

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}; links: {self.link_states}")
            await asyncio.sleep(0.01)

    async def up(self, count: int = 1) -> None:
        await self.until(lambda: self.m.connects >= count and self.m.is_up, what=f"{count} sessions up")

    # ---- what happened --------------------------------------------------------------------------------

    @property
    def link_states(self) -> list[str]:
        return [s.state for s in self.links]

    def done(self, status: str | None = None) -> list[se.ResponseDone]:
        return [e for e in self.events if isinstance(e, se.ResponseDone) and status in (None, e.status)]

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.emulator.received if e.get("type") == kind]

    def errors(self, code: str | None = None) -> list[dict[str, Any]]:
        found = [e for e in self.emulator.sent if e.get("type") == "error"]
        return [e for e in found if code in (None, e["error"].get("code"))]

    def check_conformance(self) -> None:
        for event in self.emulator.received:
            validate_client_event(event)
        for event in self.emulator.sent:
            validate_server_event(event)
        assert not self.errors("conversation_already_has_active_response"), "two responses were in flight"


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def with_reconnect(**changes: Any) -> ReconnectSettings:
    return dataclasses.replace(FAST, **changes)
