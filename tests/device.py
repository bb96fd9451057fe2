"""A whole edgevoice device under test: the real daemon, the virtual sound card, mock GPIO, the emulator.

    async with Device(card, mic=script) as device:
        await device.wait_capture(0.5)
        device.press(); ...; device.release()
        await device.wait_state("idle", after="speaking")

Leaving the `async with` block cleanly runs `check_conformance()`: every client event edgevoice sent
validates against openai's GA types, and so does every event the emulator sent. A test in which edgevoice
must send nothing says why (`sends_nothing="..."`), and the check then asserts exactly that. A test whose
body failed is not checked: its own error is the one to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from conformance import validate_client_event, validate_server_event
from conftest import LogCapture
from gpiozero.pins.mock import MockFactory

from edgevoice.audio.settings import AudioSettings
from edgevoice.config import Config, ConversationSettings
from edgevoice.control.settings import ControlSettings
from edgevoice.daemon import Daemon
from edgevoice.devkit.emulator import EmulatorSettings, RealtimeEmulator
from edgevoice.devkit.sound_card import MIC, SPEAKER, VirtualSoundCard
from edgevoice.hw.settings import HardwareSettings
from edgevoice.realtime.credentials import StaticSecret
from edgevoice.realtime.settings import TurnDetectionSettings
from edgevoice.system.logs import quiet_noisy_loggers


def state_reached(states: list[str], state: str, after: str | None = None) -> bool:
    """`state` is among `states` (with `after`: since the last time `after` was entered)."""
    if after is not None:
        if after not in states:
            return False
        states = states[len(states) - 1 - states[::-1].index(after) :]
    return state in states


class Device:
    """The device under test; use it as an async context manager, which checks wire conformance on exit."""

    def __init__(
        self,
        card: VirtualSoundCard,
        *,
        mic: np.ndarray,
        vad: bool = False,
        emulator: EmulatorSettings | None = None,
        config: Config | None = None,
        api_key: str | None = None,
        url: str | None = None,
        sends_nothing: str = "",
    ) -> None:
        self.card = card
        self.mic = mic
        self.vad = vad
        self.emulator = RealtimeEmulator(emulator or EmulatorSettings(realtime_factor=4.0, response_delay_s=0.1))
        self._config = config
        self._api_key = api_key
        self._url = url
        self.sends_nothing = sends_nothing
        """Why edgevoice must send the emulator nothing in this test ("" = it must send something)."""
        self.events: list[dict[str, Any]] = []
        self.factory = MockFactory()
        self.log = LogCapture()
        self.daemon: Daemon | None = None
        self._task: asyncio.Task[None] | None = None
        self.t0 = time.monotonic()
        self.socket_path = Path(tempfile.mkdtemp(prefix="edgevoice-ctl-")) / "control.sock"

    def config(self) -> Config:
        base = self._config or Config(conversation=ConversationSettings(follow_up_s=1.0))
        rt = dataclasses.replace(
            base.realtime,
            url=self._url or self.emulator.url,
            turn_detection=TurnDetectionSettings(type="server_vad" if self.vad else "none"),
        )
        audio = base.audio
        if audio == AudioSettings():
            audio = AudioSettings(input_device=MIC, output_device=SPEAKER, input_rate=48000, output_rate=48000)
        control = base.control
        if control == ControlSettings():  # no /run/edgevoice here: a private socket next to the test's files
            control = ControlSettings(socket=str(self.socket_path), group="")
        return base.replace(realtime=rt, audio=audio, hardware=HardwareSettings(pin_factory="mock"), control=control)

    async def __aenter__(self) -> Device:
        logging.getLogger().addHandler(self.log)
        logging.getLogger().setLevel(logging.DEBUG)
        quiet_noisy_loggers()  # as in production
        self.card.write_mic(self.mic)
        await self.emulator.start()
        secrets = StaticSecret(self._api_key) if self._api_key else None
        self.daemon = Daemon(self.config(), secrets=secrets, pin_factory=self.factory)
        self.daemon.subscribe(self._record)
        ready = asyncio.Event()
        self._task = asyncio.create_task(self.daemon.run(on_ready=ready.set))
        await asyncio.wait_for(ready.wait(), 10)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if self.daemon is not None:
                self.daemon.stop()
            if self._task is not None:
                await asyncio.wait_for(self._task, 10)
        finally:
            await self.emulator.stop()
            logging.getLogger().removeHandler(self.log)
            shutil.rmtree(self.socket_path.parent, ignore_errors=True)
        if exc_type is None:
            self.check_conformance()  # after the stop: every event of the session's close is recorded

    def _record(self, event: dict[str, Any]) -> None:
        self.events.append({**event, "t": time.monotonic() - self.t0})

    # ---- driving ------------------------------------------------------------------------------------

    def press(self) -> None:
        self.factory.pin(17).drive_low()

    def release(self) -> None:
        self.factory.pin(17).drive_high()

    async def until(self, condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError("the daemon stopped")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}; states: {self.states}")
            await asyncio.sleep(0.01)

    async def wait_capture(self, seconds: float) -> None:
        """Wait until the microphone has delivered `seconds` of its script."""
        assert self.daemon is not None
        daemon = self.daemon
        await self.until(lambda: daemon.capture_seconds >= seconds, seconds + 15, f"{seconds} s of capture")

    async def wait_state(self, state: str, *, after: str | None = None, timeout: float = 15.0) -> None:
        def reached() -> bool:
            return state_reached(self.states, state, after)

        await self.until(reached, timeout, f"state {state!r}" + (f" after {after!r}" if after else ""))

    # ---- what happened ------------------------------------------------------------------------------

    @property
    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["event"] == "state"]

    @property
    def state(self) -> str:
        return self.states[-1] if self.states else ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """Client events of `kind` the emulator received."""
        return [e for e in self.emulator.received if e.get("type") == kind]

    def check_conformance(self) -> None:
        """Every event on the wire, both ways, is a valid GA event (run by `__aexit__`)."""
        if self.sends_nothing:
            assert not self.emulator.received, f"edgevoice sent events, though {self.sends_nothing}"
        else:
            assert self.emulator.received, "edgevoice sent nothing (if that is right, say why: sends_nothing=...)"
        for event in self.emulator.received:
            validate_client_event(event)
        for event in self.emulator.sent:
            validate_server_event(event)


def tone_segments(samples: np.ndarray, rate: int, threshold: int = 300) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches of sound in a recording (gaps under 60 ms bridged)."""
    loud = np.abs(samples.astype(np.int32)) > threshold
    idx = np.flatnonzero(loud)
    if idx.size == 0:
        return []
    gaps = np.flatnonzero(np.diff(idx) > int(0.06 * rate))
    starts = np.concatenate(([idx[0]], idx[gaps + 1]))
    ends = np.concatenate((idx[gaps], [idx[-1]]))
    return [(s / rate, e / rate) for s, e in zip(starts, ends, strict=True)]


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


async def stop_quietly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run_device(device_args: dict[str, Any], scenario: Callable[[Device], Awaitable[Any]]) -> tuple[Device, Any]:
    """Start a `Device(**device_args)`, let its microphone run a moment, run `scenario` on it; (device, result)."""

    async def main() -> tuple[Device, Any]:
        async with Device(**device_args) as device:
            await device.wait_capture(0.1)
            result = await scenario(device)
        return device, result

    return asyncio.run(main())
