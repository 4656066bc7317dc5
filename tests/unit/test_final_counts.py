"""Token counts read off the end of an answer, for every API surface corral relays."""

from __future__ import annotations

import pytest

from corral.observability.usage import Counts, final_counts


@pytest.mark.parametrize(
    ("tail", "prompt", "generated"),
    [
        # Ollama's final chunk: "eval_count" must not be read inside "prompt_eval_count"
        (b'{"done":true,"prompt_eval_count":26,"prompt_eval_duration":9,"eval_count":298}', 26, 298),
        (b'{"eval_count":5,"done":true,"prompt_eval_count":7}', 7, 5),
        # OpenAI's usage object, with the spaces some servers put after a colon
        (b'data: {"usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}}', 12, 30),
        # Anthropic's /v1/messages
        (b'{"usage":{"input_tokens":3,"output_tokens":4}}', 3, 4),
        # whole /v1 answers, read as JSON
        (b'{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}', 5, 6),
        (b'{"id":"c","usage":{"prompt_tokens":5,"completion_tokens":null}}', 5, None),
        (b'{"id":"c","usage":{}}', None, None),
        # a streamed answer: an earlier line's numbers give way to the final chunk's
        (b'{"eval_count":1}\n{"done":true,"prompt_eval_count":2,"eval_count":9}\n', 2, 9),
        (b'{"done":true}', None, None),
        # a final object cut short, or not an object: read by the pattern all the same
        (b'{"done":true,"prompt_eval_count":2,"eval_count":9', 2, 9),
        (b'{"eval_count":4}\n{"done":tr', None, 4),
        (b'[{"eval_count":4}]', None, 4),
        # a count that is not a number is no count
        (b'{"done":true,"prompt_eval_count":null,"eval_count":9}', None, 9),
        # one of the two is enough
        (b'{"done":true,"eval_count":9}\n', None, 9),
        (b'{"message":{"content":"\\"eval_count\\": 3"}}', None, None),
    ],
)
def test_counts_on_every_surface(tail: bytes, prompt: int | None, generated: int | None) -> None:
    counts = final_counts(tail)
    assert (counts.prompt_tokens, counts.generated_tokens) == (prompt, generated)


def test_rate_and_load_time_come_from_ollamas_durations() -> None:
    tail = b'{"load_duration":2500000000,"eval_count":298,"eval_duration":4799921000}'
    counts = final_counts(tail)
    assert counts.tokens_per_second == pytest.approx(298 / 4.799921)
    assert counts.load_seconds == 2.5
    assert final_counts(b'{"eval_count":3,"eval_duration":0}') == Counts(None, 3, None, None)
