"""The simulator on a real port, spoken to by the official ollama and openai clients and httpx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import ollama
import openai
import orjson
import pytest

from corral.testing import Outcome, Simulator

CHAT: list[Any] = [{"role": "user", "content": "Why is the sky blue?"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(tokens_per_second=5000.0, first_token_delay=0.0) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=sim.url)


@pytest.fixture
def oai(sim: Simulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=5.0) as h:
        yield h


async def _ndjson(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    async with http.stream("POST", path, json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) async for line in response.aiter_lines() if line]


async def _sse(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(event name, data) pairs of a server-sent event stream."""
    async with http.stream("POST", path, json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        text = (await response.aread()).decode()
    events = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event", ""), fields["data"]))
    return events


# ---- native API -----------------------------------------------------------------------------


async def test_root_and_version_answer_like_ollama(http: httpx.AsyncClient) -> None:
    root = await http.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert (await http.head("/")).status_code == 200
    assert (await http.get("/api/version")).json() == {"version": "0.12.6"}
    missing = await http.get("/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found")


async def test_chat_returns_an_assistant_message_with_stats(client: ollama.AsyncClient) -> None:
    reply = await client.chat("llama3.2", messages=CHAT)
    assert reply.message.role == "assistant" and reply.message.content
    assert (reply.done, reply.done_reason, reply.eval_count, reply.prompt_eval_count) == (
        True,
        "stop",
        24,
        5,
    )
    assert reply.total_duration and reply.eval_duration and reply.created_at
    assert (await client.chat("llama3.2", messages=CHAT)).message.content == reply.message.content


async def test_chat_stream_sends_tokens_then_a_final_chunk(client: ollama.AsyncClient) -> None:
    whole = await client.chat("llama3.2", messages=CHAT)
    parts = [p async for p in await client.chat("llama3.2", messages=CHAT, stream=True)]
    assert len(parts) == 25 and not any(p.done for p in parts[:-1])
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert (parts[-1].done_reason, parts[-1].eval_count) == ("stop", 24)


async def test_stream_lines_are_ndjson_with_rfc3339_times(http: httpx.AsyncClient) -> None:
    body = {"model": "llama3.2", "messages": CHAT, "options": {"num_predict": 4}}
    lines = await _ndjson(http, "/api/chat", body)
    assert len(lines) == 5
    for line in lines:
        created = datetime.fromisoformat(line["created_at"][:26] + "+00:00")
        assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert lines[-1]["done_reason"] == "length" and lines[-1]["message"]["content"] == ""


async def test_generate_honours_num_predict_and_returns_context(
    client: ollama.AsyncClient,
) -> None:
    reply = await client.generate("llama3.2", "Why is the sky blue?", options={"num_predict": 9})
    assert (reply.eval_count, reply.done_reason) == (9, "length")
    assert reply.context and len(reply.context) == 5 + 9
    raw = await client.generate("llama3.2", "[INST] hi [/INST]", raw=True)
    assert raw.context is None
    scored = await client.generate(
        "llama3.2", "hi", logprobs=True, top_logprobs=2, options={"num_predict": 3}
    )
    assert scored.logprobs and len(scored.logprobs) == 3
    assert all(len(p.top_logprobs or []) == 2 for p in scored.logprobs)


async def test_chat_features_tools_thinking_and_json(client: ollama.AsyncClient) -> None:
    asks = [{"role": "user", "content": "what does get_weather say for Tokyo?"}]
    called = await client.chat("llama3.2", messages=asks, tools=[WEATHER_TOOL])
    calls = called.message.tool_calls or []
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Tokyo"})
    ]
    thought = await client.chat("llama3.2", messages=CHAT, think=True)
    assert thought.message.thinking and thought.message.content
    shaped = await client.chat("llama3.2", messages=CHAT, format="json")
    assert isinstance(json.loads(shaped.message.content or ""), dict)


async def test_embed_returns_one_unit_vector_per_input(client: ollama.AsyncClient) -> None:
    reply = await client.embed("nomic-embed-text", ["first text", "second text"])
    assert [len(v) for v in reply.embeddings] == [768, 768]
    assert sum(x * x for x in reply.embeddings[0]) == pytest.approx(1.0)
    assert reply.prompt_eval_count == 4
    short = await client.embed("nomic-embed-text", "first text", dimensions=32)
    assert len(short.embeddings[0]) == 32
    legacy = await client.embeddings("llama3.2", "first text")
    assert len(legacy.embedding) == 384


async def test_list_show_and_ps_describe_the_models(client: ollama.AsyncClient) -> None:
    listed = await client.list()
    names = {m.model for m in listed.models}
    assert names == {"llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest"}
    for m in listed.models:
        assert m.digest and len(m.digest) == 64 and m.size and m.details and m.modified_at
    shown = await client.show("llama3.2")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 131072
    assert shown.details and shown.details.family == "llama" and shown.template
    assert (await client.ps()).models == []
    await client.chat("llama3.2", messages=CHAT, keep_alive="10m")
    running = (await client.ps()).models
    assert [m.model for m in running] == ["llama3.2:latest"]
    assert running[0].expires_at and running[0].expires_at > datetime.now(UTC)
    assert running[0].context_length == 4096 and running[0].size_vram


async def test_unknown_model_is_404_with_ollamas_wording(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat("ghost", messages=CHAT)
    assert err.value.status_code == 404
    assert err.value.error == 'model "ghost" not found, try pulling it first'


async def test_load_delay_is_paid_once_and_reported(
    sim: Simulator, client: ollama.AsyncClient
) -> None:
    sim.load_delay = 0.05
    cold = await client.chat("llama3.2", messages=CHAT)
    warm = await client.chat("llama3.2", messages=CHAT)
    assert (cold.load_duration, warm.load_duration) == (50_000_000, 0)


async def test_pull_streams_progress_and_installs_the_model(client: ollama.AsyncClient) -> None:
    statuses = [p.status async for p in await client.pull("mistral:7b", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert statuses[-3:-1] == ["verifying sha256 digest", "writing manifest"]
    assert any(s and s.startswith("pulling ") and s != "pulling manifest" for s in statuses)
    assert "mistral:7b" in {m.model for m in (await client.list()).models}
    assert (await client.pull("qwen3", stream=False)).status == "success"
    assert (await client.show("qwen3")).capabilities == ["completion", "tools", "thinking"]


async def test_repull_changes_the_digest_when_asked(
    sim: Simulator, client: ollama.AsyncClient
) -> None:
    def digest() -> str | None:
        return next(m.digest for m in listed.models if m.model == "llama3.2:latest")

    listed = await client.list()
    before = digest()
    await client.pull("llama3.2")
    listed = await client.list()
    assert digest() == before
    sim.repull_changes_digest = True
    await client.pull("llama3.2")
    listed = await client.list()
    assert digest() != before


async def test_copy_delete_and_push(client: ollama.AsyncClient) -> None:
    assert (await client.copy("llama3.2", "gpt-3.5-turbo")).status == "success"
    reply = await client.chat("gpt-3.5-turbo", messages=CHAT)
    assert reply.model == "gpt-3.5-turbo"
    with pytest.raises(ollama.ResponseError) as missing_copy:
        await client.copy("ghost", "other")
    assert missing_copy.value.status_code == 404
    assert (await client.delete("gpt-3.5-turbo")).status == "success"
    with pytest.raises(ollama.ResponseError) as missing:
        await client.delete("gpt-3.5-turbo")
    assert (missing.value.status_code, missing.value.error) == (
        404,
        "model 'gpt-3.5-turbo' not found",
    )
    pushed = [p.status async for p in await client.push("llama3.2", stream=True)]
    assert pushed[0] == "retrieving manifest" and pushed[-2:] == ["pushing manifest", "success"]


async def test_create_from_a_model_and_from_pushed_blobs(
    client: ollama.AsyncClient, http: httpx.AsyncClient
) -> None:
    statuses = [
        p.status
        async for p in await client.create(
            "mario", from_="llama3.2", system="You are Mario.", stream=True
        )
    ]
    assert statuses[0] == "reading model metadata" and statuses[-1] == "success"
    shown = await client.show("mario")
    assert shown.details and shown.details.parent_model == "llama3.2:latest"
    assert "You are Mario." in (shown.modelfile or "")

    blob = b"GGUF fake weights"
    digest = hashlib.sha256(blob).hexdigest()
    path = f"/api/blobs/sha256:{digest}"
    assert (await http.head(path)).status_code == 404
    assert (await http.post(path, content=b"other bytes")).status_code == 400
    assert (await http.post(path, content=blob)).status_code == 201
    assert (await http.head(path)).status_code == 200
    created = await client.create("from-gguf", files={"model.gguf": f"sha256:{digest}"})
    assert created.status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        await client.create("broken", files={"model.gguf": "sha256:" + "0" * 64})
    assert err.value.status_code == 400


# ---- OpenAI-compatible API ------------------------------------------------------------------


async def test_openai_chat_completion(oai: openai.AsyncOpenAI) -> None:
    done = await oai.chat.completions.create(model="llama3.2", messages=CHAT)
    assert done.id.startswith("chatcmpl-") and done.object == "chat.completion"
    assert done.choices[0].message.role == "assistant" and done.choices[0].message.content
    assert done.choices[0].finish_reason == "stop"
    assert done.usage and (done.usage.prompt_tokens, done.usage.completion_tokens) == (5, 24)


async def test_openai_chat_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="llama3.2",
        messages=CHAT,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=6,
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage
    assert chunks[-1].usage.total_tokens == 5 + 6


async def test_openai_tool_calls(oai: openai.AsyncOpenAI) -> None:
    asks: list[Any] = [{"role": "user", "content": "call get_weather for Paris"}]
    done = await oai.chat.completions.create(
        model="llama3.2",
        messages=asks,
        tools=[WEATHER_TOOL],
    )
    call = (done.choices[0].message.tool_calls or [])[0]
    assert done.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_openai_completions(oai: openai.AsyncOpenAI) -> None:
    done = await oai.completions.create(model="llama3.2", prompt="Once upon a time", max_tokens=5)
    assert done.object == "text_completion" and done.choices[0].finish_reason == "length"
    assert len(done.choices[0].text.split()) == 5
    stream = await oai.completions.create(
        model="llama3.2",
        prompt="Once upon a time",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 24


async def test_openai_embeddings_float_and_base64(oai: openai.AsyncOpenAI) -> None:
    default = await oai.embeddings.create(model="nomic-embed-text", input=["a b", "c"])
    assert [d.index for d in default.data] == [0, 1] and len(default.data[0].embedding) == 768
    assert default.usage.prompt_tokens == 3
    floats = await oai.embeddings.create(
        model="nomic-embed-text", input="a b", encoding_format="float", dimensions=16
    )
    assert len(floats.data[0].embedding) == 16


async def test_openai_embeddings_base64_is_float32(http: httpx.AsyncClient) -> None:
    body = {"model": "nomic-embed-text", "input": "a b", "encoding_format": "base64"}
    data = (await http.post("/v1/embeddings", json=body)).json()["data"][0]["embedding"]
    assert len(base64.b64decode(data)) == 768 * 4


async def test_openai_models_list_and_retrieve(oai: openai.AsyncOpenAI) -> None:
    models = (await oai.models.list()).data
    assert {m.id for m in models} == {"llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest"}
    assert all(m.object == "model" and m.owned_by == "library" and m.created for m in models)
    assert (await oai.models.retrieve("llama3.2")).id == "llama3.2"
    with pytest.raises(openai.NotFoundError):
        await oai.models.retrieve("ghost")
    with pytest.raises(openai.NotFoundError):
        await oai.chat.completions.create(model="ghost", messages=CHAT)


async def test_openai_responses(oai: openai.AsyncOpenAI) -> None:
    done = await oai.responses.create(model="llama3.2", input="Write about the color blue")
    assert done.status == "completed" and done.output_text
    assert done.usage and done.usage.output_tokens == 24
    stream = await oai.responses.create(model="llama3.2", input="Hello", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 24
    assert kinds[-1] == "response.completed"


async def test_anthropic_messages(http: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"model": "llama3.2", "max_tokens": 1024, "messages": CHAT}
    message = (await http.post("/v1/messages", json=body)).json()
    assert (message["type"], message["role"], message["stop_reason"]) == (
        "message",
        "assistant",
        "end_turn",
    )
    assert message["content"][0]["type"] == "text" and message["usage"]["output_tokens"] == 24
    events = await _sse(http, "/v1/messages", {**body, "stream": True, "max_tokens": 3})
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == 3
    delta = orjson.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "max_tokens"


# ---- faults ---------------------------------------------------------------------------------


async def test_busy_and_500_are_ollama_errors(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.faults.busy = True
    with pytest.raises(ollama.ResponseError) as busy:
        await client.chat("llama3.2", messages=CHAT)
    assert busy.value.status_code == 503 and "server busy" in busy.value.error
    assert (await client.list()).models  # model management is not busy
    sim.faults.reset()
    sim.faults.update({"status_500": True, "times": 1})
    with pytest.raises(ollama.ResponseError) as crashed:
        await client.chat("llama3.2", messages=CHAT)
    assert crashed.value.status_code == 500
    assert (await client.chat("llama3.2", messages=CHAT)).done


async def test_bad_json_breaks_the_client(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.faults.bad_json = True
    with pytest.raises(json.JSONDecodeError):
        await client.chat("llama3.2", messages=CHAT)


async def test_error_after_chunks_ends_the_stream_with_an_error_line(
    sim: Simulator, client: ollama.AsyncClient
) -> None:
    sim.faults.error_after_chunks = 3
    received = []
    with pytest.raises(ollama.ResponseError, match="an error was encountered"):
        async for part in await client.chat("llama3.2", messages=CHAT, stream=True):
            received.append(part)
    assert len(received) == 3
    assert sim.stats.outcomes[Outcome.FAILED] == 1


async def test_drop_after_chunks_cuts_the_connection(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.faults.drop_after_chunks = 2
    lines = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream(
            "POST", "/api/chat", json={"model": "llama3.2", "messages": CHAT}
        ) as r:
            async for line in r.aiter_lines():
                lines.append(line)
    assert len(lines) == 2
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/api/chat", json={"model": "llama3.2", "messages": CHAT, "stream": False})


async def test_first_token_delay_override_is_reported(
    sim: Simulator, client: ollama.AsyncClient
) -> None:
    sim.faults.first_token_delay = 0.03
    reply = await client.chat("llama3.2", messages=CHAT)
    assert reply.prompt_eval_duration == 30_000_000


async def test_a_client_giving_up_on_a_hung_request_is_seen(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.faults.hang = True
    loop = asyncio.get_running_loop()
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/api/chat", json={"model": "llama3.2", "messages": CHAT}, timeout=0.1)
    gave_up = loop.time()
    record = await sim.stats.wait_cancelled(timeout=1.0)
    assert record.finished_at is not None and record.finished_at - gave_up < 0.1


async def test_a_client_leaving_mid_stream_cancels_the_generation_within_100ms(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    sim.tokens_per_second = 20.0
    loop = asyncio.get_running_loop()
    body = {"model": "llama3.2", "messages": CHAT}
    async with http.stream("POST", "/api/chat", json=body) as response:
        lines = response.aiter_lines()
        assert json.loads(await anext(lines))["done"] is False
        await response.aclose()
        closed = loop.time()
    record = await sim.stats.wait_cancelled(timeout=1.0)
    assert (record.path, record.outcome) == ("/api/chat", Outcome.CANCELLED)
    assert record.finished_at is not None and record.finished_at - closed < 0.1
    assert sim.stats.active == 0


async def test_refused_connections_come_back_on_the_same_port(
    sim: Simulator, http: httpx.AsyncClient
) -> None:
    port = sim.port
    await sim.refuse_connections()
    with pytest.raises(httpx.ConnectError):
        await http.get("/api/version")
    await sim.accept_connections()
    assert sim.port == port and (await http.get("/api/version")).status_code == 200


async def _port_state(sim: Simulator, *, open_: bool) -> None:
    """Wait until the port accepts (or refuses) connections; readiness, not a timer."""
    async with asyncio.timeout(5.0):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", sim.port)
            except ConnectionRefusedError:
                if not open_:
                    return
            else:
                writer.close()
                await writer.wait_closed()
                if open_:
                    return


async def test_faults_are_driven_over_http(sim: Simulator, http: httpx.AsyncClient) -> None:
    set_ = await http.post("/_sim/faults", json={"busy": True, "times": 1})
    assert set_.json()["busy"] is True
    busy = await http.post("/v1/chat/completions", json={"model": "llama3.2", "messages": CHAT})
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "api_error"
    assert (await http.get("/_sim/faults")).json()["busy"] is False
    await http.post("/_sim/faults", json={"refuse_for": 0.1})
    await _port_state(sim, open_=False)
    await _port_state(sim, open_=True)
    stats = (await http.get("/_sim/stats")).json()
    assert stats["requests"]["/v1/chat/completions"] == 1
