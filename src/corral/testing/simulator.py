"""The Ollama simulator: a real HTTP server on a real port that answers like Ollama.

It serves the native API (``/api/*``), the OpenAI-compatible one (``/v1/*``) and Anthropic's
``/v1/messages``, with a catalogue of models, loaded-model state, paced token streams and
switchable faults. corral's integration tests and benchmark put it behind corral; ``corral
simulate`` and ``make run`` use it when no Ollama is installed.

Control endpoints, for a simulator in another process: ``GET|POST|DELETE /_sim/faults`` (read,
set, reset the fault switches; ``{"refuse_for": seconds}`` closes the port for that long) and
``GET|DELETE /_sim/stats``.

Example::

    async with Simulator(["llama3.2"], tokens_per_second=1000) as sim:
        client = ollama.AsyncClient(host=sim.url)
        reply = await client.chat("llama3.2", messages=[{"role": "user", "content": "hi"}])
        sim.faults.busy = True      # the next model request answers 503 server busy
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from corral.http.messages import JSON_TYPE, Request, Response
from corral.http.server import HttpServer, ServerLimits
from corral.testing import (
    anthropic_api,
    model_api,
    native_api,
    openai_api,
    responses_api,
    runner,
    transfers,
)
from corral.testing.faults import BAD_JSON_BODY, BUSY_MESSAGE, CRASH_MESSAGE, Faults
from corral.testing.models import ModelCatalogue
from corral.testing.openai_wire import openai_error
from corral.testing.payload import ApiError, BadRequest, parse_body
from corral.testing.state import DEFAULT_RESPONSE_TOKENS, SimState
from corral.testing.stats import SimStats

Route = Callable[[SimState, Request], Awaitable[Response]]
DEFAULT_MODELS = ("llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest")

_ROUTES: dict[str, dict[str, Route]] = {
    "/": {"GET": model_api.root},
    "/api/version": {"GET": model_api.version},
    "/api/generate": {"POST": native_api.generate},
    "/api/chat": {"POST": native_api.chat},
    "/api/embed": {"POST": native_api.embed},
    "/api/embeddings": {"POST": native_api.embeddings},
    "/api/tags": {"GET": model_api.tags},
    "/api/ps": {"GET": model_api.ps},
    "/api/show": {"POST": model_api.show},
    "/api/copy": {"POST": model_api.copy},
    "/api/delete": {"DELETE": model_api.delete},
    "/api/pull": {"POST": transfers.pull},
    "/api/push": {"POST": transfers.push},
    "/api/create": {"POST": transfers.create},
    "/v1/chat/completions": {"POST": openai_api.chat_completions},
    "/v1/completions": {"POST": openai_api.completions},
    "/v1/embeddings": {"POST": openai_api.embeddings},
    "/v1/models": {"GET": openai_api.list_models},
    "/v1/responses": {"POST": responses_api.responses},
    "/v1/messages": {"POST": anthropic_api.messages},
}
_PREFIX_ROUTES: tuple[tuple[str, dict[str, Route]], ...] = (
    ("/api/blobs/", {"HEAD": model_api.head_blob, "POST": model_api.push_blob}),
    ("/v1/models/", {"GET": openai_api.retrieve_model}),
)


def render_error(path: str, status: int, message: str) -> Response:
    """An error in the shape of the API surface ``path`` belongs to."""
    if path.startswith("/v1/messages"):
        return Response.json(status, anthropic_api.anthropic_error(status, message))
    if path.startswith("/v1/"):
        return Response.json(status, openai_error(status, message))
    return Response.json(status, {"error": message})


def _check(name: str, value: float, *, positive: bool = False) -> float:
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


class Simulator:
    """A simulated Ollama server on a real port.

    Example::

        sim = Simulator(["llama3.2"], tokens_per_second=100, first_token_delay=0.05)
        await sim.start("127.0.0.1", 0)
        sim.url                      # "http://127.0.0.1:<port>"
        sim.faults.hang = True       # model requests now never get an answer
        await sim.stats.wait_cancelled(timeout=1.0)
        await sim.aclose()
    """

    def __init__(
        self,
        models: Sequence[str] = DEFAULT_MODELS,
        *,
        tokens_per_second: float = 200.0,
        first_token_delay: float = 0.02,
        load_delay: float = 0.0,
        version: str = "0.12.6",
        name: str = "sim",
        response_tokens: int = DEFAULT_RESPONSE_TOKENS,
        exact_lengths: bool = False,
        limits: ServerLimits | None = None,
    ) -> None:
        self.state = SimState(
            ModelCatalogue(models),
            tokens_per_second=_check("tokens_per_second", tokens_per_second, positive=True),
            first_token_delay=_check("first_token_delay", first_token_delay),
            load_delay=_check("load_delay", load_delay),
            response_tokens=int(_check("response_tokens", response_tokens)),
            exact_lengths=exact_lengths,
            version=version,
            name=name,
        )
        self._limits = limits
        self._server: HttpServer | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- live parts -----------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def stats(self) -> SimStats:
        return self.state.stats

    @property
    def catalogue(self) -> ModelCatalogue:
        return self.state.catalogue

    @property
    def repull_changes_digest(self) -> bool:
        return self.state.repull_changes_digest

    @repull_changes_digest.setter
    def repull_changes_digest(self, value: bool) -> None:
        self.state.repull_changes_digest = value

    @property
    def tokens_per_second(self) -> float:
        return self.state.tokens_per_second

    @tokens_per_second.setter
    def tokens_per_second(self, value: float) -> None:
        self.state.tokens_per_second = _check("tokens_per_second", value, positive=True)

    @property
    def first_token_delay(self) -> float:
        return self.state.first_token_delay

    @first_token_delay.setter
    def first_token_delay(self, value: float) -> None:
        self.state.first_token_delay = _check("first_token_delay", value)

    @property
    def load_delay(self) -> float:
        return self.state.load_delay

    @load_delay.setter
    def load_delay(self, value: float) -> None:
        self.state.load_delay = _check("load_delay", value)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        server = HttpServer(self.handle, self._limits, render_error)
        await server.start(host, port)
        self._server, self._host, self._port = server, host, server.port

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        return f"http://[{host}]:{self._port}" if ":" in host else f"http://{host}:{self._port}"

    @property
    def refusing(self) -> bool:
        return self._server is None and self._port != 0

    async def refuse_connections(self) -> None:
        """Close the port, and every open connection, as if the server had died."""
        server, self._server = self._server, None
        if server is not None:
            await server.aclose(grace=0.0)

    async def accept_connections(self) -> None:
        """Listen again on the same port after :meth:`refuse_connections`."""
        if self._server is None:
            await self.start(self._host, self._port)

    async def aclose(self) -> None:
        """Stop at once: requests in flight are cut, as when an Ollama process exits."""
        for task in self._tasks:
            task.cancel()
        await self.refuse_connections()

    async def __aenter__(self) -> Simulator:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- requests -------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one request; the HTTP server calls this, and so may an in-process test."""
        path = request.path
        state = self.state
        state.stats.requests[path] += 1
        methods = _ROUTES.get(path)
        if methods is None:
            if path.startswith("/_sim/"):
                return await self._control(request)
            methods = next((r for prefix, r in _PREFIX_ROUTES if path.startswith(prefix)), None)
            if methods is None:
                # Ollama's router (Go's net/http) answers unknown paths in plain text.
                return Response.text(404, "404 page not found")
        route = methods.get(request.method)
        if route is None and request.method == "HEAD":
            route = methods.get("GET")
        if route is None:
            return render_error(path, 405, "method not allowed")
        try:
            faults = state.faults
            if faults.active and faults.applies_to(path):
                faulty = await self._fault(request)
                if faulty is not None:
                    return faulty
            return await route(state, request)
        except ApiError as err:
            return render_error(path, err.status, err.message)

    async def _fault(self, request: Request) -> Response | None:
        faults = self.state.faults
        hang, busy, crash, bad_json = faults.hang, faults.busy, faults.status_500, faults.bad_json
        request.state[native_api.FAULTS_KEY] = faults.for_stream()
        faults.consume()
        if hang:
            await runner.hang(self.state, request.path)
        if busy:
            return render_error(request.path, 503, BUSY_MESSAGE)
        if crash:
            return render_error(request.path, 500, CRASH_MESSAGE)
        if bad_json:
            return Response(200, BAD_JSON_BODY, [(b"Content-Type", JSON_TYPE)])
        return None

    async def _control(self, request: Request) -> Response:
        path, method, state = request.path, request.method, self.state
        try:
            if path == "/_sim/faults":
                if method == "POST":
                    values = parse_body(request.body)
                    refuse_for = values.pop("refuse_for", None)
                    state.faults.update(values)
                    if refuse_for is not None:
                        self._refuse_for(refuse_for)
                elif method == "DELETE":
                    state.faults.reset()
                elif method not in ("GET", "HEAD"):
                    return render_error(path, 405, "method not allowed")
                return Response.json(200, state.faults.snapshot())
            if path == "/_sim/stats":
                if method == "DELETE":
                    state.stats.reset()
                elif method not in ("GET", "HEAD"):
                    return render_error(path, 405, "method not allowed")
                return Response.json(200, state.stats.snapshot())
        except ApiError as err:
            return render_error(path, err.status, err.message)
        return Response.text(404, "404 page not found")

    def _refuse_for(self, seconds: object) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise BadRequest("refuse_for must be a number of seconds >= 0")

        async def outage() -> None:
            # Runs after this control request's answer is written; closing flushes it first.
            await self.refuse_connections()
            await asyncio.sleep(float(seconds))
            await self.accept_connections()

        task = asyncio.get_running_loop().create_task(outage())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
