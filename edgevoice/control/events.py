"""The events a subscriber of the control socket can get (docs/control-protocol.md describes their fields).

The device publishes `EVENTS` (other names are forwarded too, to subscribers that asked for everything);
the control server itself sends `SERVER_EVENTS` to the one client they concern, subscribed or not.
"""

from __future__ import annotations

EVENTS = (
    "state",  # state, previous, reason? : idle connecting listening thinking speaking muted offline error
    "transcript",  # role user|assistant, item_id, text, final
    "tool_call",  # call_id, name, arguments (JSON text)
    "level",  # level 0..1: the played speech envelope, ~20 Hz while speaking (lip-sync)
    "usage",  # tokens and cost of a response
    "error",  # code, message
    "notice",  # message: something a person may want to know (e.g. "cannot talk now: offline")
    "session",  # status open|rolled_over|..., session_id
    "interrupted",  # item_id, played_ms: the assistant was cut off
    "conversation_ended",  # reason
    "latency",  # what, ms
    "led",  # state, pattern
    "mute",  # muted
    "volume",  # level
    "button",  # button, gesture, action, phase
)
# a slow reader's lost events; a tool call nobody waits for now; a tool of yours the server refused (name, message)
SERVER_EVENTS = ("dropped", "tool_cancelled", "tool_refused")
SUBSCRIBABLE = EVENTS  # what `subscribe` takes (server events come whether subscribed or not)
