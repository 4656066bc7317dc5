"""/metrics after a known mix of requests: exact counts and labels, parsed, not grepped."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import running_corral
from tests.integration.conftest import StartSim

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "one two three"}]}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


async def test_request_counts_tokens_and_fleet_gauges_are_exact(start_sim: StartSim) -> None:
    sim = await start_sim()
    async with running_corral([sim.url], metrics_namespace="gw") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            for _ in range(3):
                r = await client.post("/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 5}})
                assert r.status_code == 200
            r = await client.post("/api/generate", json={"model": "llama3.2", "prompt": "a b", "options": {"num_predict": 7}})
            assert r.status_code == 200
            assert (await client.post("/api/chat", content=b"{oops")).status_code == 400
            assert (await client.get("/api/tags")).status_code == 200
            assert (await client.get("/nowhere/at/all")).status_code == 404
            text = (await client.get("/metrics")).text
    m = samples(text)
    assert value(m, "gw_requests_total", method="POST", endpoint="/api/chat", status="200") == 3
    assert value(m, "gw_requests_total", method="POST", endpoint="/api/chat", status="400") == 1
    assert value(m, "gw_requests_total", method="POST", endpoint="/api/generate", status="200") == 1
    assert value(m, "gw_requests_total", method="GET", endpoint="/api/tags", status="200") == 1
    # an unknown path is one bounded label, not the raw path
    assert value(m, "gw_requests_total", method="GET", endpoint="unmatched", status="404") == 1
    assert value(m, "gw_requests_success_total", method="POST", endpoint="/api/chat") == 3
    assert value(m, "gw_requests_failure_total", method="POST", endpoint="/api/chat") == 1
    assert value(m, "gw_requests_duration_seconds_count", method="POST", endpoint="/api/chat") == 4
    assert value(m, "gw_ollama_servers_total") == 1
    assert value(m, "ollama_requests_total") == 7
    assert value(m, "ollama_request_latency_seconds_count") == 7
    # tokens, from Ollama's final chunks: 3 x 5 generated on chat, 7 on generate
    model = "llama3.2:latest"
    assert value(m, "corral_generated_tokens_total", model=model, key="") == 3 * 5 + 7
    assert value(m, "corral_prompt_tokens_total", model=model, key="") > 0
    assert value(m, "corral_time_to_first_token_seconds_count", model=model, backend=app.services.backends[0].name) == 4
    assert value(m, "corral_backend_up", backend=app.services.backends[0].name) == 1
    assert value(m, "corral_in_flight", backend=app.services.backends[0].name) == 0
    assert value(m, "corral_backend_loaded_models", backend=app.services.backends[0].name, model=model) == 1
    # the per-IP series is off by default: client addresses are unbounded
    assert not any(name.startswith("gw_requests_by_ip") for name, _ in m)


async def test_per_ip_series_and_token_protection_are_opt_in(start_sim: StartSim) -> None:
    sim = await start_sim()
    async with running_corral(
        [sim.url], metrics_by_ip=True, metrics_require_token=True, admin_token="adm", metrics_path="/prom"
    ) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            assert (await client.get("/api/version")).status_code == 200
            assert (await client.get("/prom")).status_code == 401
            r = await client.get("/prom", headers={"Authorization": "Bearer adm"})
            assert r.status_code == 200
            assert (await client.get("/metrics")).status_code == 404
    m = samples(r.text)
    assert value(m, "gateway_requests_by_ip_total", ip="127.0.0.1", endpoint="/api/version", status="200") == 1
