"""What the LEDs show: one look per device state, animated on a small background thread.

A visitor must tell at a glance whether the device is listening, thinking, talking, muted or broken. Each
state has a `Look` (data, in `LOOKS`): a colour and a motion for RGB LEDs and pixel strips, a brightness
for a dimmable LED, and an on/off blink for a plain LED. While speaking, the brightness follows the level
of what is being played (`set_level`, ~20 Hz). The privacy mute overrides every state: while muted, the
LEDs show `muted` whatever else happens, and a separate mute LED (if wired) is lit.

Rendering is pure (`render`), so every look is testable frame by frame with a made-up clock. `LedShow`
runs it on its own thread: LED writes are blocking I/O (an SPI transfer, or bit-banged GPIO on boards
whose pixels are not on the SPI pins, about a millisecond per frame), and animations need steady timing
that a busy event loop cannot promise. The thread sleeps until the next change: a plain LED wakes only at
its blink edges, a steady look not at all; animations run at `fps`. A state change wakes it at once.
Calls from the event loop only set fields and an Event: they never wait for the LEDs. A failing LED is
logged once and retried every second; it never stops the device.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edgevoice.hw.led_drivers import RGB, Kind, LedDriver
from edgevoice.threads import name_this_thread

log = logging.getLogger(__name__)

Motion = Literal["off", "steady", "blink", "pulse", "spin", "level"]

BLUE: RGB = (0.0, 0.2, 1.0)
CYAN: RGB = (0.0, 0.7, 1.0)
GREEN: RGB = (0.0, 1.0, 0.25)
AMBER: RGB = (1.0, 0.45, 0.0)
RED: RGB = (1.0, 0.0, 0.0)
DARK: RGB = (0.0, 0.0, 0.0)

LEVEL_FRESH_S = 0.3  # a level older than this means nothing is being played: fall back to the pulse
LEVEL_RELEASE_S = 0.12  # the envelope falls with this time constant (and rises at once)
LEVEL_ON = 0.15  # a plain LED is on while speaking above this level
RETRY_S = 1.0
EPS = 1e-6


@dataclass(frozen=True)
class Look:
    """How one device state appears on each kind of LED (data only; `render` animates it): `colour` and
    `motion` for pixels and RGB LEDs, `motion` times `mono` for a dimmable LED, `blink` for a plain one.
    `describe(kind)` says in words what a visitor sees on that kind of LED."""

    colour: RGB
    colour_name: str
    motion: Motion  # for dimmable LEDs and pixels
    blink: tuple[float, float]  # (on_s, off_s) for a plain LED: (0, 0) off, (x, 0) steady on
    period_s: float = 1.0  # of a pulse or a spin
    floor: float = 0.0  # the lowest brightness of a pulse, or of speech
    mono: float = 1.0  # brightness on a single dimmable LED (muted glows dimly, to differ from listening)

    def describe(self, kind: Kind) -> str:
        if kind == "binary":
            on_s, off_s = self.blink
            text = "off" if on_s == 0 else "on" if off_s == 0 else f"blink {on_s:g}s on / {off_s:g}s off"
            return f"with the voice, else {text}" if self.motion == "level" else text
        if self.motion == "off":
            return "off"
        what = {"level": "with the voice", "spin": "spin", "pulse": "pulse", "blink": "blink", "steady": "steady"}
        text = f"{self.colour_name} {what[self.motion]}"
        return f"{text} {self.mono:.0%}" if kind == "mono" and self.mono < 1 else text


LOOKS: dict[str, Look] = {
    "idle": Look(DARK, "dark", "off", (0, 0)),
    "connecting": Look(BLUE, "blue", "spin", (0.1, 0.4), period_s=1.0),
    "listening": Look(BLUE, "blue", "steady", (1, 0)),
    "thinking": Look(CYAN, "cyan", "spin", (0.1, 0.1), period_s=0.6),
    "speaking": Look(GREEN, "green", "level", (0.5, 0.15), period_s=0.65, floor=0.2),
    "muted": Look(RED, "red", "steady", (0.1, 0.9), mono=0.15),
    "offline": Look(AMBER, "amber", "pulse", (0.5, 1.5), period_s=2.0, floor=0.05),
    "error": Look(RED, "red", "blink", (0.05, 0.25)),
}


def _blink_on(blink: tuple[float, float], t: float) -> bool:
    on_s, off_s = blink
    if on_s == 0:
        return False
    if off_s == 0:
        return True
    return _phase(blink, t) < on_s


def _phase(blink: tuple[float, float], t: float) -> float:
    # EPS: a step that lands on an edge (give or take float rounding) is past it, never a hair before it.
    return (t + EPS) % (blink[0] + blink[1])


def _pulse(look: Look, t: float) -> float:
    return look.floor + (1 - look.floor) * (1 - math.cos(2 * math.pi * t / look.period_s)) / 2


def intensity(look: Look, t: float, level: float | None) -> float:
    """Brightness 0..1 of a single dimmable light `t` seconds into the look (`level`: None = no audio)."""
    match look.motion:
        case "off":
            return 0.0
        case "steady":
            return 1.0
        case "blink" | "spin":  # a spin needs at least three pixels; one light blinks instead
            return 1.0 if _blink_on(look.blink, t) else 0.0
        case "pulse":
            return _pulse(look, t)
        case _:  # level
            return _pulse(look, t) if level is None else look.floor + (1 - look.floor) * level


def render(look: Look, kind: Kind, pixels: int, t: float, level: float | None) -> Any:
    """The frame `t` seconds into `look` for a driver of `kind` with `pixels` pixels."""
    if kind == "binary":
        if look.motion == "level" and level is not None:
            return level > LEVEL_ON
        return _blink_on(look.blink, t)
    if kind == "mono":
        return round(intensity(look, t, level) * look.mono, 4)
    if look.motion == "spin" and pixels >= 3:
        head = (t / look.period_s * pixels) % pixels
        tail = pixels / 3
        frame = []
        for i in range(pixels):
            behind = (head - i) % pixels  # 0 at the head, growing along the tail
            frame.append(_scaled(look.colour, max(0.0, 1 - behind / tail)))
        return tuple(frame)
    return (_scaled(look.colour, intensity(look, t, level)),) * pixels


def _scaled(colour: RGB, k: float) -> RGB:
    return (round(colour[0] * k, 4), round(colour[1] * k, 4), round(colour[2] * k, 4))


def next_change(look: Look, kind: Kind, pixels: int, t: float, fps: float, speaking: bool) -> float | None:
    """Seconds from `t` until the frame can next change (None: not until the look does)."""
    if kind == "binary" and not (look.motion == "level" and speaking):
        on_s, off_s = look.blink
        if on_s == 0 or off_s == 0:
            return None
        phase = _phase(look.blink, t)
        return (on_s - phase if phase < on_s else on_s + off_s - phase) + EPS
    if look.motion in ("off", "steady"):
        return None
    if look.motion == "blink" or (look.motion == "spin" and (kind != "colour" or pixels < 3)):
        return next_change(look, "binary", 1, t, fps, False)
    return 1 / fps


class LedShow:
    """The device state (and speech level, and mute) on one LED driver, animated on a background thread."""

    def __init__(
        self,
        driver: LedDriver,
        *,
        mute_led: LedDriver | None = None,
        fps: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self.mute_led = mute_led
        self.fps = fps
        self._clock = clock
        self._lock = threading.Lock()
        self._state = "idle"
        self._since = clock()
        self._muted = False
        self._level = 0.0
        self._level_at = -math.inf
        self._envelope = 0.0
        self._last_step: float | None = None
        self._shown: Any = None
        self._mute_shown: bool | None = None
        self._failing: set[str] = set()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---- inputs (any thread; they never touch the hardware) -----------------------------------------------

    def show(self, state: str) -> str:
        """Show a device state (an unknown one shows as `error`); returns what the LED does, in words."""
        with self._lock:
            if state != self._state:
                self._state = state
                self._since = self._clock()
        self._wake.set()
        return self.look().describe(self.driver.kind)

    def set_muted(self, muted: bool) -> None:
        with self._lock:
            if muted != self._muted:
                self._muted = muted
                self._since = self._clock()
        self._wake.set()

    def set_level(self, level: float) -> None:
        """The level (0..1) of what the speaker is playing now; call it ~20 times a second while speaking."""
        self._level = min(max(float(level), 0.0), 1.0)
        self._level_at = self._clock()

    @property
    def state(self) -> str:
        return self._state

    @property
    def muted(self) -> bool:
        return self._muted

    def look(self) -> Look:
        return LOOKS["muted"] if self._muted else LOOKS.get(self._state, LOOKS["error"])

    # ---- output (the LED thread, or a test with its own clock) ---------------------------------------------

    def step(self, now: float) -> float | None:
        """Put the frame for `now` on the LEDs (if it changed); seconds until the next step, None = no need."""
        with self._lock:
            look, since, muted = self.look(), self._since, self._muted
        level = self._speech_level(now)
        kind, pixels = self.driver.kind, self.driver.pixels
        frame = render(look, kind, pixels, now - since, level)
        delay = next_change(look, kind, pixels, now - since, self.fps, level is not None)
        if frame != self._shown and self._write(self.driver, frame):
            self._shown = frame
        if self.mute_led is not None and muted != self._mute_shown and self._write(self.mute_led, muted):
            self._mute_shown = muted
        if self._failing:
            return RETRY_S if delay is None else min(delay, RETRY_S)
        return delay

    def _speech_level(self, now: float) -> float | None:
        dt = 0.0 if self._last_step is None else max(0.0, now - self._last_step)
        self._last_step = now
        fresh = now - self._level_at < LEVEL_FRESH_S
        target = self._level if fresh else 0.0
        self._envelope = max(target, self._envelope * math.exp(-dt / LEVEL_RELEASE_S))
        if self._envelope < 0.01:
            self._envelope = 0.0
        if not fresh and self._envelope == 0.0:
            return None
        return round(self._envelope, 4)

    def _write(self, driver: LedDriver, frame: Any) -> bool:
        name = driver.describe()
        try:
            driver.write(frame)
        except Exception as exc:
            if name not in self._failing:
                self._failing.add(name)
                log.warning("%s failed: %s; the device carries on without it (retrying every second)", name, exc)
            return False
        if name in self._failing:
            self._failing.discard(name)
            log.info("%s works again", name)
        return True

    # ---- the thread ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leds", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        name_this_thread("ev-leds")
        while not self._stopping:
            self._wake.clear()
            try:
                delay = self.step(self._clock())
            except Exception:  # a bug here must not kill the thread silently, nor the device
                log.exception("LED animation failed")
                delay = RETRY_S
            self._wake.wait(delay)

    def close(self) -> None:
        """Stop the thread, turn the LEDs off and release them."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for driver in (self.driver, self.mute_led):
            if driver is None:
                continue
            with contextlib.suppress(Exception):
                driver.write(render(LOOKS["idle"], driver.kind, driver.pixels, 0.0, None))
            try:
                driver.close()
            except Exception as exc:
                log.debug("closing %s: %s", driver.describe(), exc)
