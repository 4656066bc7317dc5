"""Warm-model affinity: prefer a backend holding the model, and weigh waiting against loading."""

from __future__ import annotations

import asyncio
import time

import pytest

from corral.backends.backend import Backend, BackendSpec
from corral.backends.models import (
    LoadedModel,
    keep_alive_seconds,
    normalize_model,
    parse_ps,
    parse_tags,
)
from corral.context import Call
from corral.errors import ModelNotFound
from corral.observability.usage import final_counts
from corral.routing.balancer import LeastBusy, WarmAffinity
from corral.routing.queue import Router

MODEL = "llama3.2:latest"


def call(num_ctx: int | None = None, model: str = "llama3.2") -> Call:
    return Call("ollama", "/api/chat", model, False, b"{}", {}, normalize_model(model), num_ctx)


def backend(name: str, slots: int = 1, warm: bool = False, ctx: int | None = None) -> Backend:
    b = Backend(BackendSpec(name, "127.0.0.1", 1, slots))
    b.models = {MODEL: "digest"}
    if warm:
        b.loaded[MODEL] = LoadedModel(MODEL, time.time() + 300, ctx)
    return b


def test_warm_backend_wins_among_free_ones() -> None:
    cold, warm = backend("cold", 4), backend("warm", 4, warm=True)
    balancer = WarmAffinity(LeastBusy())
    assert all(balancer.choose([cold, warm], call()) is warm for _ in range(5))


def test_a_different_num_ctx_is_not_warm() -> None:
    b = backend("b", warm=True, ctx=4096)
    assert b.is_warm(MODEL, 4096)
    assert b.is_warm(MODEL, None)
    assert not b.is_warm(MODEL, 8192)


def test_expired_model_is_not_warm() -> None:
    b = backend("b")
    b.loaded[MODEL] = LoadedModel(MODEL, time.time() - 1, None)
    assert not b.is_warm(MODEL, None)


def test_waiting_is_chosen_while_cheaper_than_a_load() -> None:
    warm = backend("warm", slots=2, warm=True)
    warm.latency = 1.0
    cold = backend("cold", slots=2)
    balancer = WarmAffinity(LeastBusy(), load_estimate=5.0)
    # expected wait = (waiting + 1) * 1.0 / 2 slots
    assert balancer.should_wait([warm], [cold], MODEL, waiting=0)
    assert balancer.should_wait([warm], [cold], MODEL, waiting=8)
    assert not balancer.should_wait([warm], [cold], MODEL, waiting=9)
    # A load time learned from Ollama's load_duration replaces the estimate.
    cold.load_seconds[MODEL] = 0.4
    assert not balancer.should_wait([warm], [cold], MODEL, waiting=0)


async def test_router_queues_for_the_warm_backend_until_a_cold_load_is_cheaper() -> None:
    warm = backend("warm", slots=1, warm=True)
    warm.latency = 1.0
    cold = backend("cold", slots=1)
    router = Router([warm, cold], WarmAffinity(LeastBusy(), load_estimate=3.0), queue_size=50)
    first = await router.acquire(call())
    assert first.backend is warm
    waiting = [asyncio.create_task(router.acquire(call())) for _ in range(2)]
    while router.queued < 2:
        await asyncio.sleep(0)
    # Two wait for the warm one (1 s and 2 s expected), the third would wait 3 s: load instead.
    third = await router.acquire(call())
    assert third.backend is cold
    for task in waiting:
        task.cancel()


async def test_model_on_no_backend_is_404_and_only_holders_are_candidates() -> None:
    a, b = backend("a"), backend("b")
    b.models = {"qwen2.5:0.5b": "d"}
    router = Router([a, b], LeastBusy())
    assert {(await router.acquire(call())).backend.name for _ in range(1)} == {"a"}
    with pytest.raises(ModelNotFound) as err:
        await router.acquire(call(model="mistral"))
    assert err.value.status == 404
    assert err.value.message == 'model "mistral" not found, try pulling it first'


async def test_unknown_model_lists_do_not_exclude_a_backend() -> None:
    a = backend("a")
    a.models = None  # not read yet
    router = Router([a], LeastBusy())
    assert (await router.acquire(call(model="anything"))).backend is a


def test_model_names_normalise_like_ollama() -> None:
    assert normalize_model("llama3") == "llama3:latest"
    assert normalize_model("LLaMA3:8B") == "llama3:8b"
    assert normalize_model("library/llama3") == "llama3:latest"
    assert normalize_model("registry.ollama.ai/library/llama3:latest") == "llama3:latest"
    assert normalize_model("hf.co/user/repo") == "hf.co/user/repo:latest"
    assert normalize_model("user/model:q4") == "user/model:q4"


def test_parsing_ollama_answers() -> None:
    assert parse_tags({"models": [{"name": "llama3", "digest": "abc"}]}) == {"llama3:latest": "abc"}
    assert parse_tags({"unexpected": True}) is None
    loaded = parse_ps(
        {
            "models": [
                {
                    "name": "llama3:latest",
                    "expires_at": "2024-06-04T14:38:31.83753-07:00",
                    "context_length": 4096,
                    "size_vram": 5,
                }
            ]
        }
    )
    entry = loaded["llama3:latest"]
    assert entry.context_length == 4096
    assert entry.expires_at is not None and abs(entry.expires_at - 1717537111.83753) < 1e-3
    assert final_counts(b'{"done":true,"load_duration":2500000000}').load_seconds == 2.5
    assert final_counts(b'{"done":true}').load_seconds is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 300.0), (0, 0.0), ("0", 0.0), ("5m", 300.0), ("1h30m", 5400.0), (-1, -1.0), ("-1m", -1.0), ("10s", 10.0), (3.5, 3.5), ("junk", 300.0)],
)
def test_keep_alive_durations(value: object, seconds: float) -> None:
    assert keep_alive_seconds(value) == seconds
