"""The tool calls of the model's responses: run each as it arrives, answer them all once the response is done.

The model may call several tools in one response. Each call starts at once (`start`), in its own task. When
the response that made the calls is done (`answer`), every call's output goes to the server, followed by
one request for the answer that uses them. A call announced only in `response.done` still gets an output,
and an answer cancelled by a barge-in gets its outputs (the model must never wait on a call) but no follow-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from edgevoice.realtime import events as ev
from edgevoice.realtime.history import ConversationHistory
from edgevoice.realtime.tools import ToolRegistry, run_tool

if TYPE_CHECKING:
    from edgevoice.realtime import server_events as se

log = logging.getLogger(__name__)

INCOMPLETE_CALL = json.dumps({"error": "the call arrived incomplete and was not run"})
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class ToolCalls:
    """Tool calls in progress, by the response that made them."""

    def __init__(
        self,
        tools: ToolRegistry,
        history: ConversationHistory,
        *,
        spawn: Spawn,
        send: Callable[[dict[str, Any]], None],
        ask_answer: Callable[[], None],
    ) -> None:
        self.tools = tools
        self._history = history
        self._spawn = spawn
        self._send = send  # to the session, or kept for the next one
        self._ask_answer = ask_answer
        self._running: dict[str, list[asyncio.Task[tuple[str, str]]]] = {}  # response id -> its calls
        self._no_follow_up: set[str] = set()  # responses whose answer was cancelled

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def start(self, call: se.FunctionCall) -> None:
        self._history.add_tool_call(call.item_id, call.call_id, call.name, call.arguments)
        task = self._spawn(self._run(call), f"tool-{call.name}")
        self._running.setdefault(call.response_id, []).append(task)

    def answer(self, done: se.ResponseDone) -> None:
        """The response is done: send its calls' outputs (when they are all in), then ask for the answer."""
        if done.response_id in self._running or done.function_calls:
            self._spawn(self._answer(done.response_id, done.function_calls), "tool-outputs")

    def cancel_follow_ups(self) -> None:
        """A barge-in: the calls running still get their outputs, but no answer is asked for after them."""
        self._no_follow_up.update(self._running)

    def forget(self) -> None:
        """The conversation is over: stop every call."""
        for tasks in self._running.values():
            for task in tasks:
                task.cancel()
        self._running.clear()
        self._no_follow_up.clear()

    async def _run(self, call: se.FunctionCall) -> tuple[str, str]:
        log.info("tool call %s(%s)", call.name, call.arguments[:200])
        output = await run_tool(self.tools, call.name, call.arguments, call.call_id)
        self._history.add_tool_output(call.call_id, output)
        return call.call_id, output

    async def _answer(self, response_id: str, call_ids: tuple[str, ...]) -> None:
        tasks = self._running.get(response_id, [])
        results = dict(await asyncio.gather(*tasks)) if tasks else {}
        self._running.pop(response_id, None)
        for call_id in call_ids:
            results.setdefault(call_id, INCOMPLETE_CALL)  # never leave a call unanswered
        for call_id, output in results.items():
            self._send(ev.function_call_output(call_id, output))
        if response_id in self._no_follow_up:
            self._no_follow_up.discard(response_id)
        elif results:
            self._ask_answer()
