"""What the gateway tests share: comparing answers with the simulator's own, and waiting.

``normalise`` is the one place that decides which fields may differ between two answers to the
same request (timestamps, durations, per-call ids). Everything else must be equal, so a gateway
that changes a word, a token count or a digest fails the comparison. The tests at the bottom
hold the helper itself to that.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from corral.http.messages import Request, Response
from corral.testing.simulator import Simulator

# Fields that legitimately differ between two answers to the same request.
VOLATILE = frozenset(
    {
        "created_at",
        "expires_at",
        "created",
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    }
)
# Per-call ids: OpenAI-style completion ids (``chatcmpl-123``, ``cmpl-7``).
_CALL_ID = re.compile(r"(chatcmpl|cmpl)-\w+")
VARIES = "<varies>"


def normalise(value: Any, also: Collection[str] = ()) -> Any:
    """``value`` (JSON, a pydantic model, or lists of them) with its volatile fields blanked.

    A volatile field keeps its presence and its type class (``None`` stays ``None``), so a field
    that one side drops or nulls still shows up as a difference. ``also`` names more fields to
    blank for one comparison.
    """
    volatile = VOLATILE | frozenset(also)

    def walk(item: Any, key: str | None = None) -> Any:
        if isinstance(item, BaseModel):
            item = item.model_dump(mode="json")
        if isinstance(item, dict):
            return {k: walk(v, k) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        if item is None or key is None:
            return item
        if key in volatile:
            return VARIES
        if key == "id" and isinstance(item, str) and _CALL_ID.fullmatch(item):
            return VARIES
        return item

    return walk(value)


def ndjson(body: bytes) -> list[Any]:
    """The objects of an NDJSON body; every line must be JSON."""
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def sse_data(body: bytes) -> list[Any]:
    """The ``data:`` payloads of a server-sent events body (``[DONE]`` kept as the string)."""
    events: list[Any] = []
    for line in body.decode().splitlines():
        if not line.startswith("data:"):
            assert not line.strip(), f"unexpected SSE line {line!r}"
            continue
        data = line[len("data:") :].strip()
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def parse_body(content_type: str, body: bytes) -> Any:
    """A response body as data, by its content type, for :func:`normalise`."""
    if content_type.startswith("application/x-ndjson"):
        return ndjson(body)
    if content_type.startswith("text/event-stream"):
        return sse_data(body)
    if content_type.startswith("application/json"):
        return orjson.loads(body)
    return body.decode()


async def until(
    predicate: Callable[[], bool],
    timeout: float = 15.0,  # noqa: ASYNC109
    what: str = "",
) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what or predicate}")


async def closed_port_url() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens (bound, noted, closed)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return f"http://127.0.0.1:{port}"


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel client requests still in flight and wait until they are gone."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class RecordingSimulator(Simulator):
    """A simulator that keeps the path and headers of every request it receives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, list[tuple[str, str]]]] = []

    async def handle(self, request: Request) -> Response:
        headers = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in request.headers.raw]
        self.seen.append((request.path, headers))
        return await super().handle(request)

    def headers_of(self, path: str) -> list[list[tuple[str, str]]]:
        return [headers for seen_path, headers in self.seen if seen_path == path]


# ---- the helper is strict where it must be -------------------------------------------------


def test_normalise_blanks_only_volatile_fields() -> None:
    one = {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00.1Z",
        "id": "chatcmpl-12",
        "message": {"role": "assistant", "content": "Hi"},
        "eval_count": 3,
        "eval_duration": 10,
    }
    other = {
        **one,
        "created_at": "2025-01-01T00:00:09.9Z",
        "id": "chatcmpl-913",
        "eval_duration": 99,
    }
    assert normalise(one) == normalise(other)


@pytest.mark.parametrize(
    "change",
    [
        {"eval_count": 4},
        {"message": {"role": "assistant", "content": "Hello"}},
        {"model": "qwen2.5"},
        {"digest": "abc"},
        {"created_at": None},
        {"id": "call_1234"},
    ],
)
def test_normalise_keeps_every_other_difference(change: dict[str, Any]) -> None:
    one = {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00.1Z",
        "id": "call_0000",
        "message": {"role": "assistant", "content": "Hi"},
        "eval_count": 3,
    }
    assert normalise(one) != normalise({**one, **change})
    key = next(iter(change))
    if key in one:
        dropped = {k: v for k, v in one.items() if k != key}
        assert normalise(one) != normalise(dropped)
