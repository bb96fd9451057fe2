"""The bridge to the operator's MQTT broker: availability, retained state, events, metrics, commands, discovery.

    bridge = FleetBridge(settings, topics, device, execute=..., state=..., password=...)
    unsubscribe = bus.subscribe(bridge.on_event)      # never blocks: it marks, queues and wakes the sender
    task = asyncio.create_task(bridge.run())           # connects, reconnects with jittered backoff, until cancelled

The voice path only ever calls `on_event` and `set_metrics`, which update memory and return: nothing waits for
the broker. The state and metrics are retained topics held as their latest value (a burst of changes is sent
once); events wait in a bounded queue whose oldest entry gives way (counted in `dropped`), so a dead broker
costs neither time nor growing memory. After each connect the bridge publishes `online` (its last will says
`offline`), the state, the metrics and the Home Assistant discovery, then subscribes to its commands.

Commands (`<base>/cmd/<name>`) run through `execute(name, args)`, which the daemon gives: the control package's
command table and validation. `CommandRefused` carries the control protocol's error codes back to the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiomqtt

from edgevoice.fleet.discovery import DeviceInfo, discovery_messages
from edgevoice.fleet.settings import MqttSettings, broker_address
from edgevoice.fleet.topics import (
    OFFLINE,
    ONLINE,
    BadPayload,
    CommandRefused,
    Topics,
    decode_command,
    encode,
    fleet_event,
    reply_error,
    reply_ok,
)

__all__ = ["CommandRefused", "Execute", "FleetBridge", "backoff_delay"]
log = logging.getLogger(__name__)
client_log = logging.getLogger("edgevoice.fleet.aiomqtt")  # every packet at debug: a journal of its own
client_log.setLevel(logging.INFO)

Execute = Callable[[str, dict[str, Any]], dict[str, Any]]
PUBLISH_TIMEOUT_S = 10.0  # a broker that does not acknowledge within this is treated as gone
BACKOFF_BASE_S = 1.0
COMMANDS_PER_S = 5.0  # a flood of commands gets `rate_limited` replies, not the device's attention
COMMAND_BURST = 20
STATE_EVENTS = ("state", "mute", "volume", "session")  # what changes the retained state


def backoff_delay(attempt: int, rng: random.Random, cap_s: float, base_s: float = BACKOFF_BASE_S) -> float:
    """Seconds before connection attempt `attempt` (0 = the first retry): "full jitter", uniform in
    [0.1 * window, window] with a window doubling up to `cap_s`, so a fleet that lost its broker at the same
    moment comes back spread over the window, not in one herd."""
    window = min(cap_s, base_s * 2 ** min(attempt, 30))
    return rng.uniform(0.1 * window, window)


def explain(exc: BaseException) -> str:
    """What a failed connection means, in words an operator can act on (never a secret)."""
    text = str(exc)
    if text.startswith("Disconnected during message iteration"):
        return "the broker closed the connection, or the network dropped it"
    if isinstance(exc, aiomqtt.MqttCodeError) and str(exc.rc).lower().startswith(("not authorized", "bad user")):
        return f"the broker refused the user name or password ({text}): check [mqtt] username and the password"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"the broker's TLS certificate is not trusted ({text}): check [mqtt] ca_file and the broker's name"
    return text or type(exc).__name__


class SafeClient(aiomqtt.Client):
    """aiomqtt's client, with its socket bookkeeping made safe for a broker that vanishes mid-write.

    aiomqtt (2.x) schedules `add_writer` for paho's socket with call_soon_threadsafe and never removes the writer
    when the socket closes: a socket closed in between leaves asyncio an `add_writer` on a dead descriptor
    (logged as "Exception in callback ... Bad file descriptor"), or, worse, on a reused one. Here the writer is
    added only if the socket is still paho's and open, and removed with the reader when paho closes it."""

    def _on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        def register() -> None:
            if client.socket() is sock and sock.fileno() != -1:
                self._loop.add_writer(sock.fileno(), write)

        def write() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # a broken pipe: the connection is gone
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        self._loop.call_soon_threadsafe(register)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        if sock.fileno() != -1:
            self._loop.remove_writer(sock.fileno())
        super()._on_socket_close(client, userdata, sock)


class _Bucket:
    """A token bucket: `take()` is False once commands come faster than the rate allows."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class FleetBridge:
    """One device's connection to the broker (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        device: DeviceInfo,
        *,
        execute: Execute,
        state: Callable[[], dict[str, Any]],
        metrics: Callable[[], dict[str, Any]] | None = None,
        password: str | None = None,
        client_id: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.topics, self.device = settings, topics, device
        self._execute, self._state, self._password = execute, state, password
        self._client_id = client_id or settings.client_id or f"edgevoice-{device.device_id}"
        self._rng = rng or random.Random()
        self.allowed = tuple(settings.commands)
        self._discovery = (
            discovery_messages(device, topics, self.allowed, settings.discovery_prefix) if settings.discovery else {}
        )
        self._metrics_source = metrics  # read when sent: a reconnect sends the figures of now
        self._metrics: dict[str, Any] | None = None
        self._dirty: set[str] = set()  # retained topics whose latest value is not yet on the broker
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._bucket = _Bucket(COMMANDS_PER_S, COMMAND_BURST)
        self.connected = False
        self.connections = 0
        self.dropped = 0  # events that gave way in the full queue
        self.sent_messages = 0
        self.sent_bytes = 0  # topic and payload of every message published
        self.last_error = ""

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    # ---- from the device (on the event loop; never blocks) -------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """A device event: the state changes the retained state; some are sent as events (topics.FLEET_EVENTS)."""
        if event.get("event") in STATE_EVENTS:
            self._mark(self.topics.state)
        forwarded = fleet_event(event, self.settings.transcripts)
        if forwarded is not None:
            self._queue(self.topics.event, encode(forwarded))

    def publish_metrics(self) -> None:
        """Send the metrics (read from `metrics` when they go out)."""
        self._mark(self.topics.metrics)

    def set_metrics(self, snapshot: dict[str, Any]) -> None:
        """Send this snapshot as the metrics (for a bridge without a `metrics` source)."""
        self._metrics = snapshot
        self._mark(self.topics.metrics)

    def _mark(self, topic: str) -> None:
        self._dirty.add(topic)
        self._wake.set()

    def _queue(self, topic: str, payload: bytes) -> None:
        if len(self._outbox) >= self.settings.queue:
            self._outbox.popleft()
            self.dropped += 1
        self._outbox.append((topic, payload))
        self._wake.set()

    # ---- the connection ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled; on cancellation say `offline` (a clean stop fires no last will)."""
        attempt = 0
        while True:
            try:
                client = await self._client()
                async with client:
                    attempt = 0
                    await self._serve(client)
            except asyncio.CancelledError:
                raise
            except (aiomqtt.MqttError, OSError, ValueError, ssl.SSLError) as exc:
                self._lost(explain(exc))
            except Exception:  # a bug here must not end the bridge for good: the next attempt may do better
                log.exception("mqtt: the bridge failed; it reconnects")
                self.connected = False
            delay = backoff_delay(attempt, self._rng, self.settings.reconnect_max_s)
            attempt += 1
            await asyncio.sleep(delay)

    def _lost(self, why: str) -> None:
        was_connected, self.connected = self.connected, False
        if why != self.last_error or was_connected:  # the same failure again is not news
            log.warning("mqtt: %s%s", "connection lost: " if was_connected else "cannot connect: ", why)
        self.last_error = why

    async def _client(self) -> SafeClient:
        address = broker_address(self.settings.url)
        tls = None
        if address.tls:
            tls = aiomqtt.TLSParameters(ca_certs=self.settings.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        return SafeClient(
            address.host,
            address.port or 1883,  # paho wants a port for a Unix socket too (and ignores it)
            transport=address.transport,
            identifier=self._client_id,
            username=self.settings.username or None,
            password=self._password,
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
            keepalive=self.settings.keepalive_s,
            tls_params=tls,
            timeout=PUBLISH_TIMEOUT_S,
            max_queued_incoming_messages=COMMAND_BURST * 2,
            logger=client_log,
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.connections += 1
        self.connected, self.last_error = True, ""
        log.info("mqtt: connected to %s as %s", self.settings.url, self._client_id)
        try:
            await self._publish(client, self.topics.availability, ONLINE.encode(), retain=True)
            self._dirty.update({self.topics.state, *self._discovery})
            if self._metrics is not None or self._metrics_source is not None:
                self._dirty.add(self.topics.metrics)
            await client.subscribe(self.topics.commands, qos=self.settings.qos)
            await client.subscribe(self.topics.ha_muted, qos=self.settings.qos)
            if self._discovery:
                await client.subscribe(self.topics.ha_status, qos=self.settings.qos)
            self._wake.set()
            # Either half failing (a publish not acknowledged, the connection gone) ends this connection.
            halves = {
                asyncio.create_task(self._send(client), name="mqtt-send"),
                asyncio.create_task(self._receive_all(client), name="mqtt-receive"),
            }
            try:
                done, _ = await asyncio.wait(halves, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in halves:
                    task.cancel()
                for task in halves:
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task
            for task in done:
                task.result()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # a clean stop: the will would not fire; say it ourselves
                await asyncio.wait_for(
                    client.publish(self.topics.availability, OFFLINE, qos=1, retain=True), timeout=1.0
                )
            raise

    async def _receive_all(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._receive(str(message.topic), message.payload)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publish what is waiting, the retained topics first (their latest value), then the events in order."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty or self._outbox:
                if self._dirty:
                    topic = self._dirty.pop()
                    await self._publish(client, topic, self._retained(topic), retain=True)
                else:
                    topic, payload = self._outbox.popleft()
                    await self._publish(client, topic, payload, retain=False)

    def _retained(self, topic: str) -> bytes:
        if topic == self.topics.state:
            return encode({**self._state(), "ts": round(time.time(), 1)})
        if topic == self.topics.metrics:
            return encode(self._metrics_source() if self._metrics_source is not None else self._metrics or {})
        return encode(self._discovery[topic])

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool) -> None:
        await client.publish(topic, payload, qos=self.settings.qos, retain=retain, timeout=PUBLISH_TIMEOUT_S)
        self.sent_messages += 1
        self.sent_bytes += len(topic) + len(payload)

    # ---- commands ------------------------------------------------------------------------------------

    def _receive(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
        if topic == self.topics.ha_status:
            if data.strip() == ONLINE.encode():  # Home Assistant (re)started: it forgot non-retained config
                self._dirty.update(self._discovery)
                self._wake.set()
            return
        if topic == self.topics.ha_muted:
            choice = data.strip().upper()
            name = {b"ON": "mute", b"OFF": "unmute"}.get(choice)
            if name is None:
                self._reply(reply_error(None, "mute", "bad_request", 'the mute switch takes "ON" or "OFF"'))
                return
            self._command(name, b"")
            return
        name = self.topics.command_name(topic)
        if name is not None:
            self._command(name, data)

    def _command(self, name: str, payload: bytes) -> None:
        """Run one command and reply (never raises: a bad payload or a refusal is an error reply)."""
        request_id: int | str | None = None
        try:
            args, request_id = decode_command(payload)
            if not self._bucket.take():
                raise CommandRefused("rate_limited", f"more than {COMMANDS_PER_S:g} commands a second: slow down")
            if name not in self.allowed:
                raise CommandRefused(
                    "forbidden",
                    f"{name[:64]!r} is not allowed over MQTT on this device; allowed: {', '.join(self.allowed)} "
                    "(an operator may allow more in [mqtt] commands)",
                )
            reply = reply_ok(request_id, name, self._execute(name, args))
        except BadPayload as exc:
            reply = reply_error(request_id, name, "bad_request", f"{name[:64]}: {exc}")
        except CommandRefused as exc:
            reply = reply_error(request_id, name, exc.code, exc.message)
        except Exception:
            log.exception("mqtt: the command %r failed", name[:64])
            reply = reply_error(request_id, name[:64], "internal", "a bug in edgevoice (logged); try again")
        self._reply(reply)

    def _reply(self, reply: dict[str, Any]) -> None:
        try:
            payload = encode(reply)
        except (TypeError, ValueError):
            payload = json.dumps({**reply, "result": {}}, default=str).encode()
        self._queue(self.topics.reply, payload)

    def status(self) -> dict[str, Any]:
        """The bridge's own health, for the device's status and metrics."""
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "dropped": self.dropped,
            "error": self.last_error,
        }
