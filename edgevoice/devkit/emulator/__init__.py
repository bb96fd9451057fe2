"""A local server that speaks the OpenAI Realtime API (GA, WebSocket) well enough for edgevoice to run on.

Used by `edgevoice demo`, `edgevoice emulator` and the tests: no network, no key, no cost. It answers with
scripted replies (tones with a transcript, or tool calls) and injects the faults a field device meets.
It is a leaf: it imports only the standard library, numpy and websockets, never the rest of edgevoice.

The modules, from the outside in:
    server         the listening socket, connection registry, fault injection (public API)
    handshake      the handshake's rules, HTTP refusals, credentials, redacted handshake records
    session        one connection's protocol state machine
    turns          the user's side of a session: input audio buffer, VAD turns, user items
    checks, schema, requests   validation of untrusted client events and session/response/item shapes
    items          the conversation's items (for truncate, delete, previous_item_id)
    response       one response streaming audio, transcript or a tool call
    audio          tones, energy VAD, the input buffer, G.711
    server_events  builders of the server events
    script         settings and scripted replies

The protocol it follows, and where each rule comes from, is docs/realtime.md.
"""

from .handshake import HandshakeRecord
from .script import EmulatorSettings, FunctionCallReply, SpokenReply, Tone
from .server import RealtimeEmulator, serve

__all__ = [
    "EmulatorSettings",
    "FunctionCallReply",
    "HandshakeRecord",
    "RealtimeEmulator",
    "SpokenReply",
    "Tone",
    "serve",
]
