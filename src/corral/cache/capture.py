"""Whether an answer may be kept: complete, error-free, and ended for a good reason.

An answer is kept only when it is whole. Ollama ends a failed stream with an ``{"error": ...}``
line after a ``200``; a stream cut short has no final ``"done": true`` line (or, on ``/v1``, no
``data: [DONE]``); a generation that stopped for another reason than ``stop`` or ``length``
(``load``, ``unload``: an empty prompt only loads the model) answered another question. Each of
these is answered to its client as it came, and never replayed.

The check parses only what it must: the final line of a stream (and each line's first bytes,
for error lines), the whole object of a single JSON answer.

Example::

    why_not_storable(KINDS["/api/chat"], "ndjson", body)   # None: keep it
    why_not_storable(KINDS["/api/chat"], "ndjson", body_with_error)   # "error line"
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.cache.policy import Kind, Shape

GOOD_REASONS = frozenset({"stop", "length"})
# OpenAI's name for Ollama's "stop" with tool calls.
GOOD_FINISH = GOOD_REASONS | {"tool_calls"}
SSE_DONE = b"data: [DONE]"


def why_not_storable(kind: Kind, shape: Shape, body: bytes) -> str | None:
    """None when ``body`` is a whole, good answer of ``kind`` in ``shape``; else why not."""
    try:
        if shape == "ndjson":
            return _check_ndjson(body)
        if shape == "sse":
            return _check_sse(body)
        return _check_json(kind, body)
    except orjson.JSONDecodeError:
        return "not JSON"


def _check_ndjson(body: bytes) -> str | None:
    lines = body.splitlines()
    if not lines:
        return "empty"
    if any(line.startswith(b'{"error"') for line in lines):
        return "error line"
    final = orjson.loads(lines[-1])
    if not isinstance(final, dict) or final.get("done") is not True:
        return "cut off"
    return _reason(final.get("done_reason"), GOOD_REASONS)


def _check_sse(body: bytes) -> str | None:
    events = [e for e in body.split(b"\n\n") if e.strip()]
    if not events or events[-1].strip() != SSE_DONE:
        return "cut off"
    if any(e.startswith(b'data: {"error"') for e in events):
        return "error event"
    for event in reversed(events[:-1]):
        chunk = orjson.loads(event.removeprefix(b"data: "))
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                return _reason(choice["finish_reason"], GOOD_FINISH)
    return "no finish_reason"


def _check_json(kind: Kind, body: bytes) -> str | None:
    answer = orjson.loads(body)
    if not isinstance(answer, dict):
        return "not an object"
    if "error" in answer:
        return "error"
    if kind.embedding:
        return None if _has_vectors(answer) else "no embeddings"
    if kind.openai:
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return "no choices"
        return _reason(choices[0].get("finish_reason"), GOOD_FINISH)
    if answer.get("done") is not True:
        return "not done"
    return _reason(answer.get("done_reason"), GOOD_REASONS)


def _has_vectors(answer: dict[str, Any]) -> bool:
    return any(key in answer for key in ("embeddings", "embedding", "data"))


def _reason(value: object, good: frozenset[str]) -> str | None:
    return None if value in good else f"ended with {value!r}"
