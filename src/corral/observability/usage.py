"""Token counts from the end of an answer: Ollama's final chunk, or OpenAI's ``usage`` object.

Only the last bytes of an answer are looked at. Ollama's native answers end with a JSON object
that holds the counts (``prompt_eval_count``, ``eval_count``, ``eval_duration``): the last line of
a stream, or the whole answer. That object is parsed as JSON, the cheapest way to read it. Any
other ending (a ``usage`` object with ``prompt_tokens`` and ``completion_tokens`` on ``/v1``, an
SSE stream, an answer cut short) is searched with one regular expression instead.

>>> final_counts(b'{"prompt_eval_count":26,"eval_count":298,"eval_duration":4799921000}')
Counts(prompt_tokens=26, generated_tokens=298, tokens_per_second=62.0843..., load_seconds=None)
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

# Every count in one pass of one compiled pattern; where a key occurs twice, the last one wins
# (the final chunk comes last). The quote before each name keeps "eval_count" from matching
# inside "prompt_eval_count".
_COUNT = re.compile(
    rb'"(prompt_eval_count|eval_count|eval_duration|load_duration|prompt_tokens'
    rb'|completion_tokens|input_tokens|output_tokens)" *: *(\d+)'
)


class Counts(NamedTuple):
    prompt_tokens: int | None
    generated_tokens: int | None
    tokens_per_second: float | None
    load_seconds: float | None = None


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def final_counts(tail: bytes) -> Counts:
    # Ollama's native answers, the common case: the last line is the final JSON object.
    start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    if tail.startswith(b"{", start):
        try:
            last = orjson.loads(tail[start:])
        except orjson.JSONDecodeError:
            last = None
        if type(last) is dict:
            counts = _native_counts(last)
            if counts is not None:
                return counts
    return _scanned_counts(tail)


def _native_counts(last: dict[str, Any]) -> Counts | None:
    """The counts in an answer's final object: Ollama's, or a ``usage`` object's (an OpenAI or
    Anthropic answer in one piece); None when it has none. A count is an int, not a bool:
    checked in line, as this runs at the end of every answer."""
    get = last.get
    prompt, generated = get("prompt_eval_count"), get("eval_count")
    prompt = prompt if type(prompt) is int else None
    generated = generated if type(generated) is int else None
    if prompt is None and generated is None:
        usage = get("usage")
        return _usage_counts(usage) if type(usage) is dict else None
    eval_ns, load = get("eval_duration"), get("load_duration")
    rate = None
    if generated and type(eval_ns) is int and eval_ns > 0:
        rate = generated / (eval_ns / 1e9)
    return Counts(prompt, generated, rate, load / 1e9 if type(load) is int else None)


def _usage_counts(usage: dict[str, Any]) -> Counts | None:
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    generated = usage.get("completion_tokens", usage.get("output_tokens"))
    prompt = prompt if type(prompt) is int else None
    generated = generated if type(generated) is int else None
    if prompt is None and generated is None:
        return None
    return Counts(prompt, generated, None)


def _scanned_counts(tail: bytes) -> Counts:
    found = dict(_COUNT.findall(tail))
    get = found.get
    # Ollama's names first, then OpenAI's (``usage``), then Anthropic's (``/v1/messages``).
    prompt = _int(get(b"prompt_eval_count") or get(b"prompt_tokens") or get(b"input_tokens"))
    generated = _int(get(b"eval_count") or get(b"completion_tokens") or get(b"output_tokens"))
    eval_ns = _int(get(b"eval_duration")) or 0
    rate = generated / (eval_ns / 1e9) if generated and eval_ns > 0 else None
    load = _int(get(b"load_duration"))
    return Counts(prompt, generated, rate, load / 1e9 if load is not None else None)
