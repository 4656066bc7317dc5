"""IP rules through a running corral: denied clients get 403 before anything else runs, and a
client's own X-Forwarded-For counts only when it comes through a trusted proxy."""

from __future__ import annotations

from pathlib import Path

from corral.settings import AuthSettings
from tests.auth.gateway import CHAT, gateway

SPOOF = {"X-Forwarded-For": "203.0.113.9"}


async def test_a_denied_client_gets_403_everywhere_before_anything_else(tmp_path: Path) -> None:
    async with gateway(tmp_path, deny_ips=["127.0.0.0/8"], auth=AuthSettings(required=True)) as gw:
        for method, path in [
            ("GET", "/"),
            ("GET", "/healthz"),
            ("POST", "/api/chat"),
            ("GET", "/admin/keys"),
            ("GET", "/config/new-key"),
            ("GET", "/no/such/path"),
            ("OPTIONS", "/api/chat"),
        ]:
            r = await gw.client.request(method, gw.url + path, json=CHAT)
            assert r.status_code == 403, (method, path, r.text)
        r = await gw.client.post(gw.url + "/v1/chat/completions", json=CHAT)
        assert r.json()["error"]["type"] == "permission_error"
        assert [s.path for s in gw.sim.seen if s.path == "/api/chat"] == []


async def test_an_allow_list_keeps_everyone_else_out(tmp_path: Path) -> None:
    async with gateway(tmp_path, allow_ips=["10.0.0.0/8", "::1"]) as gw:
        assert (await gw.chat()).status_code == 403
    async with gateway(tmp_path, allow_ips=["127.0.0.1"], deny_ips=["127.0.0.1/32"]) as gw:
        assert (await gw.chat()).status_code == 403  # deny wins
    async with gateway(tmp_path, allow_ips=["10.0.0.0/8", "127.0.0.0/8"]) as gw:
        assert (await gw.chat()).status_code == 200


async def test_an_untrusted_client_cannot_spoof_its_way_in_or_out(tmp_path: Path) -> None:
    # Not a trusted proxy: claiming an allowed address does not open the door...
    async with gateway(tmp_path, allow_ips=["203.0.113.9"]) as gw:
        assert (await gw.chat(headers=SPOOF)).status_code == 403
        assert (await gw.chat(headers={"Forwarded": "for=203.0.113.9"})).status_code == 403
    # ... and claiming someone else's address does not dodge a deny rule.
    async with gateway(tmp_path, deny_ips=["127.0.0.1"]) as gw:
        assert (await gw.chat(headers={"X-Forwarded-For": "198.51.100.1"})).status_code == 403
    async with gateway(tmp_path, deny_ips=["203.0.113.9"]) as gw:
        assert (await gw.chat(headers=SPOOF)).status_code == 200
        assert gw.log.entries[-1]["client"] == "127.0.0.1"


async def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    async with gateway(tmp_path, trusted_proxies=["127.0.0.1"], deny_ips=["203.0.113.9"]) as gw:
        assert (await gw.chat(headers=SPOOF)).status_code == 403
        ok = await gw.chat(headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})
        assert ok.status_code == 200  # only the hop the trusted proxy added counts
        entries = gw.log.entries
        assert [e["client"] for e in entries[-2:]] == ["203.0.113.9", "198.51.100.1"]
    async with gateway(tmp_path, trusted_proxies=["127.0.0.1"], allow_ips=["203.0.113.9"]) as gw:
        assert (await gw.chat(headers=SPOOF)).status_code == 200
        assert (await gw.chat(headers={"Forwarded": 'for="203.0.113.9:4711"'})).status_code == 200
        assert (await gw.chat()).status_code == 403


async def test_the_admin_api_behind_a_proxy_is_not_loopback(tmp_path: Path) -> None:
    """Without an admin token only this machine may administer; behind a trusted proxy on this
    machine, that means the real client's address, not the proxy's."""
    async with gateway(tmp_path, trusted_proxies=["127.0.0.1"]) as gw:
        assert (await gw.client.get(gw.url + "/admin/keys")).status_code == 200
        r = await gw.client.get(gw.url + "/admin/keys", headers=SPOOF)
        assert r.status_code == 403
