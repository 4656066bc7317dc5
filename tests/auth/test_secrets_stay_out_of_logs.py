"""No key ever appears in a log line, an access-log entry, an error message or a backend request,
however it was made and however it was sent, right or wrong."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

from corral.settings import AuthSettings
from tests.auth.gateway import CHAT, gateway

SRC = Path(__file__).resolve().parents[2] / "src"
TOKEN = "admin-token-for-logs"




def secrets_in(text: str, keys: list[str]) -> list[str]:
    # The part after the visible prefix is the secret; look for it too, in case of slicing.
    return [k for k in keys if k in text or k[15:] in text]


async def test_no_key_is_ever_logged(tmp_path: Path, corral_log: io.StringIO) -> None:
    data = tmp_path / "data"
    settings_key = "sk-settings-key-0123456789"
    async with gateway(
        tmp_path, data_dir=data, admin_token=TOKEN, auth=AuthSettings(keys=[settings_key])
    ) as gw:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        made = [
            (await gw.client.post(gw.url + "/admin/keys", headers=admin, json={"name": "api"}))
            .json()["key"],
            (await gw.client.get(gw.url + "/config/new-key", headers=admin)).json()["key"],
            await gw.create_key("in-process", models=("llama3.2",)),
        ]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        environ.update(CORRAL_DATA_DIR=str(data), PYTHONPATH=str(SRC), CORRAL_LOG_LEVEL="debug")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral", "keys", "create", "--name", "from-cli",
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode == 0, err
        made.append(out.decode().strip())
        assert secrets_in(err.decode(), made) == []
        every_key = [*made, settings_key]

        for key in every_key:
            await gw.chat(headers={"Authorization": f"Bearer {key}"})
            await gw.chat(headers={"X-API-Key": key})
            await gw.client.post(gw.url + "/api/chat?apikey=" + key, json=CHAT)
            await gw.chat(json={**CHAT, "apikey": key})
            await gw.chat(headers={"X-API-Key": key[:-1]})
            await gw.chat(headers={"X-API-Key": (key + "\u00e9").encode()})
            await gw.client.post(
                gw.url + "/api/embed",
                json={"model": "nomic-embed-text", "input": "x", "apikey": key},
            )
            await gw.client.get(gw.url + "/health?apikey=" + key)
        await gw.app.services.key_admin.revoke_key("api")
        await gw.chat(headers={"X-API-Key": made[0]})
        await gw.client.get(gw.url + "/admin/keys/" + made[1], headers=admin)
        await gw.client.get(gw.url + "/admin/keys/" + made[1][:-2] + "xx", headers=admin)
        await gw.app.services.key_admin.delete_key(made[1])
        access = repr(gw.log.entries)
        upstream = gw.sim.everything_seen()

    logged = corral_log.getvalue()
    assert "API key created" in logged  # the log is really captured
    assert secrets_in(logged, every_key) == []
    assert secrets_in(access, every_key) == []
    assert secrets_in(upstream, every_key) == []
