"""A stored answer, given back in the shape the request asks for.

The shapes: one JSON object (``"stream": false``), an NDJSON stream (native streaming), or
server-sent events (``/v1`` streaming). An answer asked for in the shape it was stored in comes
back byte for byte. Otherwise it is converted the way Ollama itself splits and joins answers:

- JSON to NDJSON: a thinking line, a content line, a tool-calls line (each only when there is
  something to say), then the final line carrying ``done_reason``, the context and the original
  token counts and timings;
- NDJSON to JSON: the lines' text, thinking, tool calls and logprobs joined into the final
  object, in Ollama's key order;
- JSON to SSE and back, for ``/v1/chat/completions`` and ``/v1/completions``: one content chunk,
  the chunk with ``finish_reason``, the ``usage`` chunk when ``stream_options.include_usage``
  asks for it, then ``data: [DONE]``.

An answer that cannot be given faithfully in the shape asked (a ``/v1`` stream stored without
its ``usage``, asked for as JSON or with usage) raises :class:`CannotReplay`: the request is then
a miss, and its answer replaces the poorer one.

Example::

    content_type, body = replay(KINDS["/api/chat"], stored, "ndjson")
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.cache.entry import CachedAnswer
from corral.cache.policy import Kind, Shape

JSON_TYPE = b"application/json; charset=utf-8"
NDJSON_TYPE = b"application/x-ndjson"
SSE_TYPE = b"text/event-stream"
_TYPES: dict[Shape, bytes] = {"json": JSON_TYPE, "ndjson": NDJSON_TYPE, "sse": SSE_TYPE}
_DONE_EVENT = b"data: [DONE]\n\n"
_NATIVE_HEAD = ("model", "created_at")


class CannotReplay(Exception):
    """The stored answer lacks something the requested shape needs."""


def replay(
    kind: Kind, answer: CachedAnswer, shape: Shape, *, include_usage: bool = False
) -> tuple[bytes, bytes]:
    """``(content type, body)`` of ``answer`` in ``shape``."""
    stored = answer.shape
    if stored == shape and shape != "sse":
        return answer.content_type, answer.body
    try:
        if kind.openai:
            return _TYPES[shape], _openai(kind, answer, shape, include_usage)
        return _TYPES[shape], _native(kind, answer, shape)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        # Stored answers were checked when kept; this is one from an incompatible version.
        raise CannotReplay(f"stored answer not understood: {err}") from err


# ---- native: JSON <-> NDJSON ----------------------------------------------------------------


def _native(kind: Kind, answer: CachedAnswer, shape: Shape) -> bytes:
    if answer.shape == "json" and shape == "ndjson":
        lines = split_native(kind.name == "chat", orjson.loads(answer.body))
        return b"".join(orjson.dumps(line) + b"\n" for line in lines)
    if answer.shape == "ndjson" and shape == "json":
        lines = [orjson.loads(line) for line in answer.body.splitlines() if line.strip()]
        return orjson.dumps(join_native(kind.name == "chat", lines))
    raise CannotReplay(f"{kind.name} answers are not sent as {shape}")


def join_native(chat: bool, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """NDJSON lines -> the one object Ollama sends for ``"stream": false``."""
    final = lines[-1]
    text: list[str] = []
    thinking: list[str] = []
    calls: list[Any] = []
    logprobs: list[Any] = []
    for line in lines:
        part = line.get("message") or {} if chat else line
        text.append(part.get("content" if chat else "response") or "")
        thinking.append(part.get("thinking") or "")
        calls.extend(part.get("tool_calls") or ())
        logprobs.extend(line.get("logprobs") or ())
    out = {name: final[name] for name in _NATIVE_HEAD if name in final}
    extra: dict[str, Any] = {}
    if "".join(thinking):
        extra["thinking"] = "".join(thinking)
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text), **extra}
        if calls:
            message["tool_calls"] = calls
        out["message"] = message
    else:
        out["response"] = "".join(text)
        out.update(extra)
    skip = {*_NATIVE_HEAD, "message", "response", "thinking", "logprobs"}
    out.update((k, v) for k, v in final.items() if k not in skip)
    if logprobs:
        out["logprobs"] = logprobs
    return out


def split_native(chat: bool, whole: dict[str, Any]) -> list[dict[str, Any]]:
    """The one object of ``"stream": false`` -> the NDJSON lines Ollama would have streamed."""
    head = {name: whole[name] for name in _NATIVE_HEAD if name in whole}
    source = whole.get("message") or {} if chat else whole
    text = source.get("content" if chat else "response") or ""
    thinking = source.get("thinking") or ""
    calls = source.get("tool_calls") or [] if chat else []
    logprobs = whole.get("logprobs")

    def line(content: str, **more: Any) -> dict[str, Any]:
        if chat:
            message = {"role": "assistant", "content": content, **more}
            return {**head, "message": message, "done": False}
        return {**head, "response": content, **more, "done": False}

    lines = []
    if thinking:
        lines.append(line("", thinking=thinking))
    if text or not (thinking or calls):
        content = line(text)
        if logprobs:
            content["logprobs"] = logprobs
        lines.append(content)
    if calls:
        lines.append(line("", tool_calls=calls))
    skip = {*_NATIVE_HEAD, "message", "response", "thinking", "logprobs"}
    final = dict(head)
    if chat:
        final["message"] = {"role": "assistant", "content": ""}
    else:
        final["response"] = ""
    final.update((k, v) for k, v in whole.items() if k not in skip)
    lines.append(final)
    return lines


# ---- OpenAI: JSON <-> SSE ---------------------------------------------------------------------


def _openai(kind: Kind, answer: CachedAnswer, shape: Shape, include_usage: bool) -> bytes:
    chat = kind.name == "openai_chat"
    if answer.shape == "sse" and shape == "json":
        return orjson.dumps(join_openai(chat, [orjson.loads(e) for e in _events(answer.body)]))
    if answer.shape == "sse":
        # Same shape: the stored events go out as they are, less a usage chunk not asked for.
        events = _events(answer.body)
        usage = next((i for i, e in enumerate(events) if _is_usage(e)), None)
        if include_usage and usage is None:
            raise CannotReplay("stored stream has no usage")
        if include_usage or usage is None:
            return answer.body
        kept = events[:usage] + events[usage + 1 :]
        return b"".join(b"data: " + e + b"\n\n" for e in kept) + _DONE_EVENT
    if answer.shape == "json" and shape == "sse":
        chunks = split_openai(chat, orjson.loads(answer.body), include_usage)
        return b"".join(_event(c) for c in chunks) + _DONE_EVENT
    raise CannotReplay(f"{kind.name} answers are not sent as {shape}")


def _events(body: bytes) -> list[bytes]:
    """The data of every event but ``[DONE]``."""
    events = []
    for event in body.split(b"\n\n"):
        data = event.strip().removeprefix(b"data: ")
        if data and data != b"[DONE]":
            events.append(data)
    return events


def _is_usage(event: bytes) -> bool:
    if b'"usage"' not in event:
        return False
    chunk = orjson.loads(event)
    return isinstance(chunk, dict) and "usage" in chunk and not chunk.get("choices")


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def join_openai(chat: bool, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """SSE chunks -> the completion object of ``"stream": false``."""
    usage = next((c["usage"] for c in chunks if "usage" in c and not c.get("choices")), None)
    if usage is None:
        raise CannotReplay("stored stream has no usage")
    first = chunks[0]
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[Any] = []
    logprobs: list[Any] = []
    finish = None
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                raise CannotReplay("more than one choice")
            part = choice.get("delta") or {} if chat else choice
            text.append(part.get("content" if chat else "text") or "")
            reasoning.append(part.get("reasoning") or "")
            calls.extend(part.get("tool_calls") or ())
            logprobs.extend((choice.get("logprobs") or {}).get("content") or ())
            finish = choice.get("finish_reason") or finish
    choice_out: dict[str, Any]
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
        if "".join(reasoning):
            message["reasoning"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = calls
        choice_out = {"index": 0, "message": message, "finish_reason": finish}
    else:
        choice_out = {"text": "".join(text), "index": 0, "finish_reason": finish}
    if logprobs:
        choice_out["logprobs"] = {"content": logprobs}
    out = _envelope(first, "chat.completion" if chat else "text_completion")
    out["choices"] = [choice_out]
    out["usage"] = usage
    return out


def split_openai(chat: bool, whole: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion object -> the SSE chunks Ollama would have streamed (without [DONE])."""
    choice = whole["choices"][0]
    envelope = _envelope(whole, "chat.completion.chunk" if chat else "text_completion")
    logprobs = choice.get("logprobs")
    if chat:
        message = choice.get("message") or {}
        delta = {"role": "assistant", "content": message.get("content") or ""}
        for name in ("reasoning", "tool_calls"):
            if message.get(name):
                delta[name] = message[name]
        body: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        last: dict[str, Any] = {"index": 0, "delta": {"role": "assistant", "content": ""}}
    else:
        body = {"text": choice.get("text") or "", "index": 0, "finish_reason": None}
        last = {"text": "", "index": 0}
    if logprobs:
        body["logprobs"] = logprobs
    last["finish_reason"] = choice.get("finish_reason")
    chunks = [{**envelope, "choices": [body]}, {**envelope, "choices": [last]}]
    if include_usage:
        if "usage" not in whole:
            raise CannotReplay("stored answer has no usage")
        chunks.append({**envelope, "choices": [], "usage": whole["usage"]})
    return chunks


def _envelope(source: dict[str, Any], object_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": source.get("id"), "object": object_name}
    for name in ("created", "model", "system_fingerprint"):
        if name in source:
            out[name] = source[name]
    return out
