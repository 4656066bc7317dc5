"""Limits through corral: real sockets, the simulator behind, the memory limiter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner

from corral.app import App
from corral.auth.principal import Principal
from corral.cli.main import main
from corral.http.limit_stage import LimitStage
from corral.limits.memory import MemoryLimiter
from corral.observability.metrics import Metrics
from corral.settings import LimitSettings, ScopeLimits
from tests.auth.gateway import gateway
from tests.harness import running_corral
from tests.integration.conftest import StartSim

MODEL = "llama3.2"
TIMEOUT = 30.0


def generate(num_predict: int | None = 5, **extra: object) -> dict[str, object]:
    options: dict[str, object] = {"temperature": 0.7}
    if num_predict is not None:
        options["num_predict"] = num_predict
    return {"model": MODEL, "prompt": "Why is the sky blue?", "stream": False,
            "options": options, **extra}  # fmt: skip


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll ``check`` until it holds (never a fixed wait)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def memory(app: App) -> MemoryLimiter:
    limiter = app.services.limits.limiter
    assert isinstance(limiter, MemoryLimiter)
    return limiter


async def test_fifty_concurrent_requests_against_a_window_of_ten_let_exactly_ten_through(
    start_sim: StartSim,
) -> None:
    sim = await start_sim()
    limits = LimitSettings(key=ScopeLimits(requests=10, window=60))
    async with running_corral([sim.url], max_concurrency=64, limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post("/api/generate", json=generate()) for _ in range(50))
            )
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    denied = next(a for a in answers if a.status_code == 429)
    assert denied.json() == {"error": "rate limit exceeded: 10 requests per minute per key"}
    assert 1 <= int(denied.headers["Retry-After"]) <= 60
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == "10"
        assert int(answer.headers["X-RateLimit-Reset"]) <= 60
    assert sorted(int(a.headers["X-RateLimit-Remaining"]) for a in answers)[-1] == 9
    text = app.services.metrics.render().decode()
    assert 'corral_rate_limited_total{limit="key_requests"} 40.0' in text


async def test_a_denial_on_v1_has_openai_shape(start_sim: StartSim) -> None:
    sim = await start_sim()
    limits = LimitSettings(ip=ScopeLimits(requests=1, window=30))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    async with running_corral([sim.url], limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            first = await client.post("/v1/chat/completions", json=body)
            second = await client.post("/v1/chat/completions", json=body)
    assert first.status_code == 200
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"] == "rate limit exceeded: 1 requests per 30s per client address"
    assert second.headers["X-RateLimit-Remaining"] == "0"


async def test_a_smooth_rate_lets_a_burst_through_then_denies(start_sim: StartSim) -> None:
    sim = await start_sim()
    limits = LimitSettings(overall=ScopeLimits(rate=0.5, burst=2))
    async with running_corral([sim.url], limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            statuses = [(await client.post("/api/generate", json=generate())).status_code
                        for _ in range(3)]  # fmt: skip
            denied = await client.post("/api/generate", json=generate())
    assert statuses == [200, 200, 429]
    assert denied.json()["error"] == "rate limit exceeded: 0.5 requests per second in total"
    assert 1 <= int(denied.headers["Retry-After"]) <= 2


async def test_concurrent_requests_never_spend_more_than_the_token_limit_plus_one_cap(
    start_sim: StartSim,
) -> None:
    sim = await start_sim(exact_lengths=True)  # every answer as long as its cap: the worst case
    cap = 120
    limits = LimitSettings(key=ScopeLimits(tokens_per_minute=1000))
    async with running_corral([sim.url], max_concurrency=64, limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post("/api/generate", json=generate(cap)) for _ in range(30))
            )
            admitted = [a.json() for a in answers if a.status_code == 200]
            spent = sum(a["prompt_eval_count"] + a["eval_count"] for a in admitted)
            assert all(a["eval_count"] == cap for a in admitted)
            assert 0 < spent <= 1000 + cap
            assert {a.status_code for a in answers} == {200, 429}
            denied = next(a for a in answers if a.status_code == 429)
            assert "1000 tokens per minute per key" in denied.json()["error"]
            assert denied.headers["X-RateLimit-Limit-Tokens"] == "1000"
            # Settled with the real counts: the budget holds exactly what was spent.
            key = "ip:127.0.0.1:tm1000/60"
            await eventually(lambda: memory(app).usage_now(key) == spent)


async def test_a_request_without_a_length_is_capped_at_the_reservation(
    start_sim: StartSim,
) -> None:
    sim = await start_sim(response_tokens=500)
    limits = LimitSettings(key=ScopeLimits(tokens_per_day=100_000), max_tokens=7)
    async with running_corral([sim.url], limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answer = await client.post("/api/generate", json=generate(None))
    assert answer.status_code == 200
    assert answer.json()["eval_count"] == 7
    assert answer.headers["X-RateLimit-Limit-Tokens"] == "100000"


async def test_a_cached_answer_counts_as_a_request_but_not_as_tokens(
    start_sim: StartSim,
) -> None:
    sim = await start_sim()
    limits = LimitSettings(key=ScopeLimits(requests=5, tokens_per_minute=10_000))
    cold = generate(9, options={"temperature": 0, "num_predict": 9})
    async with running_corral([sim.url], limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            first = await client.post("/api/generate", json=cold)
            tokens = "ip:127.0.0.1:tm10000/60"
            spent = first.json()["prompt_eval_count"] + 9
            await eventually(lambda: memory(app).usage_now(tokens) == spent)
            second = await client.post("/api/generate", json=cold)
            assert second.headers["X-Corral-Cache"] == "hit"
            assert second.headers["X-RateLimit-Remaining"] == "3"
            await app.services.limits.drain()
            assert memory(app).usage_now(tokens) == spent


async def test_in_flight_requests_per_key_are_bounded(start_sim: StartSim) -> None:
    sim = await start_sim(first_token_delay=0.3)
    limits = LimitSettings(key=ScopeLimits(concurrency=2))
    async with running_corral([sim.url], limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post("/api/generate", json=generate()) for _ in range(5))
            )
            assert sorted(a.status_code for a in answers) == [200, 200, 429, 429, 429]
            denied = next(a for a in answers if a.status_code == 429)
            assert denied.json()["error"] == "rate limit exceeded: 2 concurrent requests per key"
            await eventually(lambda: memory(app).usage_now("ip:127.0.0.1:c2/3600") == 0)
            assert (await client.post("/api/generate", json=generate())).status_code == 200


async def test_without_limits_answers_carry_no_limit_headers(start_sim: StartSim) -> None:
    sim = await start_sim()
    async with running_corral([sim.url]) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answer = await client.post("/api/generate", json=generate())
    assert answer.status_code == 200
    assert "X-RateLimit-Limit" not in answer.headers


async def test_a_keys_current_use_is_reported_against_its_limits() -> None:
    limits = LimitSettings(key=ScopeLimits(requests=10, rate=5, tokens_per_minute=1000))
    stage = LimitStage(MemoryLimiter(), limits, Metrics())
    principal = Principal(3, "ci", tpm=500, max_concurrency=2)
    checks = stage.policy.checks("10.0.0.1", principal, None)
    for check in checks:
        await stage.limiter.hit(check.key, check.rate, 40 if check.counts == "tokens" else 1)
    report = {row["name"]: (row["used"], row["max"]) for row in await stage.key_usage(principal)}
    assert report == {"key_requests": (1, 10), "key_tokens_per_minute": (40, 500),
                      "key_concurrency": (1, 2)}  # fmt: skip
    await stage.aclose()


async def test_a_keys_own_rpm_limits_that_key_only(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        slow = await gw.create_key("slow", rpm=2)
        other = await gw.create_key("other")
        answers = [await gw.chat(headers={"Authorization": f"Bearer {slow}"}) for _ in range(3)]
        free = [await gw.chat(headers={"Authorization": f"Bearer {other}"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"] == "rate limit exceeded: 2 requests per minute per key"
    assert answers[0].headers["X-RateLimit-Limit"] == "2"
    assert [a.status_code for a in free] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in free[0].headers


async def test_keys_show_and_the_admin_api_report_a_keys_use_of_its_limits(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path, data_dir=tmp_path / "data") as gw:
        plaintext = await gw.create_key("metered", rpm=5)
        for _ in range(2):
            answer = await gw.chat(headers={"Authorization": f"Bearer {plaintext}"})
            assert answer.status_code == 200
        async with httpx.AsyncClient(base_url=gw.url, timeout=TIMEOUT) as client:
            shown = (await client.get("/admin/keys/metered")).json()
        assert shown["limit_usage"] == [
            {"limit": "5 requests per minute per key", "name": "key_requests", "max": 5, "used": 2}
        ]
        result = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["keys", "show", "metered", "--url", gw.url, "--data-dir", str(tmp_path / "data")],
        )
    assert result.exit_code == 0, result.output
    assert "5 requests per minute per key: 2 of 5 used" in result.output
    assert plaintext not in result.output


async def test_a_request_over_its_token_budget_takes_nothing_from_its_request_limit(
    start_sim: StartSim,
) -> None:
    sim = await start_sim()
    limits = LimitSettings(key=ScopeLimits(requests=10, tokens_per_minute=80))
    async with running_corral([sim.url], limits=limits) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            denied = await client.post("/api/generate", json=generate(100))
            fits = await client.post("/api/generate", json=generate(5))
        # The request limit, checked first, counts only the request that was let through.
        assert memory(app).usage_now("ip:127.0.0.1:r10/60") == 1
    assert denied.status_code == 429
    assert "more than 80 tokens per minute per key" in denied.json()["error"]
    assert fits.status_code == 200
    assert fits.headers["X-RateLimit-Remaining"] == "9"
