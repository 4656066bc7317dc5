"""Usage accounting through a running corral: every request a key makes is counted in a usage row,
and the totals per key are the token counts the simulator reported."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner, Result

from corral.cli.main import main
from corral.storage.usage import UsageQuery
from tests.auth.gateway import Gateway, gateway

PROMPT = [{"role": "user", "content": "Tell me about corrals"}]


async def cli(*args: str) -> Result:
    """``corral ARGS`` in a thread of its own: the command runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def native(g: Gateway, key: str, path: str, body: dict[str, Any]) -> tuple[int, int]:
    """Send one native request; the simulator's prompt and generated counts from its last line."""
    answer = await g.client.post(
        g.url + path, json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    last = json.loads(answer.text.strip().splitlines()[-1])
    return last["prompt_eval_count"], last["eval_count"]


async def openai(g: Gateway, key: str) -> tuple[int, int]:
    body = {"model": "llama3.2", "messages": PROMPT}
    answer = await g.client.post(
        g.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


async def test_usage_totals_per_key_equal_the_simulators_token_counts(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g:
        keys = {"ci": await g.create_key("ci"), "bot": await g.create_key("bot")}
        expected: dict[str, Counter[str]] = {name: Counter() for name in keys}
        plans = {"ci": 3, "bot": 2}
        for name, key in keys.items():
            for n in range(plans[name]):
                chat = {"model": "llama3.2", "messages": PROMPT, "stream": n % 2 == 0}
                generate = {"model": "qwen2.5:0.5b", "prompt": "hi " * (n + 1), "stream": False}
                for prompt, generated in (
                    await native(g, key, "/api/chat", chat),
                    await native(g, key, "/api/generate", generate),
                    await openai(g, key),
                ):
                    expected[name]["prompt"] += prompt
                    expected[name]["generated"] += generated
                    expected[name]["requests"] += 1
        usage = g.app.services.usage
        assert usage is not None
        await usage.flush()
        answer = await g.client.get(g.url + "/admin/usage", params={"by": "key"})
        assert answer.status_code == 200
        rows = {row["name"]: row for row in answer.json()["rows"]}
        for name in keys:
            assert rows[name]["requests"] == expected[name]["requests"]
            assert rows[name]["prompt_tokens"] == expected[name]["prompt"]
            assert rows[name]["completion_tokens"] == expected[name]["generated"]
            assert rows[name]["errors"] == 0
        models = await g.app.services.key_admin.usage_report(UsageQuery(by="model"))
        assert {row.group for row in models} == {"llama3.2:latest", "qwen2.5:0.5b"}
        backends = await g.app.services.key_admin.usage_report(UsageQuery(by="backend"))
        assert [row.requests for row in backends] == [15]
    # The CLI reads the same records from the database, with no corral running.
    db = f"sqlite:///{tmp_path / 'data' / 'corral.db'}"
    result = await cli("usage", "--by", "key", "--json", "--database-url", db)
    assert result.exit_code == 0, result.output
    by_name = {row["name"]: row for row in json.loads(result.output)}
    assert by_name["ci"]["total_tokens"] == expected["ci"]["prompt"] + expected["ci"]["generated"]
    table = (await cli("usage", "--by", "model", "--database-url", db)).output
    assert table.splitlines()[0].split()[:3] == ["model", "requests", "errors"]
    assert "qwen2.5:0.5b" in table
    csv_text = await cli("usage", "--by", "day", "--csv", "--database-url", db)
    header, *lines = csv_text.output.splitlines()
    assert header.startswith("day,name,requests") and len(lines) == 1


async def test_a_cancelled_request_and_a_refused_one_are_recorded(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g:
        key = await g.create_key("ci")
        g.sim.state.tokens_per_second = 20.0  # 400 tokens: twenty seconds, unless cancelled
        body = {"model": "llama3.2", "messages": PROMPT, "options": {"num_predict": 400}}
        async with g.client.stream(
            "POST", g.url + "/api/chat", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as answer:
            async for _ in answer.aiter_lines():
                break  # the client leaves after the first line
        denied = await g.client.post(
            g.url + "/api/chat", json=body, headers={"Authorization": "Bearer corral_nope"}
        )
        assert denied.status_code == 401
        usage = g.app.services.usage
        assert usage is not None
        async with asyncio.timeout(5):  # the relay ends once corral sees the client gone
            while not any(e.get("status") == 499 for e in g.log.entries):
                await asyncio.sleep(0.01)
        await usage.flush()
        (row,) = await g.app.services.key_admin.usage_report(UsageQuery(by="key"))
        assert (row.name, row.requests, row.errors) == ("ci", 1, 1)


async def test_usage_off_records_nothing(tmp_path: Path) -> None:
    async with gateway(tmp_path, usage={"enabled": False}) as g:
        assert g.app.services.usage is None
        answer = await g.chat()
        assert answer.status_code == 200
        report = await g.app.services.key_admin.usage_report(UsageQuery())
        assert report == []


async def test_the_admin_usage_endpoint_checks_its_parameters(tmp_path: Path) -> None:
    async with gateway(tmp_path, admin_token="t0ken") as g:
        url = g.url + "/admin/usage"
        assert (await g.client.get(url)).status_code == 401
        auth = {"Authorization": "Bearer t0ken"}
        assert (await g.client.get(url, params={"by": "colour"}, headers=auth)).status_code == 400
        assert (await g.client.get(url, params={"since": "soon"}, headers=auth)).status_code == 400
        ok = await g.client.get(url, params={"by": "day", "since": "7d"}, headers=auth)
        assert ok.status_code == 200 and ok.json()["rows"] == []


async def test_per_request_rows_keep_the_request_id_and_client(tmp_path: Path) -> None:
    async with gateway(tmp_path, usage={"granularity": "request"}) as g:
        key = await g.create_key("ci")
        ids = []
        for _ in range(3):
            answer = await g.client.post(
                g.url + "/api/chat",
                json={"model": "llama3.2", "messages": PROMPT, "stream": False},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 200
            ids.append(answer.headers["x-request-id"])
        usage = g.app.services.usage
        assert usage is not None
        await usage.flush()
        rows = await rows_of(g)
    assert [row["request_id"] for row in rows] == ids
    assert {(row["requests"], row["client_ip"]) for row in rows} == {(1, "127.0.0.1")}
    assert all(row["ttft_ms"] is not None and row["ttft_ms"] <= row["duration_ms"] for row in rows)


async def test_per_minute_rows_count_the_requests_of_a_minute(tmp_path: Path) -> None:
    async with gateway(tmp_path) as g:
        key = await g.create_key("ci")
        for _ in range(4):
            await native(g, key, "/api/chat", {"model": "llama3.2", "messages": PROMPT})
        usage = g.app.services.usage
        assert usage is not None
        await usage.flush()
        rows = await rows_of(g)
    # One row, unless the four requests straddled a minute's end.
    assert sum(row["requests"] for row in rows) == 4 and len(rows) <= 2
    assert all(row["request_id"] is None and row["client_ip"] is None for row in rows)


async def rows_of(g: Gateway) -> list[dict[str, Any]]:
    def read(conn: sa.Connection) -> list[dict[str, Any]]:
        result = conn.execute(sa.text("SELECT * FROM usage ORDER BY id"))
        return [dict(row._mapping) for row in result]

    return await g.app.services.database.read(read)
