"""edgevoice as a system service: configuration, signals, reloads and what systemd is told.

`edgevoice run` is this module. It loads the configuration and the API key, runs a `Daemon`, and:
- tells systemd READY=1 only once the sound devices stream and GPIO is set up (while the sound card is
  missing at start it keeps extending the start timeout and says why in STATUS=), then a STATUS= line per
  device state;
- pings the watchdog only while the event loop runs and the microphone's callbacks arrive
  (`edgevoice.system.notify.WatchdogPinger`);
- SIGTERM/SIGINT: STOPPING=1, then the daemon's stop path (speaker silenced, a response in flight
  cancelled, the session closed with code 1000, devices released);
- SIGHUP: re-reads and validates the configuration (and the API key). A bad file is logged and shown in
  STATUS=, and the running daemon keeps its configuration. A good one restarts the daemon's parts in this
  process with it (RELOADING=1 ... READY=1): a conversation in progress ends, the process and its
  credentials stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edgevoice import __version__
from edgevoice.config import Config, ConfigError, load_config
from edgevoice.config_warnings import config_warnings
from edgevoice.daemon import Daemon
from edgevoice.system.logs import add_secret, set_log_context, setup_logging
from edgevoice.system.notify import Notifier, WatchdogPinger, watchdog_timeout
from edgevoice.threads import name_this_thread

log = logging.getLogger("edgevoice")

START_EXTEND_S = 5.0  # while the sound card is missing at start, extend the start timeout this often
# PyAudio runs the sound card's callbacks under the GIL. While the event loop computes (start-up, the first
# connection's imports, the echo canceller), a waiting callback asks for the GIL after this long, not after the
# default 5 ms, which a slow CPU stretches past the 20 ms of slack the speaker's buffer has (tests/test_slow_cpu.py).
GIL_SWITCH_S = 0.001
STATUS_MAX = 200
BLOCKING_WORKERS = 4  # threads for blocking jobs (see Service.run)


class Service:
    """One `edgevoice run` process: a daemon per configuration, restarted in place on a reload."""

    def __init__(self, config: Config, config_path: str | None, notifier: Notifier | None = None) -> None:
        self.config = config
        self._config_path = config_path
        self.notifier = notifier or Notifier()
        self.daemon: Daemon | None = None
        self.generation = 0  # daemons started so far (1 + successful reloads)
        self._reload = False
        self._stopping = False
        self._fault = ""
        self.failure = ""  # why the daemon stopped by itself (a task of it failed): the process exits with 1

    # ---- signals -------------------------------------------------------------------------------------

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping")
        self.notifier.stopping()
        if self.daemon is not None:
            self.daemon.stop()

    def reload(self) -> bool:
        """Re-read the configuration; apply it if valid, keep the running one otherwise. True if applied."""
        try:
            config = load_config(self._config_path)
        except ConfigError as exc:
            log.error(
                "reload refused, still running with the previous configuration: %s",
                exc,
                extra={"ERROR_CODE": "config_invalid"},
            )
            self.notifier.status(_one_line(f"reload refused (bad configuration, previous one kept): {exc}"))
            return False
        log.info("reloading with %s", config.source)
        self.config = config
        self._reload = True
        self.notifier.reloading()
        if self.daemon is not None:
            self.daemon.stop()
        return True

    # ---- running -------------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # The few blocking jobs (reading the key or a picture, binding the socket, fetching a token) run here:
        # a small pool, its threads named, instead of asyncio's default of up to 32 anonymous ones.
        loop.set_default_executor(
            ThreadPoolExecutor(
                max_workers=BLOCKING_WORKERS,
                thread_name_prefix="ev-blocking",
                initializer=name_this_thread,
                initargs=("ev-blocking",),
            )
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        watchdog = None
        timeout = watchdog_timeout()
        if timeout is not None and self.notifier.enabled:
            pinger = WatchdogPinger(self.notifier, timeout, {"microphone": self._audio_alive})
            watchdog = asyncio.create_task(pinger.run(), name="watchdog")
            log.info("watchdog: pinging every %.1f s (timeout %.1f s)", pinger.period_s, timeout)
        try:
            while not self._stopping:
                self._reload = False
                await self._run_daemon()
                if not self._reload:
                    break
        finally:
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _run_daemon(self) -> None:
        config = self.config
        setup_logging(config.logging.level)
        self.generation += 1
        log.info("edgevoice %s running with %s", __version__, config.source)
        for warning in config_warnings(config):
            log.warning("%s", warning)
        daemon = Daemon(config, on_secret=add_secret)  # the key is read again: a reload picks up a new one
        daemon.subscribe(self._on_event)
        gpio_up = asyncio.Event()
        announce = asyncio.create_task(self._announce_ready(daemon, gpio_up), name="readiness")
        self.daemon = daemon
        try:
            await daemon.run(on_ready=gpio_up.set)
            if daemon.failure and not self._reload:
                self.failure = daemon.failure
                self.notifier.status(_one_line(f"failed: {daemon.failure}"))
        finally:
            self.daemon = None
            announce.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announce

    async def _announce_ready(self, daemon: Daemon, gpio_up: asyncio.Event) -> None:
        await gpio_up.wait()
        while True:
            try:
                await asyncio.wait_for(daemon.wait_audio(), START_EXTEND_S)
                break
            except TimeoutError:
                status = f"starting: waiting for the sound devices: {self._fault or 'opening them'}"
                self.notifier.extend_start_timeout(3 * START_EXTEND_S, _one_line(status))
        state = daemon.conversation.state if daemon.conversation is not None else "idle"
        self.notifier.ready(_one_line(f"{state}{': ' + self._fault if self._fault else ''}"))
        log.info("ready")
        daemon.warm_up()

    def _audio_alive(self) -> bool:
        daemon = self.daemon
        return daemon is None or daemon.audio_alive()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "state":
            state = str(event["state"])
            reason = str(event.get("reason", ""))
            self._fault = reason if state in ("error", "offline") else ""
            set_log_context(STATE=state)
            if state in ("error", "offline"):
                set_log_context(SESSION_ID="")
            self.notifier.status(_one_line(f"{state}: {reason}" if reason else state))
        elif kind == "session" and event.get("status") in ("open", "rolled_over"):
            set_log_context(SESSION_ID=str(event.get("session_id", "")))


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= STATUS_MAX else text[: STATUS_MAX - 3] + "..."


def run_service(config_path: str | None) -> int:
    """`edgevoice run`: 0 after a stop, 2 for a configuration that cannot start, 1 when a task of the daemon failed
    (systemd's Restart=on-failure starts it afresh)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"edgevoice: configuration error: {exc}", file=sys.stderr)
        return 2
    gc.freeze()  # what start-up loaded lives as long as the process: the collector's full passes skip it from now on
    gc.enable()  # `edgevoice run` loads with it off (cli.py)
    sys.setswitchinterval(GIL_SWITCH_S)
    service = Service(config, config_path)
    asyncio.run(service.run())
    return 1 if service.failure else 0
