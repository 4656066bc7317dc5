"""Ollama's model endpoints: ``/api/generate``, ``/api/chat``, ``/api/embed``, ``/api/embeddings``.

Each handler validates its body the way Ollama does (same status codes and messages), reduces it
to a :class:`~corral.testing.generation.Prompt`, and answers with one JSON object
(``"stream": false``) or a paced NDJSON stream.

Example::

    response = await generate(state, request)   # Response or StreamResponse
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.http.messages import NDJSON_TYPE, Request, Response, StreamResponse
from corral.testing import runner
from corral.testing.embeddings import embedding
from corral.testing.faults import NO_STREAM_FAULTS, StreamFaults
from corral.testing.generation import Prompt, check_format, count_words, plan
from corral.testing.models import ModelInfo
from corral.testing.ndjson import ChatEncoder, GenerateEncoder, chat_result, generate_result
from corral.testing.payload import (
    BadRequest,
    NotFound,
    get_bool,
    get_dict,
    get_int,
    get_list,
    get_str,
    model_not_found,
    parse_body,
    require_model,
)
from corral.testing.residency import parse_keep_alive
from corral.testing.state import SimState
from corral.testing.timing import Timings

NDJSON_HEADERS = [(b"Content-Type", NDJSON_TYPE)]
FAULTS_KEY = "sim.faults"


def stream_faults(request: Request) -> StreamFaults:
    faults = request.state.get(FAULTS_KEY)
    return faults if isinstance(faults, StreamFaults) else NO_STREAM_FAULTS


def find_model(state: SimState, name: str, capability: str, action: str) -> ModelInfo:
    info = state.catalogue.get(name)
    if info is None:
        raise model_not_found(name)
    if capability not in info.capabilities:
        raise BadRequest(f'"{name}" does not support {action}')
    return info


def read_options(body: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """``seed``, ``num_predict`` (``None`` when unlimited) and ``num_ctx`` from ``options``."""
    options = get_dict(body, "options")
    num_predict = get_int(options, "num_predict")
    if num_predict is not None and num_predict < 0:
        num_predict = None  # -1 (and -2, "fill the context") mean no limit
    return get_int(options, "seed"), num_predict, get_int(options, "num_ctx")


def logprob_count(body: dict[str, Any]) -> int | None:
    """How many alternatives per token to report, or ``None`` when logprobs were not asked."""
    if not get_bool(body, "logprobs", False):
        return None
    return max(0, get_int(body, "top_logprobs") or 0)


async def generate(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    info = find_model(state, model, "completion", "generate")
    stream = get_bool(body, "stream", True)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    seed, num_predict, num_ctx = read_options(body)
    text, system, suffix = get_str(body, "prompt"), get_str(body, "system"), get_str(body, "suffix")
    get_str(body, "template")
    images = get_list(body, "images")
    context = get_list(body, "context")
    raw = get_bool(body, "raw", False)
    top = logprob_count(body)
    if not text and not images:
        return await _load_or_unload(state, info, model, keep_alive, num_ctx, chat=False)
    prompt = Prompt(
        "\x1f".join((system, text, suffix)),
        count_words(system) + count_words(text) + count_words(suffix) + len(context),
        text,
        seed,
        num_predict,
        format=check_format(body.get("format")),
        think=body.get("think"),
    )
    answer = plan(info.name, prompt, state.response_tokens, exact_limits=state.exact_lengths)
    gen = runner.Generation(
        state, request.path, model, info, answer, stream=stream, keep_alive=keep_alive,
        num_ctx=num_ctx, faults=stream_faults(request),
    )  # fmt: skip
    return await _answer(
        gen,
        lambda: GenerateEncoder(model, state.clock, context=not raw, top=top),
        lambda timings: generate_result(
            model, state.clock.rfc3339(), answer, timings, context=not raw, top=top
        ),
    )


async def chat(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    info = find_model(state, model, "completion", "chat")
    stream = get_bool(body, "stream", True)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    seed, num_predict, num_ctx = read_options(body)
    messages = get_list(body, "messages")
    tools = get_list(body, "tools")
    top = logprob_count(body)
    if not messages:
        return await _load_or_unload(state, info, model, keep_alive, num_ctx, chat=True)
    parts: list[str] = []
    words = 0
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("json: cannot unmarshal into messages: each message must be an object")
        role, content = get_str(message, "role"), get_str(message, "content")
        get_list(message, "images")
        parts.append(role)
        parts.append(content)
        words += count_words(content)
        if role == "user":
            last_user = content
    prompt = Prompt(
        "\x1f".join(parts),
        words,
        last_user,
        seed,
        num_predict,
        format=check_format(body.get("format")),
        think=body.get("think"),
        tools=tools,
    )
    answer = plan(info.name, prompt, state.response_tokens, exact_limits=state.exact_lengths)
    gen = runner.Generation(
        state, request.path, model, info, answer, stream=stream, keep_alive=keep_alive,
        num_ctx=num_ctx, faults=stream_faults(request),
    )  # fmt: skip
    return await _answer(
        gen,
        lambda: ChatEncoder(model, state.clock, top=top),
        lambda timings: chat_result(model, state.clock.rfc3339(), answer, timings, top=top),
    )


async def _answer(
    gen: runner.Generation,
    encoder: Callable[[], runner.Encoder],
    result: Callable[[Timings], dict[str, Any]],
) -> Response:
    """A generation as NDJSON lines while it runs, or as one object once it is done."""
    if gen.stream:
        return StreamResponse(200, runner.stream(gen, encoder()), list(NDJSON_HEADERS))
    return Response.json(200, result(await runner.complete(gen)))


async def _load_or_unload(
    state: SimState,
    info: ModelInfo,
    model: str,
    keep_alive: float | None,
    num_ctx: int | None,
    *,
    chat: bool,
) -> Response:
    """An empty prompt loads the model; with ``keep_alive: 0`` it unloads it."""
    if keep_alive == 0:
        state.loaded.unload(info.name)
        reason = "unload"
    else:
        await runner.load(state, info, keep_alive, num_ctx)
        reason = "load"
    out: dict[str, Any] = {"model": model, "created_at": state.clock.rfc3339()}
    if chat:
        out.update(message={"role": "assistant", "content": ""}, done_reason=reason, done=True)
    else:
        out.update(response="", done=True, done_reason=reason)
    return Response.json(200, out)


def embedding_inputs(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadRequest("invalid input type")


async def embed_vectors(
    state: SimState,
    request: Request,
    model: str,
    inputs: list[str],
    *,
    truncate: bool = True,
    dimensions: int | None = None,
    keep_alive: float | None = None,
    num_ctx: int | None = None,
) -> tuple[list[list[float]], int, Timings]:
    """Vectors for ``inputs``, their token count and timings: the work behind every embed API."""
    info = state.catalogue.get(model)
    if info is None:
        if request.path == "/api/embeddings":
            raise model_not_found(model)
        # Ollama's /api/embed (behind /v1/embeddings too) words it like /api/show.
        raise NotFound(f"model '{model}' not found")
    size = info.embed_dim
    if dimensions is not None:
        if not 0 < dimensions <= size:
            raise BadRequest(f"dimensions must be between 1 and {size}")
        size = dimensions
    limit = min(num_ctx or state.loaded.default_num_ctx, info.profile.context_length)
    counts = [count_words(text) for text in inputs]
    if not truncate and any(c > limit for c in counts):
        raise BadRequest("input length exceeds the context length")
    tokens = sum(min(c, limit) for c in counts)
    work = Prompt("", tokens)
    answer = plan(info.name, work, 0)
    answer.prompt_eval_count = tokens
    gen = runner.Generation(
        state,
        request.path,
        model,
        info,
        answer,
        stream=False,
        keep_alive=keep_alive,
        num_ctx=num_ctx,
        faults=stream_faults(request),
    )
    timings = await runner.complete(gen)
    return [embedding(text, size) for text in inputs], tokens, timings


async def embed(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    _, _, num_ctx = read_options(body)
    vectors, tokens, timings = await embed_vectors(
        state,
        request,
        model,
        embedding_inputs(body.get("input")),
        truncate=get_bool(body, "truncate", True),
        dimensions=get_int(body, "dimensions"),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        num_ctx=num_ctx,
    )
    return Response.json(
        200,
        {
            "model": model,
            "embeddings": vectors,
            "total_duration": timings.total_duration,
            "load_duration": timings.load_duration,
            "prompt_eval_count": tokens,
        },
    )


async def embeddings(state: SimState, request: Request) -> Response:
    """The legacy endpoint: one ``prompt`` in, one ``embedding`` out."""
    body = parse_body(request.body)
    model = require_model(body)
    text = get_str(body, "prompt")
    _, _, num_ctx = read_options(body)
    vectors, _, _ = await embed_vectors(
        state,
        request,
        model,
        [text] if text else [],
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        num_ctx=num_ctx,
    )
    return Response.json(200, {"embedding": vectors[0] if vectors else []})
