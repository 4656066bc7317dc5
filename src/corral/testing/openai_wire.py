"""OpenAI-compatible answers as Ollama writes them: completion objects and SSE chunk streams.

Chat and text completions stream ``data: {chunk}\\n\\n`` events; the last content chunk carries
``finish_reason``, then (with ``stream_options.include_usage``) a chunk with empty ``choices`` and
the ``usage``, then ``data: [DONE]``. Errors use Ollama's OpenAI error object, whose ``type``
follows the status.

Example::

    enc = ChatChunkEncoder("chatcmpl-7", 1700000000, "llama3.2", include_usage=True)
    enc.content("The")
    # -> b'data: {"id":"chatcmpl-7",...,"delta":{"role":"assistant","content":"The"},...}\\n\\n'
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.testing.generation import Plan, ToolCall
from corral.testing.timing import Timings

_dumps = orjson.dumps
DONE = b"data: [DONE]\n\n"
FINGERPRINT = "fp_ollama"
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def openai_error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "api_error"),
            "param": None,
            "code": None,
        }
    }


def usage(plan: Plan) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_eval_count,
        "completion_tokens": plan.eval_count,
        "total_tokens": plan.prompt_eval_count + plan.eval_count,
    }


def openai_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "index": i,
            "type": "function",
            "function": {"name": c.name, "arguments": _dumps(c.arguments).decode()},
        }
        for i, c in enumerate(calls)
    ]


def finish_reason(plan: Plan) -> str:
    return "tool_calls" if plan.tool_calls else plan.done_reason


def chat_completion(id_: str, created: int, model: str, plan: Plan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text}
    if plan.thinking:
        message["reasoning"] = "".join(plan.thinking)
    if plan.tool_calls:
        message["tool_calls"] = openai_tool_calls(plan.tool_calls)
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(plan)}],
        "usage": usage(plan),
    }


def text_completion(id_: str, created: int, model: str, plan: Plan) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": plan.text, "index": 0, "finish_reason": plan.done_reason}],
        "usage": usage(plan),
    }


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


class _ChunkEncoder:
    """What chat and text completion streams share: the envelope, usage chunk and [DONE]."""

    object_name = ""

    def __init__(self, id_: str, created: int, model: str, *, include_usage: bool) -> None:
        self._envelope: dict[str, Any] = {
            "id": id_,
            "object": self.object_name,
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        self._include_usage = include_usage
        self._prefix = b"data: " + _dumps(self._envelope)[:-1] + b',"choices":[{"index":0,'

    def opening(self) -> list[bytes]:
        return []

    def error(self, message: str) -> bytes:
        return sse(openai_error(500, message))

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return sse({**self._envelope, "choices": [choice]})

    def _end(self, last: bytes, plan: Plan) -> list[bytes]:
        chunks = [last]
        if self._include_usage:
            chunks.append(sse({**self._envelope, "choices": [], "usage": usage(plan)}))
        chunks.append(DONE)
        return chunks


class ChatChunkEncoder(_ChunkEncoder):
    """``/v1/chat/completions`` with ``stream: true``."""

    object_name = "chat.completion.chunk"

    def content(self, text: str) -> bytes:
        return (
            self._prefix
            + b'"delta":{"role":"assistant","content":'
            + _dumps(text)
            + b'},"finish_reason":null}]}\n\n'
        )

    def thinking(self, text: str) -> bytes:
        delta = {"role": "assistant", "content": "", "reasoning": text}
        return self._chunk({"index": 0, "delta": delta, "finish_reason": None})

    def tools(self, calls: list[ToolCall]) -> bytes:
        delta = {"role": "assistant", "content": "", "tool_calls": openai_tool_calls(calls)}
        return self._chunk({"index": 0, "delta": delta, "finish_reason": None})

    def closing(self, plan: Plan, timings: Timings) -> list[bytes]:
        delta = {"role": "assistant", "content": ""}
        last = self._chunk({"index": 0, "delta": delta, "finish_reason": finish_reason(plan)})
        return self._end(last, plan)


class CompletionChunkEncoder(_ChunkEncoder):
    """``/v1/completions`` with ``stream: true``."""

    object_name = "text_completion"

    def content(self, text: str) -> bytes:
        return self._prefix + b'"text":' + _dumps(text) + b',"finish_reason":null}]}\n\n'

    def thinking(self, text: str) -> bytes:
        return self._chunk({"text": "", "index": 0, "finish_reason": None})

    def tools(self, calls: list[ToolCall]) -> bytes:
        return self.thinking("")

    def closing(self, plan: Plan, timings: Timings) -> list[bytes]:
        last = self._chunk({"text": "", "index": 0, "finish_reason": plan.done_reason})
        return self._end(last, plan)
