"""API keys through a running corral: every place a key can be, every way it can be wrong,
the shapes of the errors, and that no credential ever reaches a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from corral.settings import AuthSettings
from corral.storage.keys import KeyChanges
from tests.auth.gateway import CHAT, Gateway, gateway

MISSING = "API key required: send it as 'Authorization: Bearer <key>' or in an 'X-API-Key' header"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway(tmp_path, auth=AuthSettings(header="X-Corral-Key")) as g:
        await g.create_key("ci")
        yield g


def assert_no_credential_upstream(gw: Gateway) -> None:
    assert gw.sim.seen, "nothing reached the backend"
    for seen in gw.sim.seen:
        assert not {"authorization", "x-api-key", "x-corral-key"} & set(seen.headers), seen
        assert "apikey" not in seen.query and b"apikey" not in seen.body, seen
    for plaintext in gw.keys.values():
        assert plaintext not in gw.sim.everything_seen()


def generations(gw: Gateway) -> list[str]:
    """What reached the backend apart from corral's own health probes."""
    return [s.path for s in gw.sim.seen if s.path not in ("/api/version", "/api/tags", "/api/ps")]


async def test_every_key_source_is_accepted_and_stripped(gw: Gateway) -> None:
    key = gw.keys["ci"]
    answers = [
        await gw.chat(headers={"Authorization": f"Bearer {key}"}),
        await gw.chat(headers={"X-API-Key": key}),
        await gw.chat(headers={"X-Corral-Key": key}),
        await gw.client.post(gw.url + "/api/chat?apikey=" + key, json=CHAT),
        await gw.client.post(gw.url + "/api/chat?stream=x&apikey=" + key + "&a=1", json=CHAT),
        await gw.chat(json={**CHAT, "apikey": key}),
        await gw.client.get(gw.url + "/api/tags", headers={"X-API-Key": key}),
    ]
    assert [r.status_code for r in answers] == [200] * len(answers), [r.text for r in answers]
    assert [s.query for s in gw.sim.seen if s.path == "/api/chat"][4] == "stream=x&a=1"
    assert_no_credential_upstream(gw)


async def test_seed_004_generate_endpoint_takes_the_key_in_the_body(gw: Gateway) -> None:
    body = {"apikey": gw.keys["ci"], "model": "llama3.2", "prompt": "Hello", "stream": False}
    r = await gw.client.post(gw.url + "/generate", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["response"]
    assert gw.sim.seen[-1].path == "/api/generate"
    refused = await gw.client.post(gw.url + "/generate", json={**body, "apikey": "nope"})
    assert (refused.status_code, refused.json()) == (401, {"error": "Invalid API key"})
    assert_no_credential_upstream(gw)


async def test_a_missing_key_is_401_in_ollama_and_openai_shapes(gw: Gateway) -> None:
    native = await gw.chat()
    assert (native.status_code, native.json()) == (401, {"error": MISSING})
    v1 = await gw.client.post(gw.url + "/v1/chat/completions", json=CHAT)
    assert v1.status_code == 401
    assert v1.json() == {
        "error": {
            "message": MISSING,
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    broken_json = await gw.client.post(gw.url + "/api/chat", content=b"{not json")
    assert broken_json.status_code == 401  # who you are comes before what you sent
    assert generations(gw) == []


@pytest.mark.parametrize(
    "presented",
    [
        "corral_" + "A" * 43,
        "sk-llamagate",
        "Bearer",
        "x" * 600,
        "corral_ключ",
        "corral_abc%0d%0aX-Admin-Token:%20x",
    ],
)
async def test_wrong_keys_are_401_and_never_echoed(gw: Gateway, presented: str) -> None:
    r = await gw.client.post(gw.url + "/api/chat?apikey=" + presented, json=CHAT)
    assert (r.status_code, r.json()) == (401, {"error": "Invalid API key"})
    header = await gw.chat(headers={"X-API-Key": presented.encode("utf-8")})
    assert header.status_code == 401
    truncated = await gw.chat(headers={"X-API-Key": gw.keys["ci"][:-1]})
    assert truncated.status_code == 401
    assert generations(gw) == []


async def test_revoked_inactive_and_expired_keys_say_which(gw: Gateway) -> None:
    admin = gw.app.services.key_admin
    revoked = await gw.create_key("revoked")
    await admin.revoke_key("revoked")
    inactive = await gw.create_key("inactive")
    await admin.update_key("inactive", KeyChanges(active=False))
    expired = await gw.create_key("expired", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    for key, message in [
        (revoked, "API key has been revoked"),
        (inactive, "API key is inactive"),
        (expired, "API key has expired"),
    ]:
        r = await gw.chat(headers={"Authorization": f"Bearer {key}"})
        assert (r.status_code, r.json()) == (401, {"error": message})
        v1 = await gw.client.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
        )
        assert v1.json()["error"]["message"] == message
    await admin.update_key("inactive", KeyChanges(active=True))
    assert (await gw.chat(headers={"X-API-Key": inactive})).status_code == 200


async def test_a_key_limited_to_models_gets_403_for_others(gw: Gateway) -> None:
    key = await gw.create_key("narrow", models=("llama3.2", "qwen*"))
    auth = {"Authorization": f"Bearer {key}"}
    assert (await gw.chat(headers=auth)).status_code == 200
    qwen = await gw.chat(headers=auth, json={**CHAT, "model": "qwen2.5:0.5b"})
    assert qwen.status_code == 200
    other = await gw.client.post(
        gw.url + "/api/embed", json={"model": "nomic-embed-text", "input": "x"}, headers=auth
    )
    assert (other.status_code, other.json()) == (
        403,
        {"error": "this API key may not use model 'nomic-embed-text'"},
    )
    v1 = await gw.client.post(
        gw.url + "/v1/embeddings", json={"model": "nomic-embed-text", "input": "x"}, headers=auth
    )
    assert (v1.status_code, v1.json()["error"]["type"]) == (403, "permission_error")
    pull = await gw.client.post(gw.url + "/api/pull", json={"model": "mistral"}, headers=auth)
    assert pull.status_code == 403
    copy = await gw.client.post(
        gw.url + "/api/copy", json={"source": "llama3.2", "destination": "evil"}, headers=auth
    )
    assert copy.status_code == 403
    assert (await gw.client.get(gw.url + "/api/tags", headers=auth)).status_code == 200


async def test_health_wants_a_key_while_liveness_stays_open(gw: Gateway) -> None:
    assert (await gw.client.get(gw.url + "/")).status_code == 200
    assert (await gw.client.get(gw.url + "/healthz")).status_code == 200
    assert (await gw.client.get(gw.url + "/health")).status_code == 401
    bad = await gw.client.get(gw.url + "/health?apikey=nope")
    assert (bad.status_code, bad.json()) == (401, {"error": "Invalid API key"})
    good = await gw.client.get(gw.url + "/health?apikey=" + gw.keys["ci"])
    assert good.status_code == 200 and good.json()["status"] == "healthy"


async def test_without_keys_auth_is_off_but_credentials_are_still_stripped(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path) as gw:
        assert (await gw.chat()).status_code == 200
        r = await gw.client.post(
            gw.url + "/api/chat?apikey=whatever",
            json={**CHAT, "apikey": "x"},
            headers={"Authorization": "Bearer unused", "X-API-Key": "y"},
        )
        assert r.status_code == 200
        assert_no_credential_upstream(gw)


async def test_required_auth_without_any_key_refuses_everyone(tmp_path: Path) -> None:
    async with gateway(tmp_path, auth=AuthSettings(required=True)) as gw:
        assert (await gw.chat()).status_code == 401
        assert (await gw.chat(headers={"X-API-Key": "anything"})).status_code == 401


async def test_keys_declared_in_settings_work_like_stored_ones(tmp_path: Path) -> None:
    settings = AuthSettings(keys=["sk-llamagate"], header="Authorization")
    async with gateway(tmp_path, auth=settings) as gw:
        assert (await gw.chat(headers={"X-API-Key": "sk-llamagate"})).status_code == 200
        assert (await gw.chat(headers={"Authorization": "sk-llamagate"})).status_code == 200
        assert (await gw.chat(headers={"Authorization": "Bearer sk-llamagate"})).status_code == 200
        assert (await gw.chat(headers={"X-API-Key": "sk-llamagat"})).status_code == 401


async def test_the_official_clients_pass_their_key(gw: Gateway) -> None:
    key = gw.keys["ci"]
    client = ollama.AsyncClient(host=gw.url, headers={"Authorization": f"Bearer {key}"})
    reply = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "Hi"}])
    assert reply.message.content
    with pytest.raises(ollama.ResponseError) as err:
        await ollama.AsyncClient(host=gw.url).chat(model="llama3.2", messages=[])
    assert err.value.status_code == 401
    oa = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    completion = await oa.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.choices[0].message.content
    wrong = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()
    assert_no_credential_upstream(gw)


async def test_usage_counters_reach_the_database(gw: Gateway) -> None:
    key = gw.keys["ci"]
    for _ in range(3):
        assert (await gw.chat(headers={"X-API-Key": key})).status_code == 200
    activity = gw.app.services.key_activity
    for _ in range(200):  # the relay's last callback may land just after the answer
        if activity._pending.get(1, [0, 0])[1]:
            break
        await gw.client.get(gw.url + "/healthz")
    await activity.flush()
    record = await gw.app.services.key_admin.show_key("ci")
    assert record.request_count == 3
    assert record.token_count > 0
    assert record.last_used_at is not None


async def test_streamed_answers_count_tokens_too(gw: Gateway) -> None:
    key = gw.keys["ci"]
    async with gw.client.stream(
        "POST", gw.url + "/api/chat", json={**CHAT, "stream": True}, headers={"X-API-Key": key}
    ) as r:
        lines = [line async for line in r.aiter_lines() if line]
    assert r.status_code == 200 and '"done":true' in lines[-1].replace(" ", "")
    activity = gw.app.services.key_activity
    for _ in range(200):
        if activity._pending.get(1, [0, 0])[1]:
            break
        await gw.client.get(gw.url + "/healthz")
    assert activity._pending[1][1] > 0


async def test_the_access_log_names_the_client_never_the_key(gw: Gateway) -> None:
    key = gw.keys["ci"]
    await gw.chat(headers={"X-API-Key": key})
    await gw.client.post(gw.url + "/api/chat?apikey=" + key, json=CHAT)
    await gw.chat(headers={"X-API-Key": key + "x"})
    entries = gw.log.entries
    assert entries and all(e["client"] == "127.0.0.1" for e in entries)
    assert key not in repr(entries)
    assert isinstance(httpx.URL(gw.url).port, int)
