"""Ollama's native answers, as whole JSON objects and as NDJSON stream lines.

Key order follows Ollama's Go structs (``done`` then ``done_reason`` for generate, the reverse
for chat). Token lines are assembled from bytes prepared once per request, so a streamed line
costs one timestamp, one string escape and a join.

Example::

    enc = GenerateEncoder("llama3.2", clock)
    enc.content("The")
    # -> b'{"model":"llama3.2","created_at":"...","response":"The","done":false}\\n'
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.testing.generation import Plan, ToolCall, context_tokens, logprob
from corral.testing.timestamps import WallClock
from corral.testing.timing import Timings

_dumps = orjson.dumps


def native_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}}
        for i, c in enumerate(calls)
    ]


def generate_result(
    model: str, created_at: str, plan: Plan, timings: Timings, *, context: bool, top: int | None
) -> dict[str, Any]:
    """The single object of a non-streaming ``/api/generate``."""
    out: dict[str, Any] = {"model": model, "created_at": created_at, "response": plan.text}
    if plan.thinking:
        out["thinking"] = "".join(plan.thinking)
    out["done"] = True
    out["done_reason"] = plan.done_reason
    if context:
        out["context"] = context_tokens(plan.seed, plan.prompt_eval_count + plan.eval_count)
    out.update(timings.fields(plan.prompt_eval_count, plan.eval_count))
    if top is not None:
        out["logprobs"] = [logprob(t, top) for t in plan.content]
    return out


def chat_result(
    model: str, created_at: str, plan: Plan, timings: Timings, *, top: int | None
) -> dict[str, Any]:
    """The single object of a non-streaming ``/api/chat``."""
    message: dict[str, Any] = {"role": "assistant", "content": plan.text}
    if plan.thinking:
        message["thinking"] = "".join(plan.thinking)
    if plan.tool_calls:
        message["tool_calls"] = native_tool_calls(plan.tool_calls)
    out: dict[str, Any] = {
        "model": model,
        "created_at": created_at,
        "message": message,
        "done_reason": plan.done_reason,
        "done": True,
    }
    out.update(timings.fields(plan.prompt_eval_count, plan.eval_count))
    if top is not None:
        out["logprobs"] = [logprob(t, top) for t in plan.content]
    return out


def error_line(message: str) -> bytes:
    return _dumps({"error": message}) + b"\n"


class _Lines:
    """What the native encoders share: each line opens with the model and the time."""

    __slots__ = ("_clock", "_head", "_model", "_top")

    def __init__(self, model: str, clock: WallClock, top: int | None) -> None:
        self._model = model
        self._clock = clock
        self._top = top
        # The start of a content line, written out by hand: the hot loop of a stream.
        self._head = b'{"model":' + _dumps(model) + b',"created_at":"'

    def opening(self) -> list[bytes]:
        return []

    def error(self, message: str) -> bytes:
        return error_line(message)

    def _line(self, fields: dict[str, Any]) -> bytes:
        head = {"model": self._model, "created_at": self._clock.rfc3339()}
        head.update(fields)
        return _dumps(head) + b"\n"


class GenerateEncoder(_Lines):
    """``/api/generate`` as NDJSON lines."""

    __slots__ = ("_context",)

    def __init__(
        self, model: str, clock: WallClock, *, context: bool = True, top: int | None = None
    ) -> None:
        super().__init__(model, clock, top)
        self._context = context

    def content(self, text: str) -> bytes:
        if self._top is not None:
            return self._line(
                {"response": text, "done": False, "logprobs": [logprob(text, self._top)]}
            )
        return b"".join(
            (
                self._head,
                self._clock.rfc3339().encode(),
                b'","response":',
                _dumps(text),
                b',"done":false}\n',
            )
        )

    def thinking(self, text: str) -> bytes:
        return self._line({"response": "", "thinking": text, "done": False})

    def tools(self, calls: list[ToolCall]) -> bytes:
        return self._line({"response": "", "done": False})

    def closing(self, plan: Plan, timings: Timings) -> list[bytes]:
        final: dict[str, Any] = {"response": "", "done": True, "done_reason": plan.done_reason}
        if self._context:
            final["context"] = context_tokens(plan.seed, plan.prompt_eval_count + plan.eval_count)
        final.update(timings.fields(plan.prompt_eval_count, plan.eval_count))
        return [self._line(final)]


class ChatEncoder(_Lines):
    """``/api/chat`` as NDJSON lines."""

    __slots__ = ()

    def __init__(self, model: str, clock: WallClock, *, top: int | None = None) -> None:
        super().__init__(model, clock, top)

    def content(self, text: str) -> bytes:
        if self._top is not None:
            message = {"role": "assistant", "content": text}
            return self._line(
                {"message": message, "done": False, "logprobs": [logprob(text, self._top)]}
            )
        return b"".join(
            (
                self._head,
                self._clock.rfc3339().encode(),
                b'","message":{"role":"assistant","content":',
                _dumps(text),
                b'},"done":false}\n',
            )
        )

    def thinking(self, text: str) -> bytes:
        message = {"role": "assistant", "content": "", "thinking": text}
        return self._line({"message": message, "done": False})

    def tools(self, calls: list[ToolCall]) -> bytes:
        message = {"role": "assistant", "content": "", "tool_calls": native_tool_calls(calls)}
        return self._line({"message": message, "done": False})

    def closing(self, plan: Plan, timings: Timings) -> list[bytes]:
        final: dict[str, Any] = {
            "message": {"role": "assistant", "content": ""},
            "done_reason": plan.done_reason,
            "done": True,
        }
        final.update(timings.fields(plan.prompt_eval_count, plan.eval_count))
        return [self._line(final)]
