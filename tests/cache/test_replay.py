"""A stored answer replays in the shape asked for, as Ollama would have sent it.

Each case asks the simulator (which answers like Ollama) the same question streamed and not
streamed, keeps one, and replays it in the other shape: the result must be Ollama's own answer
in that shape, but for the fields that differ between two asks (timestamps, durations, ids).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.cache.entry import CachedAnswer
from corral.cache.policy import KINDS
from corral.cache.replay import CannotReplay, replay
from tests.cache.answers import EMBEDDINGS, GENERATIONS, ask, events, lines, simulator, stable

USAGE = {"stream_options": {"include_usage": True}}


async def both_shapes(path: str, body: dict[str, Any]) -> tuple[CachedAnswer, CachedAnswer]:
    kind = KINDS[path]
    extra = USAGE if kind.openai else {}
    sim = simulator()
    whole = await ask(sim, path, {**body, "stream": False})
    streamed = await ask(sim, path, {**body, **extra, "stream": True})
    return (
        CachedAnswer("json", *whole),
        CachedAnswer(kind.shape(True), *streamed),
    )


def parsed(shape: str, body: bytes) -> Any:
    if shape == "json":
        return orjson.loads(body)
    return lines(body) if shape == "ndjson" else events(body)


@pytest.mark.parametrize(("path", "body"), GENERATIONS)
async def test_a_stored_stream_replays_as_the_json_ollama_sends(
    path: str, body: dict[str, Any]
) -> None:
    whole, streamed = await both_shapes(path, body)
    content_type, replayed = replay(KINDS[path], streamed, "json")
    assert content_type == b"application/json; charset=utf-8"
    assert stable(orjson.loads(replayed)) == stable(orjson.loads(whole.body))
    # Key order as Ollama writes it (clients that print raw JSON see the same thing).
    assert list(orjson.loads(replayed)) == list(orjson.loads(whole.body))


@pytest.mark.parametrize(("path", "body"), GENERATIONS)
async def test_a_stored_json_answer_replays_as_the_stream_ollama_sends(
    path: str, body: dict[str, Any]
) -> None:
    kind = KINDS[path]
    whole, streamed = await both_shapes(path, body)
    shape = kind.shape(True)
    content_type, replayed = replay(kind, whole, shape, include_usage=True)
    assert content_type == streamed.content_type
    got, expected = parsed(shape, replayed), parsed(shape, streamed.body)
    # The final chunk (and usage chunk, and [DONE]) are Ollama's, original counts included.
    tail = 3 if kind.openai else 1
    assert stable(got[-tail:]) == stable(expected[-tail:])
    # The text is the same, in fewer chunks; and joining it back gives the stored answer.
    _, rejoined = replay(kind, CachedAnswer(shape, content_type, replayed), "json")
    assert stable(orjson.loads(rejoined)) == stable(orjson.loads(whole.body))


@pytest.mark.parametrize(("path", "body"), GENERATIONS + EMBEDDINGS)
async def test_the_same_shape_replays_byte_for_byte(path: str, body: dict[str, Any]) -> None:
    kind = KINDS[path]
    whole, streamed = await both_shapes(path, body)
    assert replay(kind, whole, "json") == (whole.content_type, whole.body)
    if not kind.embedding:
        include = kind.openai
        assert replay(kind, streamed, streamed.shape, include_usage=include) == (
            streamed.content_type,
            streamed.body,
        )


async def test_a_usage_chunk_not_asked_for_is_left_out() -> None:
    path, body = GENERATIONS[9]
    kind = KINDS[path]
    _, with_usage = await both_shapes(path, body)
    _, plain = await ask(simulator(), path, {**body, "stream": True})
    _, replayed = replay(kind, with_usage, "sse", include_usage=False)
    assert stable(events(replayed)) == stable(events(plain))


async def test_a_stream_stored_without_usage_cannot_answer_what_needs_it() -> None:
    path, body = GENERATIONS[9]
    kind = KINDS[path]
    content_type, plain = await ask(simulator(), path, {**body, "stream": True})
    stored = CachedAnswer("sse", content_type, plain)
    with pytest.raises(CannotReplay):
        replay(kind, stored, "json")
    with pytest.raises(CannotReplay):
        replay(kind, stored, "sse", include_usage=True)
    assert replay(kind, stored, "sse")[1] == plain


def test_an_answer_from_another_format_is_not_replayed() -> None:
    stored = CachedAnswer("ndjson", b"application/x-ndjson", b"{not json\n")
    with pytest.raises(CannotReplay):
        replay(KINDS["/api/chat"], stored, "json")


def test_stored_answers_encode_and_decode() -> None:
    answer = CachedAnswer("sse", b"text/event-stream", b"data: {}\n\n\x00\xff")
    assert CachedAnswer.decode(answer.encode()) == answer
    assert CachedAnswer.decode(b"corral-cache/9 json x\n{}") is None
    assert CachedAnswer.decode(b"garbage") is None
