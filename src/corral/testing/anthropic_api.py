"""``/v1/messages``: Anthropic's Messages API as Ollama offers it.

``max_tokens`` is mandatory in this API, so it only caps the answer (``stop_reason``
"max_tokens" when it does); ``thinking: {"type": "enabled"}`` adds a thinking block; a tool named
in the last user message is answered with a ``tool_use`` block. Streams use Anthropic's event
names: ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``,
``content_block_stop``, ``message_delta``, ``message_stop``.

Example::

    response = await messages(state, request)
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from corral.http.messages import Request, Response, StreamResponse
from corral.testing import runner
from corral.testing.generation import Plan, Prompt, ToolCall, count_words, plan
from corral.testing.native_api import find_model, stream_faults
from corral.testing.openai_api import SSE_HEADERS
from corral.testing.payload import (
    BadRequest,
    get_bool,
    get_dict,
    get_int,
    get_list,
    parse_body,
    require_model,
)
from corral.testing.state import SimState
from corral.testing.timing import Timings

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message},
    }


def block_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("content must be a string or a list of content blocks")
    texts = []
    for block in content:
        if not isinstance(block, dict):
            raise BadRequest("invalid content block")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.append(block_text(block.get("content", "")))
    return " ".join(texts)


def _prompt(body: dict[str, Any]) -> Prompt:
    max_tokens = get_int(body, "max_tokens")
    if max_tokens is None or max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    system = body.get("system")
    parts = [block_text(system) if system is not None else ""]
    last_user = ""
    for message in get_list(body, "messages"):
        if not isinstance(message, dict):
            raise BadRequest("invalid message")
        text = block_text(message.get("content", ""))
        parts.append(text)
        if message.get("role") == "user":
            last_user = text
    if len(parts) == 1:
        raise BadRequest("messages: at least one message is required")
    thinking = get_dict(body, "thinking").get("type") == "enabled"
    return Prompt(
        "\x1f".join(parts),
        sum(count_words(p) for p in parts),
        last_user,
        cap=max_tokens,
        think=thinking or None,
        tools=get_list(body, "tools"),
    )


def _tool_block(call: ToolCall, with_input: bool) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{call.id[5:]}",
        "name": call.name,
        "input": call.arguments if with_input else {},
    }


def _stop_reason(answer: Plan) -> str:
    return "tool_use" if answer.tool_calls else _STOP_REASONS[answer.done_reason]


class MessageBuilder:
    """The message object, and its stream of events; one per request."""

    def __init__(self, model: str, input_tokens: int) -> None:
        self.id = f"msg_{random.randrange(16**24):024x}"
        self._model = model
        self._input_tokens = input_tokens
        self._block = -1
        self._kind = ""

    def final(self, answer: Plan) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if answer.thinking:
            content.append(
                {"type": "thinking", "thinking": "".join(answer.thinking), "signature": ""}
            )
        if answer.tool_calls:
            content += [_tool_block(c, True) for c in answer.tool_calls]
        else:
            content.append({"type": "text", "text": answer.text})
        return self._message(content, _stop_reason(answer), answer.eval_count)

    def _message(self, content: list[Any], stop: str | None, output: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": output},
        }

    @staticmethod
    def _event(kind: str, payload: dict[str, Any]) -> bytes:
        return (
            b"event: "
            + kind.encode()
            + b"\ndata: "
            + orjson.dumps({"type": kind, **payload})
            + b"\n\n"
        )

    def _switch(self, kind: str, block: dict[str, Any]) -> bytes:
        """Close the open block (if another kind) and start ``block``."""
        if self._kind == kind:
            return b""
        out = self._stop_block()
        self._block += 1
        self._kind = kind
        return out + self._event(
            "content_block_start", {"index": self._block, "content_block": block}
        )

    def _stop_block(self) -> bytes:
        if self._block < 0 or not self._kind:
            return b""
        self._kind = ""
        return self._event("content_block_stop", {"index": self._block})

    def opening(self) -> list[bytes]:
        return [
            self._event("message_start", {"message": self._message([], None, 0)}),
            self._event("ping", {}),
        ]

    def thinking(self, text: str) -> bytes:
        head = self._switch("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        return head + self._event(
            "content_block_delta",
            {"index": self._block, "delta": {"type": "thinking_delta", "thinking": text}},
        )

    def content(self, text: str) -> bytes:
        head = self._switch("text", {"type": "text", "text": ""})
        return head + self._event(
            "content_block_delta",
            {"index": self._block, "delta": {"type": "text_delta", "text": text}},
        )

    def tools(self, calls: list[ToolCall]) -> bytes:
        out = b""
        for call in calls:
            out += self._stop_block()
            out += self._switch("tool_use", _tool_block(call, False))
            out += self._event(
                "content_block_delta",
                {
                    "index": self._block,
                    "delta": {
                        "type": "input_json_delta",
                        "partial_json": orjson.dumps(call.arguments).decode(),
                    },
                },
            )
        return out

    def closing(self, answer: Plan, timings: Timings) -> list[bytes]:
        head = b"" if self._block >= 0 else self.content("")
        return [
            head + self._stop_block(),
            self._event(
                "message_delta",
                {
                    "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                    "usage": {"output_tokens": answer.eval_count},
                },
            ),
            self._event("message_stop", {}),
        ]

    def error(self, message: str) -> bytes:
        return self._event("error", {"error": {"type": "api_error", "message": message}})


async def messages(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    info = find_model(state, model, "completion", "chat")
    prompt = _prompt(body)
    answer = plan(info.name, prompt, state.response_tokens, exact_limits=state.exact_lengths)
    stream = get_bool(body, "stream", False)
    gen = runner.Generation(
        state, request.path, model, info, answer, stream=stream, faults=stream_faults(request)
    )
    builder = MessageBuilder(model, answer.prompt_eval_count)
    if stream:
        return StreamResponse(200, runner.stream(gen, builder), list(SSE_HEADERS))
    await runner.complete(gen)
    return Response.json(200, builder.final(answer))
