"""Ollama's OpenAI-compatible endpoints: chat and text completions, embeddings, models.

Requests are read the way Ollama's compatibility layer reads them (``max_tokens`` is
``num_predict``, ``response_format`` is ``format``, ``reasoning_effort`` is ``think``) and
answered in OpenAI's shapes, streaming as server-sent events.

Example::

    response = await chat_completions(state, request)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from corral.http.messages import Request, Response, StreamResponse
from corral.testing import runner
from corral.testing.embeddings import to_base64
from corral.testing.generation import Plan, Prompt, count_words, plan
from corral.testing.models import ModelInfo
from corral.testing.native_api import embed_vectors, find_model, stream_faults
from corral.testing.openai_wire import (
    ChatChunkEncoder,
    CompletionChunkEncoder,
    chat_completion,
    text_completion,
)
from corral.testing.payload import (
    BadRequest,
    NotFound,
    get_bool,
    get_dict,
    get_int,
    get_list,
    get_str,
    parse_body,
    require_model,
)
from corral.testing.state import SimState

SSE_HEADERS = [(b"Content-Type", b"text/event-stream"), (b"Cache-Control", b"no-cache")]


def message_text(content: object) -> str:
    """The text of an OpenAI message ``content``: a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise BadRequest("invalid message format")
            if part.get("type") == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest("invalid message format")
                texts.append(text)
            elif part.get("type") not in ("image_url", "input_image", "image"):
                raise BadRequest("invalid message format")
        return " ".join(texts)
    raise BadRequest(f"invalid message content type: {type(content).__name__}")


def response_format(body: dict[str, Any]) -> object:
    fmt = get_dict(body, "response_format")
    kind = fmt.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = get_dict(fmt, "json_schema").get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def reasoning(body: dict[str, Any]) -> object:
    effort = body.get("reasoning_effort") or get_dict(body, "reasoning").get("effort")
    if effort is None:
        return None
    return False if effort == "none" else effort


def chat_prompt(body: dict[str, Any], limit_key: str = "max_tokens") -> Prompt:
    messages = get_list(body, "messages")
    if not messages:
        raise BadRequest("[] is too short - 'messages'")
    parts: list[str] = []
    words = 0
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("invalid message format")
        role = get_str(message, "role")
        text = message_text(message.get("content"))
        parts += (role, text)
        words += count_words(text)
        if role == "user":
            last_user = text
    limit = get_int(body, limit_key)
    if limit is None and limit_key == "max_tokens":
        limit = get_int(body, "max_completion_tokens")
    return Prompt(
        "\x1f".join(parts),
        words,
        last_user,
        get_int(body, "seed"),
        limit,
        format=response_format(body),
        think=reasoning(body),
        tools=get_list(body, "tools"),
    )


def _ids(prefix: str, state: SimState) -> tuple[str, int]:
    return f"{prefix}-{random.randrange(1000)}", state.clock.unix()


async def chat_completions(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    prompt = chat_prompt(body)  # Ollama's compatibility layer checks messages first
    info = find_model(state, model, "completion", "chat")
    answer = plan(info.name, prompt, state.response_tokens, exact_limits=state.exact_lengths)
    return await _completion(
        state, request, body, model, info, answer, "chatcmpl", ChatChunkEncoder, chat_completion
    )


async def completions(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    info = find_model(state, model, "completion", "generate")
    text = body.get("prompt", "")
    if not isinstance(text, str):
        raise BadRequest("prompt must be a string")
    suffix = get_str(body, "suffix")
    prompt = Prompt(
        "\x1f".join((text, suffix)),
        count_words(text) + count_words(suffix),
        text,
        get_int(body, "seed"),
        get_int(body, "max_tokens"),
    )
    answer = plan(info.name, prompt, state.response_tokens, exact_limits=state.exact_lengths)
    return await _completion(
        state, request, body, model, info, answer, "cmpl", CompletionChunkEncoder, text_completion
    )


async def _completion(
    state: SimState,
    request: Request,
    body: dict[str, Any],
    model: str,
    info: ModelInfo,
    answer: Plan,
    id_prefix: str,
    encoder: Callable[..., runner.Encoder],
    result: Callable[[str, int, str, Plan], dict[str, Any]],
) -> Response:
    """A completion as server-sent chunks while it runs, or as one object once it is done."""
    stream = get_bool(body, "stream", False)
    gen = runner.Generation(
        state, request.path, model, info, answer, stream=stream, faults=stream_faults(request)
    )
    id_, created = _ids(id_prefix, state)
    if stream:
        usage = get_bool(get_dict(body, "stream_options"), "include_usage", False)
        chunks = encoder(id_, created, model, include_usage=usage)
        return StreamResponse(200, runner.stream(gen, chunks), list(SSE_HEADERS))
    await runner.complete(gen)
    return Response.json(200, result(id_, created, model, answer))


async def embeddings(state: SimState, request: Request) -> Response:
    body = parse_body(request.body)
    model = require_model(body)
    encoding = get_str(body, "encoding_format") or "float"
    if encoding.lower() not in ("float", "base64"):
        raise BadRequest(
            f"Invalid value for 'encoding_format' = {encoding}. "
            "Supported values: ['float', 'base64']."
        )
    value = body.get("input")
    if value == "":
        value = [""]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest("invalid input")
    vectors, tokens, _ = await embed_vectors(
        state, request, model, value, dimensions=get_int(body, "dimensions") or None
    )
    as_base64 = encoding.lower() == "base64"
    data = [
        {"object": "embedding", "embedding": to_base64(v) if as_base64 else v, "index": i}
        for i, v in enumerate(vectors)
    ]
    return Response.json(
        200,
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )


def model_entry(info: ModelInfo, name: str | None = None) -> dict[str, Any]:
    name = name or info.name
    namespace = name.rsplit("/", 1)[0].rsplit("/", 1)[-1] if "/" in name else "library"
    return {"id": name, "object": "model", "created": int(info.modified_at), "owned_by": namespace}


async def list_models(state: SimState, request: Request) -> Response:
    data = [model_entry(m) for m in state.catalogue.models()]
    return Response.json(200, {"object": "list", "data": data})


async def retrieve_model(state: SimState, request: Request) -> Response:
    name = unquote(request.path.removeprefix("/v1/models/"))
    info = state.catalogue.get(name)
    if info is None:
        raise NotFound(f'model "{name}" not found')
    return Response.json(200, model_entry(info, name))
