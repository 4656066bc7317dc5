"""The official ``openai`` client, pointed at corral's ``/v1``, works as against Ollama.

Answers are compared with the same request made directly to the simulator, after
:func:`normalise`; errors must arrive as the client's own exception classes with OpenAI's error
object, whether the simulator or corral itself produced them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.integration.test_gateway_support import normalise

MODEL = "llama3.2"
MESSAGES: list[Any] = [{"role": "user", "content": "Why is the sky blue?"}]
ERROR_KEYS = {"message", "type", "param", "code"}


@dataclass
class Pair:
    sim: Simulator
    direct: openai.AsyncOpenAI
    via: openai.AsyncOpenAI


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=30.0)


@pytest.fixture
async def pair(start_sim: StartSim) -> AsyncIterator[Pair]:
    sim = await start_sim()
    async with running_corral([sim.url]) as (app, _):
        direct, via = client(sim.url), client(app.url)
        try:
            yield Pair(sim, direct, via)
        finally:
            await direct.close()
            await via.close()


async def test_chat_completion(pair: Pair) -> None:
    expected = await pair.direct.chat.completions.create(model=MODEL, messages=MESSAGES)
    got = await pair.via.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert normalise(got) == normalise(expected)
    assert got.id.startswith("chatcmpl-")
    assert got.object == "chat.completion"
    assert got.choices[0].message.content
    assert got.choices[0].finish_reason == "stop"
    assert got.usage is not None
    assert got.usage.completion_tokens == 24


async def test_chat_completion_with_max_tokens(pair: Pair) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 5, "seed": 3}
    expected = await pair.direct.chat.completions.create(**kwargs)
    got = await pair.via.chat.completions.create(**kwargs)
    assert normalise(got) == normalise(expected)
    assert got.choices[0].finish_reason == "length"
    assert got.usage is not None and got.usage.completion_tokens == 5


async def test_chat_completion_stream_with_usage(pair: Pair) -> None:
    async def run(c: openai.AsyncOpenAI) -> list[Any]:
        stream = await c.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    expected = await run(pair.direct)
    got = await run(pair.via)
    assert normalise(got) == normalise(expected)
    assert len(got) > 3
    assert len({c.id for c in got}) == 1
    usage_chunk = got[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 24
    assert usage_chunk.usage.total_tokens == (
        usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens
    )
    assert all(c.usage is None for c in got[:-1])
    assert got[-2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in got[:-1])
    whole = await pair.via.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert text == whole.choices[0].message.content


async def test_completion(pair: Pair) -> None:
    expected = await pair.direct.completions.create(model=MODEL, prompt="Once upon a time")
    got = await pair.via.completions.create(model=MODEL, prompt="Once upon a time")
    assert normalise(got) == normalise(expected)
    assert got.id.startswith("cmpl-")
    assert got.choices[0].text


async def test_completion_stream(pair: Pair) -> None:
    async def run(c: openai.AsyncOpenAI) -> list[Any]:
        stream = await c.completions.create(model=MODEL, prompt="Once", stream=True)
        return [chunk async for chunk in stream]

    expected = await run(pair.direct)
    got = await run(pair.via)
    assert normalise(got) == normalise(expected)
    assert got[-1].choices[0].finish_reason == "stop"


async def test_embeddings(pair: Pair) -> None:
    inputs = ["the sky is blue", "red"]
    expected = await pair.direct.embeddings.create(model="nomic-embed-text", input=inputs)
    got = await pair.via.embeddings.create(model="nomic-embed-text", input=inputs)
    assert normalise(got) == normalise(expected)
    assert [d.index for d in got.data] == [0, 1]
    assert got.data[0].embedding == expected.data[0].embedding
    assert got.usage.prompt_tokens == 5


async def test_models_list(pair: Pair) -> None:
    expected = await pair.direct.models.list()
    got = await pair.via.models.list()
    assert [m.model_dump() for m in got.data] == [m.model_dump() for m in expected.data]
    assert {m.id for m in got.data} == {
        "llama3.2:latest",
        "qwen2.5:0.5b",
        "nomic-embed-text:latest",
    }


@pytest.mark.parametrize("name", ["llama3.2", "llama3.2:latest", "qwen2.5:0.5b"])
async def test_models_retrieve(pair: Pair, name: str) -> None:
    expected = await pair.direct.models.retrieve(name)
    got = await pair.via.models.retrieve(name)
    assert got.model_dump() == expected.model_dump()
    assert got.id == name
    assert got.owned_by == "library"


# ---- errors -----------------------------------------------------------------------------------


def error_object(err: openai.APIStatusError) -> dict[str, Any]:
    body = err.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


async def test_unknown_model_is_not_found(pair: Pair) -> None:
    errors = []
    for c in (pair.direct, pair.via):
        with pytest.raises(openai.NotFoundError) as info:
            await c.chat.completions.create(model="no-such-model", messages=MESSAGES)
        errors.append(info.value)
    expected, got = errors
    assert got.status_code == 404
    assert error_object(got) == error_object(expected)
    assert "no-such-model" in error_object(got)["message"]


async def test_retrieve_unknown_model_is_not_found(pair: Pair) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await pair.via.models.retrieve("no-such-model")
    assert info.value.status_code == 404
    error_object(info.value)


async def test_unknown_model_in_a_stream_is_not_found(pair: Pair) -> None:
    with pytest.raises(openai.NotFoundError):
        await pair.via.chat.completions.create(
            model="no-such-model", messages=MESSAGES, stream=True
        )


async def test_missing_model_is_a_bad_request_answered_by_corral(pair: Pair) -> None:
    before = pair.sim.stats.requests["/v1/chat/completions"]
    with pytest.raises(openai.BadRequestError) as info:
        await pair.via.post(
            "/chat/completions", body={"messages": MESSAGES}, cast_to=httpx.Response
        )
    assert info.value.status_code == 400
    error = error_object(info.value)
    assert error["type"] == "invalid_request_error"
    assert "model" in error["message"]
    assert pair.sim.stats.requests["/v1/chat/completions"] == before


async def test_empty_model_is_a_bad_request(pair: Pair) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await pair.via.chat.completions.create(model="", messages=MESSAGES)
    assert info.value.status_code == 400
    assert error_object(info.value)["type"] == "invalid_request_error"


async def test_simulator_validation_errors_are_relayed(pair: Pair) -> None:
    errors = []
    for c in (pair.direct, pair.via):
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(model=MODEL, messages=[])
        errors.append(info.value)
    expected, got = errors
    assert error_object(got) == error_object(expected)


async def test_server_error_is_an_internal_server_error(pair: Pair) -> None:
    pair.sim.faults.update({"status_500": True, "times": 1})
    with pytest.raises(openai.InternalServerError) as info:
        await pair.via.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == 500
    assert "llama runner process has terminated" in error_object(info.value)["message"]


async def test_error_event_mid_stream_raises_api_error(pair: Pair) -> None:
    pair.sim.faults.update({"error_after_chunks": 2, "times": 1})
    stream = await pair.via.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            chunks.append(chunk)
    assert len(chunks) == 2
    assert "an error was encountered while running the model" in info.value.message
