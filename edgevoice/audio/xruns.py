"""Overflows and underflows of the audio path: counted where they happen, read here, warned about at most once a minute.

The counters live where the losses happen (edgevoice/audio/bridge.py): PortAudio's status flags in the stream
callbacks (a callback that came too late for the sound card), buffers of the microphone the event loop did not
read in time, and buffers the speaker played silent while the answer's audio waited for the loop. `XRuns` is
one reading of all four; `XRunWatch` turns readings taken from a slow timer into a rate-limited warning that
says how many there were and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

REPORT_EVERY_S = 60.0

_NAMES = {  # (one, several)
    "capture_overflows": ("capture overflow", "capture overflows"),
    "capture_dropped": ("microphone buffer dropped", "microphone buffers dropped"),
    "playback_underflows": ("playback underflow", "playback underflows"),
    "playback_gaps": ("playback gap", "playback gaps"),
}


@dataclass(frozen=True)
class XRuns:
    """The audio path's losses since the sound devices were opened (each a count of 20 ms-ish buffers).

    - `capture_overflows`: PortAudio said the microphone lost input (its callback came too late);
    - `capture_dropped`: microphone buffers that fell out of the hand-over before the event loop, which wanted
      them, read them (the loop fell seconds behind);
    - `playback_underflows`: PortAudio said the speaker ran out (its callback came too late);
    - `playback_gaps`: buffers the speaker played (partly) silent while the answer's audio waited for the event
      loop to hand it over (the loop came late; an answer that arrives late over the network is not counted).
    """

    capture_overflows: int = 0
    capture_dropped: int = 0
    playback_underflows: int = 0
    playback_gaps: int = 0

    @property
    def total(self) -> int:
        return self.capture_overflows + self.capture_dropped + self.playback_underflows + self.playback_gaps

    def since(self, earlier: XRuns) -> XRuns:
        """What happened between `earlier` and this reading."""
        return XRuns(**{key: value - getattr(earlier, key) for key, value in asdict(self).items()})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def describe(self) -> str:
        """E.g. "3 capture overflows, 1 playback gap" (only the counts that are not zero)."""
        parts = [f"{n} {_NAMES[key][n != 1]}" for key, n in asdict(self).items() if n]
        return ", ".join(parts) or "none"

    def advice(self) -> str:
        """What to do about these losses, in words an installer can act on."""
        if self.capture_overflows or self.playback_underflows:
            return (
                "the sound card was served too late: the CPU is too slow or too busy (look for another program in "
                "`top`), or the sound card or its USB link is faulty (try another port or card)"
            )
        return "the daemon fell behind the audio: the CPU is too slow or too busy (look for another program in `top`)"


class XRunWatch:
    """Decides when to warn about xruns: call `check` with a fresh reading from a slow timer (not per frame).

    The first losses are reported at once; later ones wait until `every_s` has passed since the last line, which
    then says how many happened since it. Nothing is said while the counters do not move.
    """

    def __init__(self, every_s: float = REPORT_EVERY_S) -> None:
        self.every_s = every_s
        self._reported = XRuns()
        self._reported_at: float | None = None

    def check(self, now: XRuns, at: float) -> str | None:
        """The warning to log now, or None."""
        new = now.since(self._reported)
        if new.total <= 0:
            return None
        if self._reported_at is not None and at - self._reported_at < self.every_s:
            return None
        if self._reported_at is None:
            since = "since the sound devices opened"
        else:
            since = f"in the last {at - self._reported_at:.0f} s"
        self._reported, self._reported_at = now, at
        return f"audio: {new.describe()} {since} (heard as clicks or gaps): {new.advice()}"
