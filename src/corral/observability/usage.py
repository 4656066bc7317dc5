"""Token counts from the end of an answer: Ollama's final chunk, or OpenAI's ``usage`` object.

Only the last bytes of an answer are looked at, with regular expressions rather than a JSON
parse of the whole body: the counts are in the final NDJSON line (``prompt_eval_count``,
``eval_count``, ``eval_duration``) or in a ``usage`` object (``prompt_tokens``,
``completion_tokens``).

>>> final_counts(b'{"prompt_eval_count":26,"eval_count":298,"eval_duration":4799921000}')
Counts(prompt_tokens=26, generated_tokens=298, tokens_per_second=62.0843..., load_seconds=None)
"""

from __future__ import annotations

import re
from typing import NamedTuple

# One pass over the tail finds every count we use.
_COUNTS = re.compile(
    rb'"(prompt_eval_count|prompt_tokens|input_tokens|eval_count|completion_tokens|output_tokens'
    rb'|eval_duration|load_duration)":\s*(\d+)'
)
_PROMPT_KEYS = (b"prompt_eval_count", b"prompt_tokens", b"input_tokens")
_GENERATED_KEYS = (b"eval_count", b"completion_tokens", b"output_tokens")


class Counts(NamedTuple):
    prompt_tokens: int | None
    generated_tokens: int | None
    tokens_per_second: float | None
    load_seconds: float | None = None


def final_counts(tail: bytes) -> Counts:
    found = dict(_COUNTS.findall(tail))
    prompt = next((int(found[k]) for k in _PROMPT_KEYS if k in found), None)
    generated = next((int(found[k]) for k in _GENERATED_KEYS if k in found), None)
    eval_ns = int(found.get(b"eval_duration", 0))
    rate = generated / (eval_ns / 1e9) if generated and eval_ns > 0 else None
    load = found.get(b"load_duration")
    return Counts(prompt, generated, rate, int(load) / 1e9 if load is not None else None)
