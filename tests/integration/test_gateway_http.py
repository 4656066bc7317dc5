"""corral over raw HTTP: byte-level fidelity, the errors it makes itself, its own routes, CORS,
request ids, and streams relayed as they are produced."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

from corral.testing.simulator import Simulator
from corral.testing.stats import Outcome
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.integration.test_gateway_support import (
    RecordingSimulator,
    closed_port_url,
    ndjson,
    normalise,
    parse_body,
)

TIMEOUT = 30.0
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
ALLOWED_ORIGIN = "http://localhost:3000"
EVIL_ORIGIN = "https://evil.example"
ID_SHAPE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass
class Gateway:
    sim: Simulator
    url: str
    client: httpx.AsyncClient


@pytest.fixture
async def gw(start_sim: StartSim) -> AsyncIterator[Gateway]:
    sim = await start_sim()
    async with running_corral([sim.url]) as (app, _), httpx.AsyncClient(timeout=TIMEOUT) as c:
        yield Gateway(sim, app.url, c)


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[RecordingSimulator, Gateway]]:
    sim = RecordingSimulator(tokens_per_second=2000.0, first_token_delay=0.0)
    await sim.start("127.0.0.1", 0)
    try:
        async with (
            running_corral([sim.url]) as (app, _),
            httpx.AsyncClient(timeout=TIMEOUT) as c,
        ):
            yield sim, Gateway(sim, app.url, c)
    finally:
        await sim.aclose()


def only_error_string(response: httpx.Response) -> str:
    """Ollama's error shape: exactly ``{"error": "<message>"}``."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


def openai_error(response: httpx.Response) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def reached(sim: Simulator, *paths: str) -> int:
    """How many requests for ``paths`` reached the simulator."""
    return sum(sim.stats.requests[path] for path in paths)


# ---- the same answers as Ollama, byte for byte (up to timestamps) ---------------------------

FIDELITY_CASES: list[tuple[str, str, Any]] = [
    ("GET", "/api/version", None),
    ("GET", "/api/tags", None),
    ("HEAD", "/api/tags", None),
    ("GET", "/api/ps", None),
    ("POST", "/api/show", {"model": "llama3.2"}),
    ("POST", "/api/show", {"name": "qwen2.5:0.5b", "verbose": True}),
    ("POST", "/api/chat", CHAT),
    ("POST", "/api/chat", {**CHAT, "stream": False}),
    ("POST", "/api/chat", {**CHAT, "messages": [{"role": "user", "content": "héllo ☃ 你好 🦙"}]}),
    ("POST", "/api/generate", {"model": "llama3.2", "prompt": "word " * 200_000, "stream": False}),
    ("POST", "/api/chat", {**CHAT, "think": True, "model": "qwen2.5:0.5b"}),
    ("POST", "/api/generate", {"model": "llama3.2", "prompt": "Hello"}),
    ("POST", "/api/generate", {"model": "llama3.2", "prompt": "Hi", "stream": False}),
    ("POST", "/api/generate", {"model": "llama3.2"}),
    ("POST", "/api/embed", {"model": "nomic-embed-text", "input": ["a b", "c"]}),
    ("POST", "/api/embeddings", {"model": "nomic-embed-text", "prompt": "a b"}),
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/chat/completions", {**CHAT, "stream": True}),
    ("POST", "/v1/completions", {"model": "llama3.2", "prompt": "Once", "stream": True}),
    ("POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": "the sky"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/llama3.2", None),
    ("POST", "/api/chat", {"model": "llama3.2", "messages": "not a list"}),
    ("POST", "/v1/chat/completions", {"model": "llama3.2", "messages": []}),
    ("GET", "/v1/models/no-such-model", None),
    ("POST", "/api/copy", {"source": "no-such-model", "destination": "x"}),
    ("DELETE", "/api/delete", {"model": "no-such-model"}),
]


@pytest.mark.parametrize(("method", "path", "payload"), FIDELITY_CASES)
async def test_answers_match_the_simulator(
    gw: Gateway, method: str, path: str, payload: Any
) -> None:
    # A loaded model, so /api/ps has something to show.
    warm = await gw.client.post(gw.sim.url + "/api/generate", json={"model": "llama3.2"})
    assert warm.status_code == 200
    content = orjson.dumps(payload) if payload is not None else None

    expected = await gw.client.request(method, gw.sim.url + path, content=content)
    got = await gw.client.request(method, gw.url + path, content=content)

    assert got.status_code == expected.status_code
    content_type = expected.headers.get("content-type", "")
    assert got.headers.get("content-type", "") == content_type
    assert ("chunked" in got.headers.get("transfer-encoding", "")) == (
        "chunked" in expected.headers.get("transfer-encoding", "")
    )
    if method == "HEAD":
        assert got.content == expected.content == b""
        assert got.headers["content-length"] == expected.headers["content-length"]
        return
    want = normalise(parse_body(content_type, expected.content))
    assert normalise(parse_body(content_type, got.content)) == want


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/chat", CHAT),
        ("/api/generate", {"prompt": "hi"}),
        ("/api/embeddings", {"prompt": "hi"}),
        ("/v1/chat/completions", CHAT),
        ("/v1/completions", {"prompt": "hi"}),
        ("/api/show", {}),
        ("/api/embed", {"input": "hi"}),
        ("/v1/embeddings", {"input": "hi"}),
    ],
)
async def test_unknown_model_is_answered_in_ollamas_words(
    gw: Gateway, path: str, payload: dict[str, Any]
) -> None:
    body = {**payload, "model": "no-such-model"}
    expected = await gw.client.post(gw.sim.url + path, json=body)
    got = await gw.client.post(gw.url + path, json=body)
    assert got.status_code == expected.status_code == 404
    assert got.json() == expected.json()


async def test_identical_answers_are_identical_bytes(gw: Gateway) -> None:
    for path in ("/api/tags", "/api/version", "/v1/models"):
        expected = await gw.client.get(gw.sim.url + path)
        got = await gw.client.get(gw.url + path)
        assert got.content == expected.content
    body = {"model": "llama3.2"}
    expected = await gw.client.post(gw.sim.url + "/api/show", json=body)
    got = await gw.client.post(gw.url + "/api/show", json=body)
    assert got.content == expected.content


# ---- errors corral makes itself -------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b'{"model": "llama3.2",', b"\xff\xfe"])
async def test_invalid_json_on_a_native_route_is_400(gw: Gateway, body: bytes) -> None:
    r = await gw.client.post(gw.url + "/api/chat", content=body)
    assert r.status_code == 400
    assert "json" in only_error_string(r).lower()
    assert r.headers["content-type"].startswith("application/json")
    assert reached(gw.sim, "/api/chat") == 0


async def test_invalid_json_on_v1_is_an_openai_error(gw: Gateway) -> None:
    r = await gw.client.post(
        gw.url + "/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    error = openai_error(r)
    assert error["type"] == "invalid_request_error"
    assert "json" in error["message"].lower()
    assert reached(gw.sim, "/v1/chat/completions") == 0


async def test_a_body_that_is_not_an_object_is_400(gw: Gateway) -> None:
    for body in (b"[]", b'"llama3.2"', b"42"):
        r = await gw.client.post(gw.url + "/api/generate", content=body)
        assert r.status_code == 400
        only_error_string(r)
    assert reached(gw.sim, "/api/generate") == 0


@pytest.mark.parametrize(
    "path",
    ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"],
)
async def test_missing_model_is_400_on_native_routes(gw: Gateway, path: str) -> None:
    for body in ({"prompt": "hi"}, {"model": ""}, {"model": None}, {"model": 3}):
        r = await gw.client.post(gw.url + path, json=body)
        assert r.status_code == 400, body
        assert "model" in only_error_string(r)
    assert reached(gw.sim, path) == 0


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
async def test_missing_model_is_400_on_v1(gw: Gateway, path: str) -> None:
    r = await gw.client.post(gw.url + path, json={"messages": CHAT["messages"], "input": "x"})
    assert r.status_code == 400
    assert openai_error(r)["type"] == "invalid_request_error"
    assert reached(gw.sim, path) == 0


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/chat", "POST"),
        ("PUT", "/api/generate", "POST"),
        ("POST", "/api/tags", "GET"),
        ("GET", "/api/delete", "DELETE"),
        ("DELETE", "/api/version", "GET"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    gw: Gateway, method: str, path: str, allowed: str
) -> None:
    r = await gw.client.request(method, gw.url + path)
    assert r.status_code == 405
    allow = {m.strip() for m in r.headers["allow"].split(",")}
    assert allowed in allow
    assert method not in allow
    only_error_string(r)
    if path not in ("/api/tags", "/api/version"):  # corral itself polls those
        assert reached(gw.sim, path) == 0


async def test_wrong_method_on_v1_is_405_with_an_openai_error(gw: Gateway) -> None:
    r = await gw.client.get(gw.url + "/v1/chat/completions")
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]
    openai_error(r)


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/api", "/apis/chat"])
async def test_unknown_path_is_404_json(gw: Gateway, path: str) -> None:
    r = await gw.client.get(gw.url + path)
    assert r.status_code == 404
    only_error_string(r)
    assert reached(gw.sim, path) == 0


async def test_unknown_v1_path_is_404_openai_error(gw: Gateway) -> None:
    r = await gw.client.post(gw.url + "/v1/nope", json={"model": "llama3.2"})
    assert r.status_code == 404
    openai_error(r)


# ---- routes corral answers itself -----------------------------------------------------------


async def test_root_says_ollama_is_running(gw: Gateway) -> None:
    expected = await gw.client.get(gw.sim.url + "/")
    r = await gw.client.get(gw.url + "/")
    assert r.status_code == 200
    assert r.text == expected.text == "Ollama is running"
    assert r.headers["content-type"].startswith("text/plain")


async def test_head_root(gw: Gateway) -> None:
    expected = await gw.client.head(gw.sim.url + "/")
    r = await gw.client.head(gw.url + "/")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == expected.headers["content-length"] == "17"


async def test_healthz(gw: Gateway) -> None:
    r = await gw.client.get(gw.url + "/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_health_lists_every_backend(start_sim: StartSim) -> None:
    sim = await start_sim()
    dead = await closed_port_url()
    async with (
        running_corral([sim.url, dead]) as (app, _),
        httpx.AsyncClient(timeout=TIMEOUT) as c,
    ):
        r = await c.get(app.url + "/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    states = {b["url"]: b["state"] for b in body["backends"]}
    assert states == {sim.url: "up", dead: "down"}
    up = next(b for b in body["backends"] if b["url"] == sim.url)
    assert up["version"] == "0.12.6"
    assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).tzinfo is not None


async def test_health_is_503_when_every_backend_is_down() -> None:
    dead = [await closed_port_url(), await closed_port_url()]
    async with running_corral(dead) as (app, _), httpx.AsyncClient(timeout=TIMEOUT) as c:
        r = await c.get(app.url + "/health")
        assert (await c.get(app.url + "/healthz")).status_code == 200
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unhealthy"
    assert [b["state"] for b in body["backends"]] == ["down", "down"]
    assert "timestamp" in body


# ---- CORS -----------------------------------------------------------------------------------


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


async def test_preflight_from_an_allowed_origin(gw: Gateway) -> None:
    r = await gw.client.options(gw.url + "/api/chat", headers=preflight_headers(ALLOWED_ORIGIN))
    assert r.status_code == 204
    assert ALLOWED_ORIGIN in r.headers.get_list("access-control-allow-origin")
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"].lower()
    assert reached(gw.sim, "/api/chat") == 0


async def test_preflight_allow_origin_is_a_single_value(gw: Gateway) -> None:
    r = await gw.client.options(gw.url + "/api/chat", headers=preflight_headers(ALLOWED_ORIGIN))
    assert r.headers.get_list("access-control-allow-origin") == [ALLOWED_ORIGIN]
    vary = [v.strip().lower() for value in r.headers.get_list("vary") for v in value.split(",")]
    assert vary.count("origin") == 1


async def test_preflight_from_a_disallowed_origin_gets_no_allow_origin(gw: Gateway) -> None:
    r = await gw.client.options(gw.url + "/api/chat", headers=preflight_headers(EVIL_ORIGIN))
    assert "access-control-allow-origin" not in r.headers
    assert not 200 <= r.status_code < 300 or "access-control-allow-methods" not in r.headers
    assert reached(gw.sim, "/api/chat") == 0


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("GET", "/", None),
        ("GET", "/api/tags", None),
        ("POST", "/api/chat", CHAT),
        ("POST", "/v1/chat/completions", {**CHAT, "stream": True}),
        ("POST", "/api/chat", {"messages": []}),
    ],
)
async def test_requests_from_an_allowed_origin_get_allow_origin(
    gw: Gateway, method: str, path: str, payload: Any
) -> None:
    content = orjson.dumps(payload) if payload is not None else None
    r = await gw.client.request(
        method, gw.url + path, content=content, headers={"Origin": ALLOWED_ORIGIN}
    )
    assert r.headers.get_list("access-control-allow-origin") == [ALLOWED_ORIGIN]
    r = await gw.client.request(
        method, gw.url + path, content=content, headers={"Origin": EVIL_ORIGIN}
    )
    assert "access-control-allow-origin" not in r.headers


async def test_origin_is_not_forwarded_upstream(
    recorded: tuple[RecordingSimulator, Gateway],
) -> None:
    sim, gw = recorded
    r = await gw.client.post(gw.url + "/api/chat", json=CHAT, headers={"Origin": ALLOWED_ORIGIN})
    assert r.status_code == 200
    (upstream,) = sim.headers_of("/api/chat")
    assert "origin" not in dict(upstream)


# ---- request ids ----------------------------------------------------------------------------


def upstream_ids(sim: RecordingSimulator, path: str) -> list[str]:
    (headers,) = sim.headers_of(path)
    return [v for n, v in headers if n == "x-request-id"]


async def test_a_valid_request_id_is_echoed_and_forwarded(
    recorded: tuple[RecordingSimulator, Gateway],
) -> None:
    sim, gw = recorded
    given = "client-42.retry_1:abc"
    r = await gw.client.post(gw.url + "/api/chat", json=CHAT, headers={"X-Request-ID": given})
    assert r.status_code == 200
    assert r.headers.get_list("x-request-id") == [given]
    assert upstream_ids(sim, "/api/chat") == [given]


async def test_a_request_id_is_generated_when_absent(
    recorded: tuple[RecordingSimulator, Gateway],
) -> None:
    sim, gw = recorded
    first = await gw.client.post(gw.url + "/api/generate", json={"model": "llama3.2"})
    second = await gw.client.post(gw.url + "/api/show", json={"model": "llama3.2"})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(ID_SHAPE.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]
    assert upstream_ids(sim, "/api/generate") == [ids[0]]
    assert upstream_ids(sim, "/api/show") == [ids[1]]


@pytest.mark.parametrize("bad", ["has spaces in it", "a" * 200, "semi;colon", "quote\"d", ""])
async def test_an_invalid_request_id_is_replaced(
    recorded: tuple[RecordingSimulator, Gateway], bad: str
) -> None:
    sim, gw = recorded
    r = await gw.client.post(
        gw.url + "/api/embed",
        json={"model": "nomic-embed-text", "input": "x"},
        headers={"X-Request-ID": bad},
    )
    assert r.status_code == 200
    generated = r.headers["x-request-id"]
    assert generated != bad
    assert ID_SHAPE.fullmatch(generated)
    assert upstream_ids(sim, "/api/embed") == [generated]


async def test_errors_and_local_routes_carry_a_request_id(gw: Gateway) -> None:
    for method, path, body in [
        ("GET", "/", None),
        ("GET", "/healthz", None),
        ("GET", "/nope", None),
        ("GET", "/api/chat", None),
        ("POST", "/api/chat", b"{"),
    ]:
        r = await gw.client.request(
            method, gw.url + path, content=body, headers={"X-Request-ID": "trace-1"}
        )
        assert r.headers.get_list("x-request-id") == ["trace-1"], path


async def test_forwarded_for_names_the_client(
    recorded: tuple[RecordingSimulator, Gateway],
) -> None:
    sim, gw = recorded
    await gw.client.post(gw.url + "/api/show", json={"model": "llama3.2"})
    await gw.client.post(
        gw.url + "/api/embed",
        json={"model": "nomic-embed-text", "input": "x"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    (show,) = sim.headers_of("/api/show")
    (embed,) = sim.headers_of("/api/embed")
    assert [v for n, v in show if n == "x-forwarded-for"] == ["127.0.0.1"]
    assert [v for n, v in embed if n == "x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]


# ---- streams are relayed as they are produced -----------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/chat", {**CHAT, "options": {"num_predict": 15}}),
        ("/api/generate", {"model": "llama3.2", "prompt": "Hi", "options": {"num_predict": 15}}),
        ("/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 15}),
    ],
)
async def test_stream_lines_arrive_while_the_generation_runs(
    start_sim: StartSim, path: str, payload: dict[str, Any]
) -> None:
    sim = await start_sim(tokens_per_second=10.0)
    lines: list[str] = []
    while_running = 0
    async with (
        running_corral([sim.url]) as (app, _),
        httpx.AsyncClient(timeout=TIMEOUT) as c,
        c.stream("POST", app.url + path, json=payload) as r,
    ):
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line:
                continue
            lines.append(line)
            record = sim.stats.generations[-1]
            if record.outcome is Outcome.RUNNING:
                while_running += 1
            if len(lines) == 1:
                # The first token is here and the model is still generating the rest.
                assert record.outcome is Outcome.RUNNING
                assert sim.stats.active == 1
    assert sim.stats.generations[-1].outcome is Outcome.COMPLETED
    assert len(lines) >= 15
    assert while_running >= 5


async def test_streamed_body_is_ndjson_line_by_line(gw: Gateway) -> None:
    async with gw.client.stream("POST", gw.url + "/api/chat", json=CHAT) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    parts = ndjson(raw)
    assert raw.endswith(b"\n")
    assert parts[-1]["done"] is True
    assert all(p["done"] is False for p in parts[:-1])
