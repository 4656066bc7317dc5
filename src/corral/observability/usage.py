"""Token counts from the end of an answer: Ollama's final chunk, or OpenAI's ``usage`` object.

Only the last bytes of an answer are looked at, with regular expressions rather than a JSON
parse of the whole body: the counts are in the final NDJSON line (``prompt_eval_count``,
``eval_count``, ``eval_duration``) or in a ``usage`` object (``prompt_tokens``,
``completion_tokens``).

>>> final_counts(b'{"prompt_eval_count":26,"eval_count":298,"eval_duration":4799921000}')
Counts(prompt_tokens=26, generated_tokens=298, tokens_per_second=62.0843...)
"""

from __future__ import annotations

import re
from typing import NamedTuple

_PROMPT = re.compile(rb'"(?:prompt_eval_count|prompt_tokens|input_tokens)":\s*(\d+)')
_GENERATED = re.compile(rb'"(?:eval_count|completion_tokens|output_tokens)":\s*(\d+)')
_EVAL_NS = re.compile(rb'"eval_duration":\s*(\d+)')


class Counts(NamedTuple):
    prompt_tokens: int | None
    generated_tokens: int | None
    tokens_per_second: float | None


def final_counts(tail: bytes) -> Counts:
    prompt = _PROMPT.search(tail)
    generated = _GENERATED.search(tail)
    eval_ns = _EVAL_NS.search(tail)
    n_generated = int(generated.group(1)) if generated else None
    rate = None
    if n_generated and eval_ns and int(eval_ns.group(1)) > 0:
        rate = n_generated / (int(eval_ns.group(1)) / 1e9)
    return Counts(int(prompt.group(1)) if prompt else None, n_generated, rate)
