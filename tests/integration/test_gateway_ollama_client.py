"""The official ``ollama`` client through corral gets what it gets from Ollama itself.

Every request is made twice, directly to a simulator and through corral, and the answers are
compared after :func:`normalise` (only timestamps, durations and per-call ids may differ).
Requests that change the simulator's state (pull, copy, delete) go to two identical simulators,
one of them behind corral, so both sides start from the same catalogue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import ollama
import orjson
import pytest

from corral.http.messages import Request, Response
from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.integration.test_gateway_support import normalise

TIMEOUT = 30.0
CHAT_MODEL = "llama3.2"
EMBED_MODEL = "nomic-embed-text"
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


@dataclass
class Pair:
    """The same simulator reached directly and through corral."""

    sim: Simulator
    direct: ollama.AsyncClient
    via: ollama.AsyncClient
    direct_url: str
    via_url: str


@pytest.fixture
async def pair(start_sim: StartSim) -> AsyncIterator[Pair]:
    sim = await start_sim()
    async with running_corral([sim.url]) as (app, _):
        direct = ollama.AsyncClient(host=sim.url, timeout=TIMEOUT)
        via = ollama.AsyncClient(host=app.url, timeout=TIMEOUT)
        try:
            yield Pair(sim, direct, via, sim.url, app.url)
        finally:
            await direct.close()
            await via.close()


@pytest.fixture
async def twins(start_sim: StartSim) -> AsyncIterator[Pair]:
    """Two identical simulators: one reached directly, the other only through corral."""
    direct_sim = await start_sim()
    behind = await start_sim()
    async with running_corral([behind.url]) as (app, _):
        direct = ollama.AsyncClient(host=direct_sim.url, timeout=TIMEOUT)
        via = ollama.AsyncClient(host=app.url, timeout=TIMEOUT)
        try:
            yield Pair(behind, direct, via, direct_sim.url, app.url)
        finally:
            await direct.close()
            await via.close()


async def collect(stream: Any) -> list[Any]:
    return [part async for part in stream]


# ---- generation -------------------------------------------------------------------------------


async def test_chat(pair: Pair) -> None:
    expected = await pair.direct.chat(CHAT_MODEL, messages=MESSAGES)
    got = await pair.via.chat(CHAT_MODEL, messages=MESSAGES)
    assert normalise(got) == normalise(expected)
    assert got.message.content
    assert got.done is True
    assert got.done_reason == "stop"
    assert got.eval_count and got.prompt_eval_count
    assert got.created_at and got.total_duration


async def test_chat_with_options_and_json_format(pair: Pair) -> None:
    kwargs: dict[str, Any] = {
        "messages": MESSAGES,
        "format": "json",
        "options": {"seed": 7, "num_predict": 200},
    }
    expected = await pair.direct.chat(CHAT_MODEL, **kwargs)
    got = await pair.via.chat(CHAT_MODEL, **kwargs)
    assert normalise(got) == normalise(expected)
    assert isinstance(orjson.loads(got.message.content or ""), dict)


async def test_chat_stream(pair: Pair) -> None:
    expected = await collect(await pair.direct.chat(CHAT_MODEL, messages=MESSAGES, stream=True))
    got = await collect(await pair.via.chat(CHAT_MODEL, messages=MESSAGES, stream=True))
    assert normalise(got) == normalise(expected)
    assert len(got) > 2
    assert [p.done for p in got] == [False] * (len(got) - 1) + [True]
    assert got[-1].done_reason == "stop"
    assert got[-1].eval_count == len(got) - 1
    text = "".join(p.message.content or "" for p in got)
    whole = await pair.via.chat(CHAT_MODEL, messages=MESSAGES)
    assert text == whole.message.content


async def test_generate(pair: Pair) -> None:
    expected = await pair.direct.generate(CHAT_MODEL, "Hello there", options={"num_predict": 9})
    got = await pair.via.generate(CHAT_MODEL, "Hello there", options={"num_predict": 9})
    assert normalise(got) == normalise(expected)
    assert got.done_reason == "length"
    assert got.eval_count == 9
    assert got.context


async def test_generate_stream(pair: Pair) -> None:
    expected = await collect(await pair.direct.generate(CHAT_MODEL, "Hello there", stream=True))
    got = await collect(await pair.via.generate(CHAT_MODEL, "Hello there", stream=True))
    assert normalise(got) == normalise(expected)
    assert len(got) > 2
    assert got[-1].done is True
    assert got[-1].context
    assert all(not p.done for p in got[:-1])


# ---- embeddings -------------------------------------------------------------------------------


async def test_embed(pair: Pair) -> None:
    inputs = ["the sky is blue", "why"]
    expected = await pair.direct.embed(EMBED_MODEL, inputs)
    got = await pair.via.embed(EMBED_MODEL, inputs)
    assert normalise(got) == normalise(expected)
    assert len(got.embeddings) == 2
    assert got.embeddings == expected.embeddings
    assert got.prompt_eval_count == 5


async def test_embeddings_legacy(pair: Pair) -> None:
    expected = await pair.direct.embeddings(EMBED_MODEL, "the sky is blue")
    got = await pair.via.embeddings(EMBED_MODEL, "the sky is blue")
    assert normalise(got) == normalise(expected)
    assert got.embedding
    assert list(got.embedding) == list(expected.embedding)


# ---- models -----------------------------------------------------------------------------------


async def test_list(pair: Pair) -> None:
    expected = await pair.direct.list()
    got = await pair.via.list()
    assert normalise(got) == normalise(expected)
    assert {m.model for m in got.models} == {
        "llama3.2:latest",
        "qwen2.5:0.5b",
        "nomic-embed-text:latest",
    }
    assert all(m.digest and m.size and m.modified_at for m in got.models)
    assert got.model_dump() == expected.model_dump()


async def test_show(pair: Pair) -> None:
    expected = await pair.direct.show(CHAT_MODEL)
    got = await pair.via.show(CHAT_MODEL)
    assert normalise(got) == normalise(expected)
    assert got.model_dump() == expected.model_dump()
    assert got.modelfile and got.template
    assert "completion" in (got.capabilities or [])


async def test_ps(pair: Pair) -> None:
    await pair.via.chat(CHAT_MODEL, messages=MESSAGES)
    expected = await pair.direct.ps()
    got = await pair.via.ps()
    assert normalise(got) == normalise(expected)
    assert [m.model for m in got.models] == ["llama3.2:latest"]
    assert got.models[0].expires_at is not None
    assert got.models[0].size_vram


async def test_version_via_httpx(pair: Pair) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        expected = await client.get(pair.direct_url + "/api/version")
        got = await client.get(pair.via_url + "/api/version")
    assert got.status_code == expected.status_code == 200
    assert got.content == expected.content
    assert got.json() == {"version": "0.12.6"}


async def test_pull_stream_reports_progress_until_success(twins: Pair) -> None:
    expected = await collect(await twins.direct.pull("mistral", stream=True))
    got = await collect(await twins.via.pull("mistral", stream=True))
    assert normalise(got) == normalise(expected)
    statuses = [p.status for p in got]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert any(p.total and p.completed == p.total for p in got)
    assert len(got) > 5
    listed = await twins.via.list()
    assert "mistral:latest" in {m.model for m in listed.models}
    assert normalise(listed, also={"modified_at"}) == normalise(
        await twins.direct.list(), also={"modified_at"}
    )


async def test_pull_without_stream(twins: Pair) -> None:
    expected = await twins.direct.pull("qwen3")
    got = await twins.via.pull("qwen3")
    assert got.model_dump() == expected.model_dump()
    assert got.status == "success"


async def test_copy_then_delete(twins: Pair) -> None:
    expected = await twins.direct.copy(CHAT_MODEL, "my-llama")
    got = await twins.via.copy(CHAT_MODEL, "my-llama")
    assert got.model_dump() == expected.model_dump() == {"status": "success"}
    listed = await twins.via.list()
    assert "my-llama:latest" in {m.model for m in listed.models}
    assert normalise(listed, also={"modified_at"}) == normalise(
        await twins.direct.list(), also={"modified_at"}
    )
    copied = await twins.via.show("my-llama")
    assert copied.modelfile == (await twins.direct.show("my-llama")).modelfile

    expected = await twins.direct.delete("my-llama")
    got = await twins.via.delete("my-llama")
    assert got.model_dump() == expected.model_dump() == {"status": "success"}
    listed = await twins.via.list()
    assert "my-llama:latest" not in {m.model for m in listed.models}
    assert normalise(listed) == normalise(await twins.direct.list())


class SlowTagsSimulator(Simulator):
    """A simulator whose ``/api/tags`` takes ``tags_delay`` seconds, like a busy Ollama."""

    tags_delay = 0.0

    async def handle(self, request: Request) -> Response:
        if request.path == "/api/tags" and self.tags_delay:
            await asyncio.sleep(self.tags_delay)
        return await super().handle(request)


@pytest.mark.parametrize("change", ["pull", "copy"])
async def test_a_model_added_through_corral_is_usable_at_once(change: str) -> None:
    sim = SlowTagsSimulator(tokens_per_second=2000.0, first_token_delay=0.0)
    await sim.start("127.0.0.1", 0)
    try:
        async with running_corral([sim.url]) as (app, _):
            client = ollama.AsyncClient(host=app.url, timeout=TIMEOUT)
            try:
                sim.tags_delay = 0.5
                if change == "pull":
                    name = "mistral"
                    assert (await client.pull(name)).status == "success"
                else:
                    name = "my-llama"
                    assert (await client.copy(CHAT_MODEL, name)).status == "success"
                reply = await client.chat(name, messages=MESSAGES)
                assert reply.done is True
                assert reply.model == name
            finally:
                await client.close()
    finally:
        await sim.aclose()


# ---- errors -----------------------------------------------------------------------------------


async def raised(call: Any) -> ollama.ResponseError:
    with pytest.raises(ollama.ResponseError) as info:
        await call
    return info.value


@pytest.mark.parametrize(
    "operation",
    [
        "chat",
        "chat_stream",
        "generate",
        "embeddings",
        "embed",
        "show",
        "delete",
        "copy",
    ],
)
async def test_errors_surface_as_the_same_response_error(pair: Pair, operation: str) -> None:
    async def attempt(client: ollama.AsyncClient) -> ollama.ResponseError:
        if operation == "chat":
            return await raised(client.chat("no-such-model", messages=MESSAGES))
        if operation == "chat_stream":
            stream = await client.chat("no-such-model", messages=MESSAGES, stream=True)
            return await raised(collect(stream))
        if operation == "generate":
            return await raised(client.generate("no-such-model", "hi"))
        if operation == "embed":
            return await raised(client.embed("no-such-model", "hi"))
        if operation == "embeddings":
            return await raised(client.embeddings("no-such-model", "hi"))
        if operation == "show":
            return await raised(client.show("no-such-model"))
        if operation == "delete":
            return await raised(client.delete("no-such-model"))
        return await raised(client.copy("no-such-model", "other"))

    expected = await attempt(pair.direct)
    got = await attempt(pair.via)
    assert got.status_code == expected.status_code == 404
    assert got.error == expected.error
    assert "not found" in got.error


async def test_a_crashed_runner_is_relayed_to_the_client(pair: Pair) -> None:
    pair.sim.faults.update({"status_500": True, "times": 1})
    expected = await raised(pair.direct.chat(CHAT_MODEL, messages=MESSAGES))
    pair.sim.faults.update({"status_500": True, "times": 1})
    got = await raised(pair.via.chat(CHAT_MODEL, messages=MESSAGES))
    assert got.status_code == expected.status_code == 500
    assert got.error == expected.error
    assert "llama runner process has terminated" in got.error


async def test_a_stream_error_line_reaches_the_client(pair: Pair) -> None:
    pair.sim.faults.update({"error_after_chunks": 2, "times": 1})
    stream = await pair.via.chat(CHAT_MODEL, messages=MESSAGES, stream=True)
    parts: list[Any] = []
    with pytest.raises(ollama.ResponseError) as info:
        async for part in stream:
            parts.append(part)
    assert len(parts) == 2
    assert info.value.error == "an error was encountered while running the model"
