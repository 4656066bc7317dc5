"""Token counts from the end of an answer: Ollama's final chunk, or OpenAI's ``usage`` object.

Only the last bytes of an answer are looked at, with one regular expression rather than a JSON
parse of the whole body: the counts are in the final NDJSON line (``prompt_eval_count``,
``eval_count``, ``eval_duration``) or in a ``usage`` object (``prompt_tokens``,
``completion_tokens``).

>>> final_counts(b'{"prompt_eval_count":26,"eval_count":298,"eval_duration":4799921000}')
Counts(prompt_tokens=26, generated_tokens=298, tokens_per_second=62.0843..., load_seconds=None)
"""

from __future__ import annotations

import re
from typing import NamedTuple

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
    found = dict(_COUNT.findall(tail))
    get = found.get
    # Ollama's names first, then OpenAI's (``usage``), then Anthropic's (``/v1/messages``).
    prompt = _int(get(b"prompt_eval_count") or get(b"prompt_tokens") or get(b"input_tokens"))
    generated = _int(get(b"eval_count") or get(b"completion_tokens") or get(b"output_tokens"))
    eval_ns = _int(get(b"eval_duration")) or 0
    rate = generated / (eval_ns / 1e9) if generated and eval_ns > 0 else None
    load = _int(get(b"load_duration"))
    return Counts(prompt, generated, rate, load / 1e9 if load is not None else None)
