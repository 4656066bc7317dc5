"""Webhooks through a running corral: signed posts to a receiver on a real port, retries
through the outbox, a restart in the middle, and no key in any payload or log line."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.app import App
from corral.observability.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from corral.settings import LimitSettings, ScopeLimits, WebhookSettings
from corral.storage.keys import KeySpec
from corral.storage.outbox import OutboxItem
from tests.auth.gateway import CHAT, RecordingSimulator
from tests.harness import running_corral
from tests.webhooks.receiver import Receiver

FAST = WebhookSettings(interval=0.02)


def no_backoff(attempts: int) -> float:
    return 0.0




@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.aclose()


@pytest.fixture
async def sim() -> AsyncIterator[RecordingSimulator]:
    found = RecordingSimulator()
    await found.start("127.0.0.1", 0)
    yield found
    await found.aclose()


async def add_webhook(app: App, url: str, events: Any) -> tuple[int, str]:
    async with httpx.AsyncClient() as client:
        answer = await client.post(app.url + "/admin/webhooks", json={"url": url, "events": events})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["id"], body["secret"]


async def deliveries(app: App, webhook_id: int) -> list[OutboxItem]:
    return await app.services.key_admin.webhook_deliveries(webhook_id)


async def wait_delivered(app: App, webhook_id: int) -> list[OutboxItem]:
    async with asyncio.timeout(10.0):
        while True:
            items = await deliveries(app, webhook_id)
            if items and all(item.delivered_at is not None for item in items):
                return items
            await asyncio.sleep(0.02)


async def test_receiver_gets_signed_deliveries_that_verify_and_carry_no_key(
    tmp_path: Path, sim: RecordingSimulator, receiver: Receiver, corral_log: io.StringIO
) -> None:
    async with (
        running_corral([sim.url], data_dir=tmp_path / "data", webhooks=FAST) as (app, log),
        httpx.AsyncClient(timeout=10) as client,
    ):
        hook_id, secret = await add_webhook(app, receiver.url, "*")
        assert secret.startswith("whsec_")
        hooks = app.services.webhooks
        assert hooks is not None
        async with asyncio.timeout(5):  # the next round learns of the subscription
            while not hooks.wants_requests:
                await asyncio.sleep(0.01)
        record, plaintext = await app.services.key_admin.create_key(KeySpec(name="ci"))
        answer = await client.post(
            app.url + "/api/chat", json=CHAT, headers={"Authorization": f"Bearer {plaintext}"}
        )
        assert answer.status_code == 200
        app.services.backends[0].mark_down("pulled the plug")
        await app.services.key_admin.revoke_key("ci")
        await receiver.wait_for(5)
        events = receiver.events()
        assert sorted(events) == [
            "backend.down", "key.created", "key.revoked", "model.loaded", "request.completed"
        ]
        for post in receiver.delivered:
            timestamp = post.headers[TIMESTAMP_HEADER.lower()]
            assert verify(secret, timestamp, post.body, post.headers[SIGNATURE_HEADER.lower()])
            given = post.headers[SIGNATURE_HEADER.lower()]
            assert not verify("whsec_wrong", timestamp, post.body, given)
            assert post.headers["x-corral-event"] == post.payload["event"]
        by_event = {str(p.payload["event"]): p.payload["data"] for p in receiver.delivered}
        assert by_event["key.created"] == {"key": {"id": record.id, "name": "ci"}}
        completed = by_event["request.completed"]
        assert isinstance(completed, dict)
        assert completed["key"] == {"id": record.id, "name": "ci"}
        assert completed["status"] == 200 and completed["route"] == "/api/chat"
        assert by_event["model.loaded"] == {"backend": sim_name(app), "model": "llama3.2:latest"}
        assert by_event["backend.down"] == {
            "backend": sim_name(app), "url": sim.url, "reason": "pulled the plug"
        }
        await wait_delivered(app, hook_id)
        everything = "\n".join(
            [corral_log.getvalue(), repr(log.entries), *(p.body.decode() for p in receiver.posts)]
        )
        assert plaintext not in everything
        assert plaintext.removeprefix("corral_") not in everything
        assert secret not in everything


def sim_name(app: App) -> str:
    return app.services.backends[0].name


async def test_a_receiver_failing_three_times_gets_exactly_one_delivery(
    tmp_path: Path, sim: RecordingSimulator
) -> None:
    receiver = Receiver(fail_first=3)
    await receiver.start()
    try:
        async with running_corral([sim.url], data_dir=tmp_path / "data", webhooks=FAST) as (
            app,
            _,
        ):
            assert app.services.webhooks is not None
            app.services.webhooks.backoff = no_backoff
            hook_id, secret = await add_webhook(app, receiver.url, ["key.created"])
            await app.services.key_admin.create_key(KeySpec(name="ci"))
            (item,) = await wait_delivered(app, hook_id)
            assert (item.attempts, item.last_error) == (4, None)
        assert [post.status for post in receiver.posts] == [500, 500, 500, 200]
        assert len({post.headers["x-corral-delivery"] for post in receiver.posts}) == 1
        assert len({post.payload["id"] for post in receiver.posts}) == 1
    finally:
        await receiver.aclose()


async def test_a_restart_between_failures_loses_no_delivery(
    tmp_path: Path, sim: RecordingSimulator
) -> None:
    receiver = Receiver(fail_first=3)
    await receiver.start()
    settings: dict[str, Any] = {"data_dir": tmp_path / "data", "webhooks": FAST}
    try:
        async with running_corral([sim.url], **settings) as (first, _):
            assert first.services.webhooks is not None
            # The first corral waits an hour after each failure: it stops owing the delivery.
            first.services.webhooks.backoff = lambda attempts: 3600.0
            hook_id, _secret = await add_webhook(first, receiver.url, ["key.created"])
            await first.services.key_admin.create_key(KeySpec(name="ci"))
            await receiver.wait_for(1, delivered=False)
            (owed,) = await deliveries(first, hook_id)
            assert owed.delivered_at is None
        async with running_corral([sim.url], **settings) as (second, _):
            hooks = second.services.webhooks
            assert hooks is not None
            # Two hours on: the hour-long wait the first corral set is over.
            hooks.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
            hooks.backoff = no_backoff
            (item,) = await wait_delivered(second, hook_id)
        assert item.attempts == 4 and item.id == owed.id
        assert [post.status for post in receiver.posts] == [500, 500, 500, 200]
        assert len(receiver.delivered) == 1
    finally:
        await receiver.aclose()


async def test_events_queued_at_shutdown_are_delivered_after_the_next_start(
    tmp_path: Path, sim: RecordingSimulator, receiver: Receiver
) -> None:
    slow = WebhookSettings(interval=3600)
    settings: dict[str, Any] = {"data_dir": tmp_path / "data"}
    async with running_corral([sim.url], webhooks=slow, **settings) as (first, _):
        assert first.services.webhooks is not None
        first.services.webhooks.deliver = False
        await add_webhook(first, receiver.url, ["backend.down"])
        await first.services.webhooks.pump()  # the subscription is known
        first.services.backends[0].mark_down("gone")  # queued in memory only
    async with running_corral([sim.url], webhooks=FAST, **settings):
        await receiver.wait_for(1)
    assert receiver.events() == ["backend.down"]


async def test_webhooks_are_managed_through_the_admin_api(
    tmp_path: Path, sim: RecordingSimulator
) -> None:
    async with (
        running_corral([sim.url], data_dir=tmp_path / "data") as (app, _),
        httpx.AsyncClient() as client,
    ):
        base = app.url + "/admin/webhooks"
        made = await client.post(base, json={"url": "https://example.com/h"})
        assert made.status_code == 201
        assert "request.completed" not in made.json()["events"]
        listed = (await client.get(base)).json()["webhooks"]
        assert [h["url"] for h in listed] == ["https://example.com/h"]
        assert "secret" not in listed[0]
        bad = await client.post(base, json={"url": "https://example.com/h", "events": ["nope"]})
        assert bad.status_code == 400
        hook_id = made.json()["id"]
        assert (await client.get(f"{base}/{hook_id}/deliveries")).json() == {"deliveries": []}
        assert (await client.delete(f"{base}/{hook_id}")).status_code == 200
        assert (await client.delete(f"{base}/{hook_id}")).status_code == 404


async def test_a_receiver_that_never_answers_does_not_slow_requests(
    tmp_path: Path, sim: RecordingSimulator
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hooks = WebhookSettings(interval=0.02, timeout=30.0)
    try:
        async with (
            running_corral([sim.url], data_dir=tmp_path / "data", webhooks=hooks) as (app, _),
            httpx.AsyncClient(timeout=5) as client,
        ):
            await add_webhook(app, f"http://127.0.0.1:{port}/hook", "*")
            webhooks = app.services.webhooks
            assert webhooks is not None
            async with asyncio.timeout(5):
                while not (webhooks.wants_requests and held):
                    app.services.backends[0].mark_down("nudge")  # something to post
                    app.services.backends[0].mark_up()
                    await asyncio.sleep(0.02)
            async with asyncio.timeout(5):  # 20 requests while every post hangs
                for _ in range(20):
                    assert (await client.post(app.url + "/api/chat", json=CHAT)).status_code == 200
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_denied_request_is_a_limit_exceeded_event_without_the_key(
    tmp_path: Path, sim: RecordingSimulator, receiver: Receiver
) -> None:
    limits = LimitSettings(key=ScopeLimits(requests=1, window=60))
    async with (
        running_corral(
            [sim.url], data_dir=tmp_path / "data", webhooks=FAST, limits=limits
        ) as (app, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        hook_id, _ = await add_webhook(app, receiver.url, ["limit.exceeded"])
        record, plaintext = await app.services.key_admin.create_key(KeySpec(name="tight"))
        auth = {"Authorization": f"Bearer {plaintext}"}
        assert (await client.post(app.url + "/api/chat", json=CHAT, headers=auth)).status_code == 200
        assert (await client.post(app.url + "/api/chat", json=CHAT, headers=auth)).status_code == 429
        await receiver.wait_for(1)
        await wait_delivered(app, hook_id)
        scraped = (await client.get(app.url + "/metrics")).text
        assert "corral_webhook_deliveries_total 1.0" in scraped.splitlines()
        assert "corral_webhook_failures_total 0.0" in scraped.splitlines()
    (post,) = receiver.delivered
    assert post.payload["event"] == "limit.exceeded"
    data = post.payload["data"]
    assert isinstance(data, dict)
    assert data["key_id"] == record.id and data["key_name"] == "tight"
    assert "key" in str(data["limit"])
    assert plaintext not in post.body.decode()


async def test_a_corral_without_webhooks_claims_nothing_from_the_outbox_until_one_is_added(
    tmp_path: Path, sim: RecordingSimulator, receiver: Receiver
) -> None:
    async with running_corral([sim.url], webhooks=FAST, data_dir=tmp_path / "data") as (app, _):
        hooks = app.services.webhooks
        assert hooks is not None
        rounds = claims = 0
        real_pump, real_claim = hooks.pump, hooks.outbox.claim

        async def pump() -> int:
            nonlocal rounds
            rounds += 1
            return await real_pump()

        async def claim(*args: Any, **kwargs: Any) -> list[OutboxItem]:
            nonlocal claims
            claims += 1
            return await real_claim(*args, **kwargs)

        hooks.pump = pump  # type: ignore[method-assign]
        hooks.outbox.claim = claim  # type: ignore[method-assign]
        async with asyncio.timeout(10.0):
            while rounds < 5:
                await asyncio.sleep(0.02)
        # Rounds went by, but no write to claim deliveries that no webhook could receive.
        assert claims == 0

        await add_webhook(app, receiver.url, ["backend.down"])
        app.services.backends[0].mark_down("gone")
        await receiver.wait_for(1)
        assert claims > 0
