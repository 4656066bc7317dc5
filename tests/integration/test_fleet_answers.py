"""Fleet-wide answers against real simulators: merged model lists, the lowest version, loaded
models by backend, and pulls, creates, copies and deletes that reach every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import ollama
import orjson
import pytest
from ollama._types import ListResponse

from corral.backends.backend import Backend, BackendSpec
from corral.backends.fleet import Fleet
from corral.backends.health import HealthChecker
from corral.context import Call
from corral.errors import BadRequest, CorralError, NoHealthyBackend, UpstreamError
from corral.http import routes
from corral.http.errors import render_error
from corral.http.fleet import FleetRoutes
from corral.http.messages import HeaderList, Headers, Request, Response
from corral.http.server import HttpServer
from corral.testing.simulator import Simulator
from tests.integration.conftest import StartSim

TIMEOUT = 30.0


@asynccontextmanager
async def fleet_over(*sims: Simulator) -> AsyncIterator[FleetRoutes]:
    """gpu1, gpu2, ... in front of ``sims``; health checks far apart, so a backend the test
    breaks on purpose stays in the fleet until a request finds out."""
    backends = [
        Backend(BackendSpec(f"gpu{i}", "127.0.0.1", sim.port), read_timeout=10.0)
        for i, sim in enumerate(sims, 1)
    ]
    fleet = Fleet(backends, HealthChecker(backends, interval=60.0))
    await fleet.start()
    try:
        yield FleetRoutes(fleet)
    finally:
        await fleet.aclose()


class Sink:
    """A client connection that keeps what is written to it."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: HeaderList = []
        self.chunks: list[bytes] = []

    def write_head(self, status: int, headers: HeaderList, *, chunked: bool) -> None:
        self.status, self.headers = status, headers

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def write_many(self, chunks: list[bytes]) -> None:
        self.chunks.extend(chunks)

    def end(self) -> None:
        pass

    async def drain(self) -> None:
        pass

    @property
    def head_only(self) -> bool:
        return False

    def set_flow_listener(self, listener: object) -> None:
        pass

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str | None:
        found = [v for n, v in self.headers if n.decode().lower() == name.lower()]
        return found[0].decode() if found else None

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.body.splitlines() if line]


def make_request(
    method: str, path: str, fields: dict[str, Any] | None = None, backends: str | None = None
) -> tuple[Request, Call, HeaderList]:
    endpoint = routes.match(method, path)
    body = orjson.dumps(fields) if fields is not None else b""
    raw: HeaderList = [(b"Content-Type", b"application/json")] if body else []
    if backends is not None:
        raw.append((b"X-Corral-Backend", backends.encode()))
    request = Request(method, path, "", Headers(raw), body, ("127.0.0.1", 40000))
    stream = (fields or {}).get("stream", endpoint.streams_by_default)
    call = Call(endpoint.surface, endpoint.name, None, stream, body, fields or {})
    upstream_headers = [*raw, (b"X-Request-ID", b"fleet-test")]
    return request, call, upstream_headers


async def ask(
    fleet: FleetRoutes,
    method: str,
    path: str,
    fields: dict[str, Any] | None = None,
    backends: str | None = None,
) -> Sink:
    request, call, headers = make_request(method, path, fields, backends)
    response = await fleet.answer(routes.match(method, path).name, request, call, headers)
    sink = Sink()
    async with asyncio.timeout(TIMEOUT):
        await response.send(sink)
    return sink


async def direct(sim: Simulator, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.url, timeout=TIMEOUT) as client:
        return await client.request(method, path, json=body)


def forwarded(request: Request) -> HeaderList:
    """The headers the gateway would send upstream (framing ones are the pool's to write)."""
    own = {b"host", b"content-length", b"connection", b"transfer-encoding"}
    return [(n, v) for n, v in request.headers.raw if n.lower() not in own]


@asynccontextmanager
async def serving(fleet: FleetRoutes) -> AsyncIterator[str]:
    """FleetRoutes behind a real HTTP server, for the official client."""

    async def handle(request: Request) -> Response:
        endpoint = routes.match(request.method, request.path)
        fields = orjson.loads(request.body) if request.body else {}
        stream = fields.get("stream", endpoint.streams_by_default)
        call = Call(endpoint.surface, endpoint.name, None, stream, request.body, fields)
        try:
            return await fleet.answer(endpoint.name, request, call, forwarded(request))
        except CorralError as err:
            return render_error(err, endpoint.surface)

    server = HttpServer(handle)
    await server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.aclose(grace=0.0)


def names(tags: dict[str, Any]) -> set[str]:
    return {m["name"] for m in tags["models"]}


# ---- merged reads -------------------------------------------------------------------------------


async def test_tags_list_the_union_of_the_fleets_models(start_sim: StartSim) -> None:
    sims = [
        await start_sim(models=["llama3.2:latest", "qwen2.5:0.5b"]),
        await start_sim(models=["qwen2.5:0.5b", "mistral:latest"]),
        await start_sim(models=["nomic-embed-text:latest"]),
    ]
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "GET", "/api/tags")
    assert answer.status == 200
    expected: set[str] = set()
    for sim in sims:
        expected |= names((await direct(sim, "GET", "/api/tags")).json())
    merged = orjson.loads(answer.body)
    assert names(merged) == expected
    assert len(merged["models"]) == len(expected)
    assert not any("corral_digests" in m for m in merged["models"])
    ListResponse.model_validate(merged)


async def test_a_model_with_another_digest_somewhere_names_each_digest(
    start_sim: StartSim,
) -> None:
    one = await start_sim(models=["llama3.2:latest", "qwen2.5:0.5b"])
    two = await start_sim(models=["llama3.2:latest"])
    two.catalogue.pull("llama3.2", now=time.time(), new_digest=True)
    async with fleet_over(one, two) as fleet, serving(fleet) as url:
        merged = orjson.loads((await ask(fleet, "GET", "/api/tags")).body)
        listed = await ollama.AsyncClient(host=url).list()
    by_name = {m["name"]: m for m in merged["models"]}
    digests = {
        "gpu1": one.catalogue.get("llama3.2").digest,  # type: ignore[union-attr]
        "gpu2": two.catalogue.get("llama3.2").digest,  # type: ignore[union-attr]
    }
    assert digests["gpu1"] != digests["gpu2"]
    assert by_name["llama3.2:latest"]["corral_digests"] == digests
    assert "corral_digests" not in by_name["qwen2.5:0.5b"]
    # The official client reads the list, extra field and all.
    assert {m.model for m in listed.models} == {"llama3.2:latest", "qwen2.5:0.5b"}


async def test_openai_models_list_the_union(start_sim: StartSim) -> None:
    one = await start_sim(models=["llama3.2:latest"])
    two = await start_sim(models=["llama3.2:latest", "qwen3:8b"])
    async with fleet_over(one, two) as fleet:
        answer = await ask(fleet, "GET", "/v1/models")
    assert answer.status == 200
    data = orjson.loads(answer.body)["data"]
    assert sorted(m["id"] for m in data) == ["llama3.2:latest", "qwen3:8b"]


async def test_version_is_the_lowest_in_the_fleet(start_sim: StartSim) -> None:
    sims = [
        await start_sim(version="0.12.6"),
        await start_sim(version="0.5.1"),
        await start_sim(version="0.12.0-rc1"),
    ]
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "GET", "/api/version")
    assert answer.status == 200
    assert orjson.loads(answer.body) == {"version": "0.5.1"}


async def test_ps_says_what_is_loaded_where(start_sim: StartSim) -> None:
    one = await start_sim(models=["llama3.2:latest"])
    two = await start_sim(models=["qwen2.5:0.5b"])
    for sim, model in ((one, "llama3.2"), (two, "qwen2.5:0.5b")):
        loaded = await direct(sim, "POST", "/api/generate", {"model": model, "prompt": ""})
        assert loaded.status_code == 200
    async with fleet_over(one, two) as fleet:
        answer = await ask(fleet, "GET", "/api/ps")
    running = {(m["name"], m["corral_backend"]) for m in orjson.loads(answer.body)["models"]}
    assert running == {("llama3.2:latest", "gpu1"), ("qwen2.5:0.5b", "gpu2")}


async def test_a_backend_that_fails_is_left_out_of_a_merge(start_sim: StartSim) -> None:
    one = await start_sim(models=["llama3.2:latest"])
    two = await start_sim(models=["qwen2.5:0.5b"])
    async with fleet_over(one, two) as fleet:
        await two.refuse_connections()
        answer = await ask(fleet, "GET", "/api/tags")
        assert names(orjson.loads(answer.body)) == {"llama3.2:latest"}
        # gpu2 was marked down by that failure: what is left is gpu1, and now it fails too.
        assert [b.name for b in fleet.fleet.usable] == ["gpu1"]
        await one.refuse_connections()
        with pytest.raises(UpstreamError, match="gpu1"):
            await ask(fleet, "GET", "/api/tags")
        with pytest.raises(NoHealthyBackend):
            await ask(fleet, "GET", "/api/tags")


async def test_every_backend_failing_a_merge_is_a_bad_gateway(start_sim: StartSim) -> None:
    sims = [await start_sim(), await start_sim()]
    async with fleet_over(*sims) as fleet:
        for sim in sims:
            sim.faults.update({"scope": "all", "status_500": True})
        with pytest.raises(UpstreamError, match=r"gpu1.*gpu2"):
            await ask(fleet, "GET", "/api/tags")


# ---- choosing targets --------------------------------------------------------------------------


async def test_one_named_backend_answers_byte_for_byte(start_sim: StartSim) -> None:
    one = await start_sim(models=["llama3.2:latest"])
    two = await start_sim(models=["qwen2.5:0.5b"])
    async with fleet_over(one, two) as fleet:
        answer = await ask(fleet, "GET", "/api/tags", backends="gpu2")
        ps = await ask(fleet, "GET", "/api/ps", backends="gpu2")
    own = await direct(two, "GET", "/api/tags")
    assert answer.status == 200
    assert answer.body == own.content
    assert answer.header("content-type") == own.headers["content-type"]
    assert b"corral_backend" not in ps.body


async def test_unknown_or_unusable_backends_in_the_header_are_refused(
    start_sim: StartSim,
) -> None:
    one, two = await start_sim(), await start_sim()
    async with fleet_over(one, two) as fleet:
        with pytest.raises(BadRequest, match="gpu9"):
            await ask(fleet, "GET", "/api/tags", backends="gpu1, gpu9")
        with pytest.raises(BadRequest):
            await ask(fleet, "GET", "/api/tags", backends=" , ")
        fleet.fleet.get("gpu2").draining = True  # type: ignore[union-attr]
        with pytest.raises(NoHealthyBackend, match="gpu2") as caught:
            await ask(fleet, "DELETE", "/api/delete", {"model": "llama3.2"}, backends="gpu2")
        assert caught.value.retry_after is not None
    assert "llama3.2" in two.catalogue


# ---- pull and create ---------------------------------------------------------------------------


async def test_a_pull_reaches_every_backend_as_one_stream(start_sim: StartSim) -> None:
    sims = [await start_sim(models=[]) for _ in range(3)]
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "POST", "/api/pull", {"model": "gemma3:1b"})
    assert answer.status == 200
    assert answer.header("content-type") == "application/x-ndjson"
    lines = answer.lines()
    assert all("gemma3:1b" in sim.catalogue for sim in sims)
    assert lines[-1] == {"status": "success"}
    assert sum(1 for m in lines if m.get("status") == "success") == 1
    assert sum(1 for m in lines if m.get("status") == "pulling manifest") == 1
    size = sims[0].catalogue.get("gemma3:1b").size  # type: ignore[union-attr]
    weights = [m for m in lines if m.get("total") == 3 * size]
    assert weights and weights[-1]["completed"] == 3 * size


async def test_the_official_client_follows_a_merged_pull(start_sim: StartSim) -> None:
    sims = [await start_sim(models=[]) for _ in range(2)]
    async with fleet_over(*sims) as fleet, serving(fleet) as url:
        client = ollama.AsyncClient(host=url)
        parts = [part async for part in await client.pull("qwen3:8b", stream=True)]
        listed = await client.list()
    assert parts[-1].status == "success"
    assert [m.model for m in listed.models] == ["qwen3:8b"]


async def test_a_pull_failing_on_one_backend_ends_with_its_error(start_sim: StartSim) -> None:
    sims = [await start_sim(models=[]) for _ in range(3)]
    async with fleet_over(*sims) as fleet:
        sims[2].faults.update({"scope": "all", "status_500": True})
        answer = await ask(fleet, "POST", "/api/pull", {"model": "gemma3:1b"})
    lines = answer.lines()
    assert answer.status == 200
    assert not any(m.get("status") == "success" for m in lines)
    assert lines[-1] == {"error": "gpu3: llama runner process has terminated: exit status 2"}
    assert "gemma3:1b" in sims[0].catalogue and "gemma3:1b" in sims[1].catalogue


async def test_a_pull_every_backend_refuses_is_answered_with_their_error(
    start_sim: StartSim,
) -> None:
    sims = [await start_sim(), await start_sim()]
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "POST", "/api/pull", {"insecure": True})
    assert answer.status == 400
    assert orjson.loads(answer.body) == {"error": "model is required"}
    assert answer.header("x-corral-results") == "gpu1=400, gpu2=400"


async def test_a_pull_can_be_limited_to_named_backends(start_sim: StartSim) -> None:
    sims = [await start_sim(models=[]) for _ in range(3)]
    twin = await start_sim(models=[])
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "POST", "/api/pull", {"model": "gemma3:1b"}, backends="gpu2")
    own = await direct(twin, "POST", "/api/pull", {"model": "gemma3:1b"})
    assert ["gemma3:1b" in sim.catalogue for sim in sims] == [False, True, False]
    # One target: its own stream, untouched.
    assert answer.body == own.content


async def test_a_pull_without_streaming_answers_once(start_sim: StartSim) -> None:
    sims = [await start_sim(models=[]) for _ in range(2)]
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "POST", "/api/pull", {"model": "gemma3:1b", "stream": False})
    assert answer.status == 200
    assert orjson.loads(answer.body) == {"status": "success"}
    assert answer.header("x-corral-results") == "gpu1=200, gpu2=200"
    assert all("gemma3:1b" in sim.catalogue for sim in sims)


async def test_a_create_reaches_every_backend(start_sim: StartSim) -> None:
    sims = [await start_sim(models=["llama3.2:latest"]) for _ in range(2)]
    body = {"model": "mario", "from": "llama3.2", "system": "You are Mario."}
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "POST", "/api/create", body)
    lines = answer.lines()
    assert all("mario" in sim.catalogue for sim in sims)
    statuses = [m["status"] for m in lines]
    assert statuses[0] == "reading model metadata"
    assert statuses.count("writing manifest") == 1
    assert statuses[-1] == "success" and statuses.count("success") == 1


async def test_a_client_leaving_closes_every_upstream(start_sim: StartSim) -> None:
    sims = [await start_sim(models=[]) for _ in range(2)]
    async with fleet_over(*sims) as fleet:
        for sim in sims:
            sim.faults.update({"scope": "all", "hang": True})
        task = asyncio.ensure_future(ask(fleet, "POST", "/api/pull", {"model": "gemma3:1b"}))
        for sim in sims:
            await sim.stats.wait_started(timeout=5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for sim in sims:
            await sim.stats.wait_cancelled(timeout=1.0)


# ---- delete and copy ---------------------------------------------------------------------------


async def test_delete_where_one_backend_lacks_the_model_reports_each_result(
    start_sim: StartSim,
) -> None:
    one = await start_sim(models=["llama3.2:latest", "qwen2.5:0.5b"])
    two = await start_sim(models=["qwen2.5:0.5b"])
    async with fleet_over(one, two) as fleet:
        answer = await ask(fleet, "DELETE", "/api/delete", {"model": "llama3.2"})
    assert answer.status == 404
    assert answer.header("x-corral-results") == "gpu1=200, gpu2=404"
    own = await direct(two, "DELETE", "/api/delete", {"model": "llama3.2"})
    assert answer.body == own.content  # gpu2's own error, as it said it
    assert "llama3.2" not in one.catalogue


async def test_delete_everywhere_answers_as_ollama_does(start_sim: StartSim) -> None:
    sims = [await start_sim(models=["qwen2.5:0.5b"]) for _ in range(2)]
    async with fleet_over(*sims) as fleet:
        answer = await ask(fleet, "DELETE", "/api/delete", {"model": "qwen2.5:0.5b"})
        # The model index learns of it without waiting for the next health check.
        for _ in range(100):
            if all(b.models == {} for b in fleet.fleet.backends):
                break
            await asyncio.sleep(0.01)
        assert all(b.models == {} for b in fleet.fleet.backends)
    assert (answer.status, answer.body) == (200, b"")
    assert answer.header("x-corral-results") == "gpu1=200, gpu2=200"


async def test_copy_reaches_every_backend(start_sim: StartSim) -> None:
    sims = [await start_sim(models=["llama3.2:latest"]) for _ in range(3)]
    async with fleet_over(*sims) as fleet:
        answer = await ask(
            fleet, "POST", "/api/copy", {"source": "llama3.2", "destination": "backup"}
        )
    assert answer.status == 200
    assert answer.header("x-corral-results") == "gpu1=200, gpu2=200, gpu3=200"
    assert all("backup" in sim.catalogue for sim in sims)


async def test_a_write_to_an_unreachable_backend_reports_a_bad_gateway(
    start_sim: StartSim,
) -> None:
    sims: Sequence[Simulator] = [await start_sim(), await start_sim()]
    async with fleet_over(*sims) as fleet:
        await sims[0].refuse_connections()
        answer = await ask(
            fleet, "POST", "/api/copy", {"source": "llama3.2", "destination": "backup"}
        )
    assert answer.status == 502
    assert answer.header("x-corral-results") == "gpu1=502, gpu2=200"
    assert orjson.loads(answer.body) == {"error": "backend gpu1 is unreachable"}
    assert "backup" in sims[1].catalogue
