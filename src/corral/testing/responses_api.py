"""``/v1/responses``: OpenAI's Responses API in Ollama's stateless flavour.

The answer is a ``response`` object whose ``output`` holds an optional reasoning item, then a
message item (or function calls). Streaming sends named SSE events: ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` per token, the matching ``.done`` events and
``response.completed``.

Example::

    response = await responses(state, request)
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from corral.http.messages import Request, Response, StreamResponse
from corral.testing import runner
from corral.testing.generation import Plan, Prompt, ToolCall, count_words, plan
from corral.testing.native_api import find_model, stream_faults
from corral.testing.openai_api import SSE_HEADERS, message_text, reasoning
from corral.testing.payload import (
    BadRequest,
    get_bool,
    get_int,
    get_list,
    get_str,
    parse_body,
    require_model,
)
from corral.testing.state import SimState
from corral.testing.timing import Timings


def _prompt(body: dict[str, Any]) -> Prompt:
    instructions = get_str(body, "instructions")
    value = body.get("input")
    parts, last_user = [instructions], ""
    if isinstance(value, str):
        parts.append(value)
        last_user = value
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, dict):
                raise BadRequest("invalid input item")
            text = (
                message_text(item.get("content"))
                if "content" in item
                else str(item.get("output", ""))
            )
            parts.append(text)
            if item.get("role") == "user":
                last_user = text
    elif value is not None:
        raise BadRequest("input must be a string or a list of items")
    text = "\x1f".join(parts)
    return Prompt(
        text,
        max(1, sum(count_words(p) for p in parts)),
        last_user,
        None,
        get_int(body, "max_output_tokens"),
        think=reasoning(body),
        tools=get_list(body, "tools"),
    )


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = (
        []
        if status == "in_progress"
        else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    )
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _call_item(call: ToolCall, status: str) -> dict[str, Any]:
    arguments = orjson.dumps(call.arguments).decode() if status == "completed" else ""
    return {
        "id": f"fc_{call.id[5:]}",
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


class ResponseBuilder:
    """The response object, and its stream of events; one per request."""

    def __init__(self, model: str, created: int, body: dict[str, Any]) -> None:
        suffix = random.randrange(1_000_000)
        self.id, self.message_id, self.reasoning_id = (
            f"resp_{suffix}",
            f"msg_{suffix}",
            f"rs_{suffix}",
        )
        self._base: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": created,
            "status": "in_progress",
            "model": model,
            "output": [],
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "parallel_tool_calls": True,
            "temperature": body.get("temperature", 1.0),
            "tool_choice": "auto",
            "tools": get_list(body, "tools"),
            "top_p": body.get("top_p", 1.0),
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "metadata": {},
        }
        self._sequence = 0
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._message_open = False

    def final(self, answer: Plan) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if answer.thinking:
            output.append(_reasoning_item(self.reasoning_id, "".join(answer.thinking)))
        if answer.tool_calls:
            output += [_call_item(c, "completed") for c in answer.tool_calls]
        else:
            output.append(_message_item(self.message_id, answer.text, "completed"))
        cut = answer.done_reason == "length"
        return {
            **self._base,
            "status": "incomplete" if cut else "completed",
            "output": output,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "usage": {
                "input_tokens": answer.prompt_eval_count,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": answer.eval_count,
                "output_tokens_details": {"reasoning_tokens": len(answer.thinking)},
                "total_tokens": answer.prompt_eval_count + answer.eval_count,
            },
        }

    # ---- Encoder --------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _output_index(self) -> int:
        return 1 if self._thinking else 0

    def opening(self) -> list[bytes]:
        return [
            self._event("response.created", response=self._base),
            self._event("response.in_progress", response=self._base),
        ]

    def thinking(self, text: str) -> bytes:
        head = b""
        if not self._thinking:
            item = {"id": self.reasoning_id, "type": "reasoning", "summary": []}
            head = self._event("response.output_item.added", output_index=0, item=item)
        self._thinking.append(text)
        return head + self._event(
            "response.reasoning_summary_text.delta",
            item_id=self.reasoning_id,
            output_index=0,
            summary_index=0,
            delta=text,
        )

    def _close_thinking(self) -> bytes:
        if not self._thinking:
            return b""
        item = _reasoning_item(self.reasoning_id, "".join(self._thinking))
        return self._event("response.output_item.done", output_index=0, item=item)

    def content(self, text: str) -> bytes:
        head = b""
        index = self._output_index()
        if not self._message_open:
            self._message_open = True
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            head = (
                self._close_thinking()
                + self._event(
                    "response.output_item.added",
                    output_index=index,
                    item=_message_item(self.message_id, "", "in_progress"),
                )
                + self._event(
                    "response.content_part.added",
                    item_id=self.message_id,
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
        self._text.append(text)
        return head + self._event(
            "response.output_text.delta",
            item_id=self.message_id,
            output_index=index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def tools(self, calls: list[ToolCall]) -> bytes:
        out = self._close_thinking()
        for offset, call in enumerate(calls):
            index = self._output_index() + offset
            item_id = f"fc_{call.id[5:]}"
            arguments = orjson.dumps(call.arguments).decode()
            out += self._event(
                "response.output_item.added",
                output_index=index,
                item=_call_item(call, "in_progress"),
            )
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=index,
                delta=arguments,
            )
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                arguments=arguments,
            )
            out += self._event(
                "response.output_item.done", output_index=index, item=_call_item(call, "completed")
            )
        return out

    def closing(self, answer: Plan, timings: Timings) -> list[bytes]:
        chunks = []
        if not answer.tool_calls:
            # An empty answer still has its message item.
            prefix = b"" if self._message_open else self.content("")
            index, text = self._output_index(), "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            chunks.append(
                prefix
                + self._event(
                    "response.output_text.done",
                    item_id=self.message_id,
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
                + self._event(
                    "response.content_part.done",
                    item_id=self.message_id,
                    output_index=index,
                    content_index=0,
                    part=part,
                )
                + self._event(
                    "response.output_item.done",
                    output_index=index,
                    item=_message_item(self.message_id, text, "completed"),
                )
            )
        chunks.append(self._event("response.completed", response=self.final(answer)))
        return chunks

    def error(self, message: str) -> bytes:
        return self._event("error", code=None, message=message, param=None)


async def responses(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    info = find_model(state, model, "completion", "chat")
    answer = plan(info.name, _prompt(body), state.response_tokens, exact_limits=state.exact_lengths)
    stream = get_bool(body, "stream", False)
    gen = runner.Generation(
        state, request.path, model, info, answer, stream=stream, faults=stream_faults(request)
    )
    builder = ResponseBuilder(model, state.clock.unix(), body)
    if stream:
        return StreamResponse(200, runner.stream(gen, builder), list(SSE_HEADERS))
    await runner.complete(gen)
    return Response.json(200, builder.final(answer))
