"""Each key's use of its own limits in /metrics, scraped from a running corral and parsed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from corral.app import App
from corral.http.limit_stage import LimitStage
from corral.limits.memory import MemoryLimiter
from corral.observability.metrics import Metrics
from corral.settings import LimitSettings, ScopeLimits
from tests.auth.gateway import Gateway, gateway
from tests.limits.test_gateway_limits import eventually
from tests.stores.backing import RedisSpace

Series = dict[tuple[str, str, str], float]  # (family, key, limit) -> value
FAMILIES = ("corral_key_limit_used", "corral_key_limit")
# A budget every key has; "metered" adds its own requests per minute and concurrency.
LIMITS = LimitSettings(key=ScopeLimits(tokens_per_minute=100_000))


def key_limits(text: str) -> Series:
    """The per-key limit series of a scrape; every one of them is labelled by key and limit
    only (never a client address)."""
    found: Series = {}
    for family in text_string_to_metric_families(text):
        if family.name not in FAMILIES:
            continue
        assert family.type == "gauge"
        for sample in family.samples:
            assert set(sample.labels) == {"key", "limit"}
            found[(sample.name, sample.labels["key"], sample.labels["limit"])] = sample.value
    return found


def labels(app: App) -> dict[str, str]:
    """Key name -> the key's label in metrics (its id)."""
    return {e.principal.name: e.principal.label for e in app.services.keyring.entries.values()}


async def scrape(gw: Gateway) -> str:
    answer = await gw.client.get(gw.url + "/metrics")
    assert answer.status_code == 200
    return answer.text


async def use_keys(gw: Gateway) -> tuple[str, str]:
    """Two keys, "metered" used twice; both plaintexts."""
    metered = await gw.create_key("metered", rpm=5, max_concurrency=3)
    plain = await gw.create_key("plain")
    await gw.app.services.keyring.load()  # at once, whatever carries key changes to the ring
    for _ in range(2):
        answer = await gw.chat(headers={"Authorization": f"Bearer {metered}"})
        assert answer.status_code == 200
    await gw.app.services.limits.drain()
    return metered, plain


def expected(gw: Gateway, spent: float) -> Series:
    ids = labels(gw.app)
    m, p = ids["metered"], ids["plain"]
    return {
        ("corral_key_limit_used", m, "key_requests"): 2,
        ("corral_key_limit", m, "key_requests"): 5,
        ("corral_key_limit_used", m, "key_tokens_per_minute"): spent,
        ("corral_key_limit", m, "key_tokens_per_minute"): 100_000,
        ("corral_key_limit_used", m, "key_concurrency"): 0,
        ("corral_key_limit", m, "key_concurrency"): 3,
        ("corral_key_limit_used", p, "key_tokens_per_minute"): 0,
        ("corral_key_limit", p, "key_tokens_per_minute"): 100_000,
    }


def reported(gw: Gateway) -> set[str]:
    return {key for key, *_ in gw.app.services.limits.key_limit_use()}


def tokens_spent(gw: Gateway) -> float:
    limiter = gw.app.services.limits.limiter
    assert isinstance(limiter, MemoryLimiter)
    key = next(k for k in limiter._state if k.startswith("key:") and ":tm" in k)
    return limiter.usage_now(key)


async def test_metrics_show_each_keys_use_of_its_limits(tmp_path: Path) -> None:
    async with gateway(tmp_path, limits=LIMITS) as gw:
        secrets = await use_keys(gw)
        text = await scrape(gw)
        spent = tokens_spent(gw)
        assert spent > 0
        assert key_limits(text) == expected(gw, spent)
        assert not any(secret in text for secret in secrets)
        # A revoked key is no longer reported.
        await gw.app.services.key_admin.revoke_key("plain")
        await gw.app.services.keyring.load()
        ids = labels(gw.app)
        await eventually(lambda: reported(gw) == {ids["metered"]})
        after = key_limits(await scrape(gw))
    assert {key for _, key, _ in after} == {ids["metered"]}


async def test_with_redis_the_metrics_come_from_a_background_refresh(
    tmp_path: Path, redis_space: RedisSpace
) -> None:
    shared = {"redis_url": redis_space.url, "redis_prefix": redis_space.prefix}
    async with gateway(tmp_path, limits=LIMITS, **shared) as gw:
        gw.app.services.limits.use_interval = 0.05
        secrets = await use_keys(gw)
        await scrape(gw)  # the first scrape starts the refresh; it never waits for Redis
        found: Series = {}

        async def refreshed() -> None:
            nonlocal found
            while True:
                found = key_limits(await scrape(gw))
                ids = labels(gw.app)
                if found.get(("corral_key_limit_used", ids["metered"], "key_requests")) == 2:
                    return
                await asyncio.sleep(0.02)

        await asyncio.wait_for(refreshed(), 5.0)
        text = await scrape(gw)
    spent = found[("corral_key_limit_used", labels(gw.app)["metered"], "key_tokens_per_minute")]
    assert spent > 0
    assert found == expected(gw, spent)
    assert not any(secret in text for secret in secrets)


async def test_keys_declared_in_settings_are_reported_by_their_label(tmp_path: Path) -> None:
    declared = "sk-declared-in-settings-0123456789"
    limits = LimitSettings(key=ScopeLimits(requests=7))
    async with gateway(tmp_path, limits=limits, auth={"keys": [declared]}) as gw:
        answer = await gw.chat(headers={"Authorization": f"Bearer {declared}"})
        assert answer.status_code == 200
        text = await scrape(gw)
    assert key_limits(text) == {
        ("corral_key_limit_used", "settings key 1", "key_requests"): 1,
        ("corral_key_limit", "settings key 1", "key_requests"): 7,
    }
    assert declared not in text


async def test_a_stage_without_keys_to_report_adds_empty_families() -> None:
    metrics = Metrics()
    stage = LimitStage(MemoryLimiter(), LIMITS, metrics)
    assert key_limits(metrics.render().decode()) == {}
    await stage.aclose()
