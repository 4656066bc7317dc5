"""Token counts from the end of an answer: Ollama's final chunk, or OpenAI's ``usage`` object.

Only the last bytes of an answer are looked at, with regular expressions rather than a JSON
parse of the whole body: the counts are in the final NDJSON line (``prompt_eval_count``,
``eval_count``, ``eval_duration``) or in a ``usage`` object (``prompt_tokens``,
``completion_tokens``).

>>> final_counts(b'{"prompt_eval_count":26,"eval_count":298,"eval_duration":4799921000}')
Counts(prompt_tokens=26, generated_tokens=298, tokens_per_second=62.0843..., load_seconds=None)
"""

from __future__ import annotations

from typing import NamedTuple

_PROMPT_KEYS = (b'"prompt_eval_count":', b'"prompt_tokens":', b'"input_tokens":')
_GENERATED_KEYS = (b'"eval_count":', b'"completion_tokens":', b'"output_tokens":')
_DIGITS = frozenset(b"0123456789")


def _number(tail: bytes, key: bytes) -> int | None:
    """The integer after ``key`` in ``tail``: a find and a short scan, far cheaper than a
    regular expression, on every answer."""
    at = tail.rfind(key)
    if at < 0:
        return None
    start = at + len(key)
    while start < len(tail) and tail[start] == 0x20:
        start += 1
    end = start
    while end < len(tail) and tail[end] in _DIGITS:
        end += 1
    return int(tail[start:end]) if end > start else None


def _first(tail: bytes, keys: tuple[bytes, ...]) -> int | None:
    for key in keys:
        value = _number(tail, key)
        if value is not None:
            return value
    return None


class Counts(NamedTuple):
    prompt_tokens: int | None
    generated_tokens: int | None
    tokens_per_second: float | None
    load_seconds: float | None = None


def final_counts(tail: bytes) -> Counts:
    prompt = _first(tail, _PROMPT_KEYS)
    generated = _first(tail, _GENERATED_KEYS)
    eval_ns = _number(tail, b'"eval_duration":') or 0
    rate = generated / (eval_ns / 1e9) if generated and eval_ns > 0 else None
    load = _number(tail, b'"load_duration":')
    return Counts(prompt, generated, rate, load / 1e9 if load is not None else None)
