"""The admin HTTP API for keys, and the seed gateways' /config/new-key and /config/reload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from corral.app import App
from corral.settings import BackendSettings, Settings, load_settings
from tests.auth.gateway import CHAT, Gateway, gateway

TOKEN = "admin-s3cret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway(tmp_path, admin_token=TOKEN) as g:
        yield g


async def test_the_admin_token_is_required(gw: Gateway) -> None:
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"X-Admin-Token": "wrong"}]:
        r = await gw.client.get(gw.url + "/admin/keys", headers=headers)
        assert (r.status_code, r.json()) == (401, {"error": "a valid admin token is required"})
    assert (await gw.client.get(gw.url + "/admin/keys", headers={"X-Admin-Token": TOKEN})).is_success
    assert (await gw.client.get(gw.url + "/config/new-key")).status_code == 401
    assert (await gw.client.get(gw.url + "/config/reload")).status_code == 401


async def test_a_client_key_never_opens_the_admin_api(gw: Gateway) -> None:
    key = await gw.create_key("ci")
    r = await gw.client.get(gw.url + "/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    # ... and the admin token is not an API key.
    assert (await gw.chat(headers=ADMIN)).status_code == 401


async def test_key_lifecycle_over_http(gw: Gateway) -> None:
    api = gw.url + "/admin/keys"
    await gw.create_key("other")  # with no key left at all, auth would be off again
    created = await gw.client.post(
        api, headers=ADMIN, json={"name": "ci", "models": ["llama3.2"], "rpm": 60, "expires": "30d"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("corral_") and body["prefix"] == key[:15]
    assert (body["name"], body["status"], body["models"], body["rpm"]) == ("ci", "active", ["llama3.2"], 60)
    assert body["expires_at"] is not None and "digest" not in body
    # The new key works at once on this instance.
    assert (await gw.chat(headers={"X-API-Key": key})).status_code == 200

    listing = await gw.client.get(api, headers=ADMIN)
    assert [k["name"] for k in listing.json()["keys"]] == ["other", "ci"]
    assert key not in listing.text
    shown = await gw.client.get(f"{api}/{body['id']}", headers=ADMIN)
    assert shown.json()["name"] == "ci" and key not in shown.text

    patched = await gw.client.patch(
        f"{api}/ci", headers=ADMIN, json={"models": ["qwen*"], "tpm": 1000, "expires": "never"}
    )
    assert patched.status_code == 200
    assert (patched.json()["models"], patched.json()["tpm"], patched.json()["expires_at"]) == (
        ["qwen*"],
        1000,
        None,
    )
    assert (await gw.chat(headers={"X-API-Key": key})).status_code == 403

    revoked = await gw.client.post(f"{api}/ci/revoke", headers=ADMIN)
    assert revoked.json()["status"] == "revoked"
    r = await gw.chat(headers={"X-API-Key": key}, json={**CHAT, "model": "qwen2.5:0.5b"})
    assert r.json() == {"error": "API key has been revoked"}

    deleted = await gw.client.delete(f"{api}/ci", headers=ADMIN)
    assert deleted.status_code == 200
    assert (await gw.client.get(f"{api}/ci", headers=ADMIN)).status_code == 404
    r = await gw.chat(headers={"X-API-Key": key})
    assert r.json() == {"error": "Invalid API key"}


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({}, "name is required"),
        ({"name": "x", "colour": "red"}, "unknown field(s): colour"),
        ({"name": "12"}, "a key name is"),
        ({"name": "has space"}, "a key name is"),
        ({"name": "x", "rpm": -1}, "rpm must be a whole number"),
        ({"name": "x", "rpm": "many"}, "rpm must be a whole number"),
        ({"name": "x", "expires": "soon"}, "expires must be a duration"),
        ({"name": "x", "models": [1]}, "models must be model names"),
    ],
)
async def test_bad_key_requests_are_400(gw: Gateway, payload: dict[str, object], problem: str) -> None:
    r = await gw.client.post(gw.url + "/admin/keys", headers=ADMIN, json=payload)
    assert r.status_code == 400
    assert r.json()["error"].startswith(problem), r.json()


async def test_names_are_unique_and_unknown_keys_are_404(gw: Gateway) -> None:
    await gw.create_key("ci")
    dup = await gw.client.post(gw.url + "/admin/keys", headers=ADMIN, json={"name": "ci"})
    assert (dup.status_code, dup.json()) == (400, {"error": "a key named 'ci' already exists"})
    missing = await gw.client.post(gw.url + "/admin/keys/nobody/revoke", headers=ADMIN)
    assert missing.status_code == 404
    whole = await gw.client.get(gw.url + "/admin/keys/corral_" + "Z" * 43, headers=ADMIN)
    assert whole.status_code == 404 and "Z" * 43 not in whole.text


async def test_config_new_key_makes_a_working_key(gw: Gateway) -> None:
    r = await gw.client.get(gw.url + "/config/new-key", headers=ADMIN)
    assert r.status_code == 201
    key = r.json()["key"]
    assert r.json()["name"] == "key-" + key[7:15]
    assert (await gw.chat(headers={"Authorization": f"Bearer {key}"})).status_code == 200
    assert (await gw.chat()).status_code == 401  # the first key turned auth on


async def test_config_reload_reads_the_config_file_again(tmp_path: Path) -> None:
    sim_url = "http://127.0.0.1:9"  # never called: the requests below stop at auth
    config = tmp_path / "corral.toml"
    config.write_text(f'admin_token = "{TOKEN}"\n[auth]\nkeys = ["sk-old"]\n')

    def load() -> Settings:
        settings = load_settings(config_file=config, env={}, dotenv_path=None)
        return settings.model_copy(
            update={"port": 0, "data_dir": tmp_path / "data", "backends": [BackendSettings(url=sim_url)]}
        )

    app = App(load(), load=load)
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=app.url) as client:
            assert (await client.get("/api/tags", headers={"X-API-Key": "sk-new"})).status_code == 401
            config.write_text(
                f'admin_token = "{TOKEN}"\nqueue_size = 7\ntrusted_proxies = ["10.0.0.1"]\n'
                '[auth]\nkeys = ["sk-new"]\n'
            )
            r = await client.get("/config/reload", headers=ADMIN)
            assert r.status_code == 200, r.text
            assert r.json() == {
                "status": "reloaded",
                "applied": ["queue_size", "auth", "trusted_proxies"],
                "restart_required": [],
            }
            assert (await client.get("/api/tags", headers={"X-API-Key": "sk-old"})).status_code == 401
            assert app.services.router.queue_size == 7
            assert app.services.access.authenticator.verify("sk-new").name == "settings key 1"

            config.write_text('port = "not a port"\n')
            bad = await client.post("/config/reload", headers=ADMIN)
            assert bad.status_code == 400 and "port" in bad.json()["error"]
            assert app.services.access.authenticator.verify("sk-new")  # unchanged
    finally:
        await app.aclose()


async def test_reload_needs_settings_it_can_read_again(gw: Gateway) -> None:
    r = await gw.client.get(gw.url + "/config/reload", headers=ADMIN)
    assert r.status_code == 400


async def test_deleting_the_last_key_turns_auth_off_unless_required(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        await gw.create_key("only")
        assert (await gw.chat()).status_code == 401
        await gw.app.services.key_admin.delete_key("only")
        assert (await gw.chat()).status_code == 200
    async with gateway(tmp_path, auth={"required": True}) as gw:
        await gw.create_key("only")
        await gw.app.services.key_admin.delete_key("only")
        assert (await gw.chat()).status_code == 401


async def test_the_seed_config_paths_change_nothing_on_head(gw: Gateway) -> None:
    for path in ["/config/new-key", "/config/reload"]:
        r = await gw.client.head(gw.url + path, headers=ADMIN)
        assert r.status_code == 405
    assert (await gw.app.services.key_admin.list_keys()) == []
    assert (await gw.client.post(gw.url + "/admin/reload", headers=ADMIN)).status_code == 400
