"""A real Mosquitto for a test (edgevoice/devkit/broker.py), and `Watcher`, a second client that reads what the
device publishes, retained topics included."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiomqtt
import pytest

from edgevoice.devkit.broker import Broker, make_ca, mosquitto_problem

__all__ = ["Broker", "Watcher", "make_ca", "needs_mosquitto", "read_retained"]

needs_mosquitto = pytest.mark.skipif(mosquitto_problem() is not None, reason=mosquitto_problem() or "")


class Watcher:
    """A client that records every message on `topics` (retained ones too), as (topic, payload text, retained)."""

    def __init__(
        self, port: int, topics: tuple[str, ...] = ("#",), *, username: str | None = None, password: str | None = None
    ) -> None:
        self.port, self.topics, self.username, self.password = port, topics, username, password
        self.messages: list[tuple[str, str, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"watcher-{id(self)}", username=self.username, password=self.password
        ) as client:
            self.client = client
            for topic in self.topics:
                await client.subscribe(topic, qos=1)
            self._ready.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                self.messages.append((str(message.topic), payload.decode("utf-8", "replace"), message.retain))

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, retain=retain)

    def last(self, topic: str) -> str | None:
        found = [payload for t, payload, _ in self.messages if t == topic]
        return found[-1] if found else None

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(payload) for t, payload, _ in self.messages if t == topic and payload]

    async def until(self, condition: Any, timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; seen: {self.messages[-10:]}")
            await asyncio.sleep(0.02)


async def read_retained(port: int, topic: str, settle_s: float = 0.5) -> dict[str, str]:
    """The retained messages under `topic` (a fresh subscription gets them at once; `settle_s` to receive)."""
    async with Watcher(port, (topic,)) as watcher:
        await asyncio.sleep(settle_s)
    return {t: p for t, p, retained in watcher.messages if retained}
