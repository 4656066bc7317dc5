"""corral on a real port in front of a simulator that remembers what reached it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from corral.app import App
from corral.http.messages import Request, Response
from corral.storage.keys import KeySpec
from corral.testing.simulator import Simulator
from tests.harness import MemoryAccessLog, running_corral

TIMEOUT = 10.0
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "stream": False}


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class RecordingSimulator(Simulator):
    """Keeps the path, query, headers and body of every request that reaches it."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("tokens_per_second", 2000.0)
        options.setdefault("first_token_delay", 0.0)
        super().__init__(**options)
        self.seen: list[Seen] = []

    async def handle(self, request: Request) -> Response:
        headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in request.headers.raw}
        self.seen.append(Seen(request.path, request.query, headers, request.body))
        return await super().handle(request)

    def everything_seen(self) -> str:
        return repr(self.seen)


@dataclass
class Gateway:
    app: App
    log: MemoryAccessLog
    sim: RecordingSimulator
    client: httpx.AsyncClient
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.app.url

    async def create_key(self, name: str, **spec: Any) -> str:
        _, plaintext = await self.app.services.key_admin.create_key(KeySpec(name=name, **spec))
        self.keys[name] = plaintext
        return plaintext

    async def chat(self, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("json", CHAT)
        return await self.client.post(self.url + "/api/chat", **kwargs)


@asynccontextmanager
async def gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[Gateway]:
    sim = RecordingSimulator()
    await sim.start("127.0.0.1", 0)
    settings.setdefault("data_dir", tmp_path / "data")
    try:
        async with (
            running_corral([sim.url], **settings) as (app, log),
            httpx.AsyncClient(timeout=TIMEOUT) as client,
        ):
            yield Gateway(app, log, sim, client)
    finally:
        await sim.aclose()
