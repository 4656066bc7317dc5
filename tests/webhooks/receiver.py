"""A webhook receiver on a real port: it keeps every post, and fails the first few on request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

from corral.http.messages import Request, Response
from corral.http.server import HttpServer


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def payload(self) -> dict[str, object]:
        decoded = orjson.loads(self.body)
        assert isinstance(decoded, dict)
        return decoded


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.posts: list[Post] = []
        self._server = HttpServer(self.handle)

    async def start(self) -> None:
        await self._server.start("127.0.0.1", 0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/hook"

    async def handle(self, request: Request) -> Response:
        headers = {n.decode().lower(): v.decode() for n, v in request.headers.raw}
        status = 500 if len(self.posts) < self.fail_first else 200
        self.posts.append(Post(headers, request.body, status))
        return Response.json(status, {"ok": status == 200})

    @property
    def delivered(self) -> list[Post]:
        return [post for post in self.posts if post.status == 200]

    def events(self) -> list[str]:
        return [str(post.payload["event"]) for post in self.delivered]

    async def wait_for(self, count: int, *, delivered: bool = True) -> None:
        """Readiness polling: until ``count`` posts (delivered ones by default) arrived."""
        async with asyncio.timeout(10.0):
            while len(self.delivered if delivered else self.posts) < count:
                await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        await self._server.aclose()
