"""Only whole, error-free answers that ended with stop or length are kept."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.cache.capture import why_not_storable
from corral.cache.policy import KINDS
from tests.cache.answers import EMBEDDINGS, GENERATIONS, ask, simulator


@pytest.mark.parametrize(("path", "body"), GENERATIONS + EMBEDDINGS)
@pytest.mark.parametrize("stream", [False, True])
async def test_whole_answers_of_every_kind_are_kept(
    path: str, body: dict[str, Any], stream: bool
) -> None:
    kind = KINDS[path]
    _, answer = await ask(simulator(), path, {**body, "stream": stream})
    assert why_not_storable(kind, kind.shape(stream), answer) is None


async def stream_of(path: str, body: dict[str, Any]) -> bytes:
    return (await ask(simulator(), path, {**body, "stream": True}))[1]


async def test_a_stream_ending_with_an_error_line_is_not_kept() -> None:
    path, body = GENERATIONS[5]
    whole = await stream_of(path, body)
    errored = b"".join(whole.splitlines(keepends=True)[:3]) + b'{"error":"runner crashed"}\n'
    assert why_not_storable(KINDS[path], "ndjson", errored) == "error line"


async def test_a_cut_off_stream_is_not_kept() -> None:
    path, body = GENERATIONS[0]
    cut = b"".join((await stream_of(path, body)).splitlines(keepends=True)[:-1])
    assert why_not_storable(KINDS[path], "ndjson", cut) == "cut off"
    assert why_not_storable(KINDS[path], "ndjson", b"") == "empty"


async def test_a_cut_off_or_failed_sse_stream_is_not_kept() -> None:
    path, body = GENERATIONS[9]
    whole = await stream_of(path, body)
    kind = KINDS[path]
    assert why_not_storable(kind, "sse", whole.removesuffix(b"data: [DONE]\n\n")) == "cut off"
    failed = whole.split(b"\n\n")[0] + b'\n\ndata: {"error":{"message":"x"}}\n\ndata: [DONE]\n\n'
    assert why_not_storable(kind, "sse", failed) == "error event"


@pytest.mark.parametrize("reason", ["load", "unload", None])
def test_a_generation_that_did_not_stop_or_reach_its_length_is_not_kept(
    reason: str | None,
) -> None:
    answer = {"model": "m", "response": "", "done": True, "done_reason": reason}
    assert why_not_storable(KINDS["/api/generate"], "json", orjson.dumps(answer)) is not None
    line = orjson.dumps(answer) + b"\n"
    assert why_not_storable(KINDS["/api/generate"], "ndjson", line) is not None


def test_an_unfinished_or_errored_json_answer_is_not_kept() -> None:
    chat = KINDS["/api/chat"]
    assert why_not_storable(chat, "json", b'{"error":"boom"}') == "error"
    assert why_not_storable(chat, "json", b'{"done":false}') == "not done"
    assert why_not_storable(chat, "json", b'{"done":true,') == "not JSON"
    assert why_not_storable(chat, "json", b"[1]") == "not an object"
    openai = KINDS["/v1/chat/completions"]
    cut = b'{"choices":[{"index":0,"finish_reason":null}]}'
    assert why_not_storable(openai, "json", cut) == "ended with None"
    assert why_not_storable(KINDS["/api/embed"], "json", b'{"model":"m"}') == "no embeddings"
