"""Starting corral for tests: a real App on a real port, with its access log kept in memory."""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from corral.app import App
from corral.observability.logs import AccessLog
from corral.settings import BackendSettings, Settings


class MemoryAccessLog(AccessLog):
    """Keeps every access-log entry for assertions; still exercises serialisation."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        super().__init__(stream=self.buffer, interval=0.05)

    @property
    def entries(self) -> list[dict[str, Any]]:
        self.flush()
        return [orjson.loads(line) for line in self.buffer.getvalue().splitlines() if line]


@asynccontextmanager
async def running_corral(
    backend_urls: Sequence[str], *, max_concurrency: int = 8, **settings: Any
) -> AsyncIterator[tuple[App, MemoryAccessLog]]:
    backends = [BackendSettings(url=u, max_concurrency=max_concurrency) for u in backend_urls]
    log = MemoryAccessLog()
    # Never the developer's ./data: keys created there would lock every test out.
    settings.setdefault("data_dir", Path(tempfile.mkdtemp(prefix="corral-test-")))
    app = App(Settings(port=0, backends=backends, **settings), access_log=log)
    await app.start()
    try:
        yield app, log
    finally:
        await app.aclose()
