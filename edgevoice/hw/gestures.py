"""Button gestures (hold, short, long and double press) recognised from debounced edges, and what they do.

The recognizer is pure and clock-injected: `press(t)` and `release(t)` feed it the edges with their times,
`poll(now)` fires the timeouts that are due and says when it next needs polling. No GPIO, no asyncio:
`edgevoice.hw.button` drives it from the event loop, the tests drive it with made-up times.

Each physical interaction becomes exactly one gesture:
- hold: the button stays down for `hold_ms`. It starts at once when neither a short nor a double press is
  mapped (so push-to-talk alone has no delay); otherwise `hold_ms` is what tells a hold from a tap. Every
  event carries the time the press began (`pressed_at`), so a consumer can take audio from then on.
- long press: the button stays down for `long_press_ms`; reported while still held (the release is
  swallowed). A button cannot map both a hold and a long press: a long hold would be both.
- short press: released before `hold_ms` (or `long_press_ms`); reported at the release, or `double_press_ms`
  later when a double press is mapped (only then is it known that no second press follows).
- double press: a short press, then a second press within `double_press_ms` of its release; reported at
  the second press (the rest of that press is swallowed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from edgevoice.hw.settings import ButtonSettings

Gesture = Literal["hold", "short_press", "long_press", "double_press"]
Action = Literal["talk", "converse", "end", "mute"]
Phase = Literal["start", "end", "once"]  # start/end: the two halves of a `talk` hold; once: everything else

GESTURES: tuple[Gesture, ...] = get_args(Gesture)

# "auto" by turn detection. Push-to-talk: hold to talk, a tap interrupts the answer. With a VAD: a tap starts
# a conversation (or interrupts, or ends listening), a long press ends it. A double press is the privacy mute.
AUTO_ACTIONS: dict[bool, dict[Gesture, str]] = {
    True: {"hold": "talk", "short_press": "converse", "long_press": "none", "double_press": "mute"},
    False: {"hold": "none", "short_press": "converse", "long_press": "end", "double_press": "mute"},
}


@dataclass(frozen=True)
class ButtonAction:
    """A gesture, as the action it is mapped to."""

    button: str  # the config section: "button" or "buttons.NAME"
    action: Action
    phase: Phase
    gesture: Gesture
    pressed_at: float  # when the gesture's (first) press began, on the recognizer's clock
    at: float  # when it was recognised

    def as_event(self) -> dict[str, Any]:
        return {
            "event": "button",
            "button": self.button,
            "gesture": self.gesture,
            "action": self.action,
            "phase": self.phase,
        }


@dataclass(frozen=True)
class GestureTiming:
    """The recognizer's thresholds, in seconds on its clock (see the module docstring for what each decides);
    `of(settings)` takes them from a button's `*_ms` keys."""

    hold_s: float = 0.25
    long_press_s: float = 1.0
    double_press_s: float = 0.3

    @classmethod
    def of(cls, settings: ButtonSettings) -> GestureTiming:
        return cls(settings.hold_ms / 1000, settings.long_press_ms / 1000, settings.double_press_ms / 1000)


def resolve_actions(settings: ButtonSettings, push_to_talk: bool) -> dict[Gesture, Action]:
    """The mapped gestures of a button ("auto" resolved, "none" left out)."""
    actions: dict[Gesture, Action] = {}
    for gesture in GESTURES:
        value = getattr(settings, gesture)
        if value == "auto":
            value = AUTO_ACTIONS[push_to_talk][gesture]
        if value != "none":
            actions[gesture] = value
    return actions


def gesture_problems(settings: ButtonSettings, push_to_talk: bool, section: str) -> list[str]:
    """What makes a button's mapping unusable, as sentences naming the keys (empty when it is fine)."""
    actions = resolve_actions(settings, push_to_talk)
    problems = []
    for gesture, action in actions.items():
        if action == "talk" and gesture != "hold":
            problems.append(
                f"[{section}] {gesture} = 'talk': talking needs the button held; use hold = 'talk' "
                f"and give {gesture} another action (converse, end, mute or none)"
            )
    if "hold" in actions and "long_press" in actions:
        problems.append(
            f"[{section}] hold = {actions['hold']!r} and long_press = {actions['long_press']!r}: a long hold "
            "would be both; set one of them to 'none'"
        )
    return problems


class GestureRecognizer:
    """Edges in (with their times), `ButtonAction`s out through `emit`."""

    def __init__(
        self,
        button: str,
        actions: Mapping[Gesture, Action],
        timing: GestureTiming,
        emit: Callable[[ButtonAction], None],
    ) -> None:
        self.button = button
        self.actions = dict(actions)
        self.timing = timing
        self._emit = emit
        self._immediate_hold = "hold" in self.actions and not {"short_press", "double_press"} & self.actions.keys()
        self._state: Literal["up", "down", "holding", "swallow", "wait_second"] = "up"
        self._pressed_at = 0.0
        self._released_at = 0.0

    @property
    def idle(self) -> bool:
        """Up, with nothing pending."""
        return self._state == "up"

    def press(self, t: float) -> None:
        self.poll(t)
        if self._state == "up":
            self._pressed_at = t
            if self._immediate_hold:
                self._hold_started(t)
            else:
                self._state = "down"
        elif self._state == "wait_second":
            self._fire("double_press", "once", t)
            self._state = "swallow"
        # A press while down cannot happen with a debounced input; ignore it rather than guess.

    def release(self, t: float) -> None:
        self.poll(t)
        if self._state == "holding":
            if self.actions["hold"] == "talk":
                self._fire("hold", "end", t)
            self._state = "up"
        elif self._state == "swallow":
            self._state = "up"
        elif self._state == "down":  # a tap
            if "double_press" in self.actions:
                self._released_at = t
                self._state = "wait_second"
            else:
                self._fire("short_press", "once", t)
                self._state = "up"
        # A release while up: the button was down when we started watching it.

    def poll(self, now: float) -> float | None:
        """Fire what is due by `now`; the time of the next deadline, or None."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            if self._state == "down":
                if "hold" in self.actions:
                    self._hold_started(deadline)
                else:
                    self._fire("long_press", "once", deadline)
                    self._state = "swallow"
            elif self._state == "wait_second":
                self._fire("short_press", "once", deadline)
                self._state = "up"
        return self.deadline()

    def deadline(self) -> float | None:
        if self._state == "down":
            if "hold" in self.actions:
                return self._pressed_at + self.timing.hold_s
            if "long_press" in self.actions:
                return self._pressed_at + self.timing.long_press_s
        elif self._state == "wait_second":
            return self._released_at + self.timing.double_press_s
        return None

    def _hold_started(self, t: float) -> None:
        self._fire("hold", "start" if self.actions["hold"] == "talk" else "once", t)
        self._state = "holding"

    def _fire(self, gesture: Gesture, phase: Phase, t: float) -> None:
        action = self.actions.get(gesture)
        if action is not None:
            self._emit(ButtonAction(self.button, action, phase, gesture, self._pressed_at, t))
