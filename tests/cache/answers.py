"""Real answers to cache: the Ollama simulator's, asked in-process (no socket, no pacing)."""

from __future__ import annotations

from typing import Any

import orjson

from corral.http.messages import Headers, Request, StreamResponse
from corral.testing.simulator import Simulator

MODELS = ("llama3.2:latest", "qwen3:latest", "nomic-embed-text:latest")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
USER = [{"role": "user", "content": "Why is the sky blue?"}]
WEATHER = [{"role": "user", "content": "get_weather for Paris"}]
# Volatile: differ between two asks of the same question, even to Ollama itself.
VOLATILE = frozenset(
    {"created_at", "created", "id", "total_duration", "load_duration", "prompt_eval_duration",
     "eval_duration"}
)  # fmt: skip

# (path, body without "stream"): every shape of answer the cache may meet.
GENERATIONS: list[tuple[str, dict[str, Any]]] = [
    ("/api/generate", {"model": "llama3.2", "prompt": "Why is the sky blue?"}),
    ("/api/generate", {"model": "qwen3", "prompt": "Why?", "think": True}),
    ("/api/generate", {"model": "llama3.2", "prompt": "Why?", "logprobs": True, "top_logprobs": 2}),
    ("/api/generate", {"model": "llama3.2", "prompt": "Why?", "format": "json"}),
    ("/api/generate", {"model": "llama3.2", "prompt": "Why?", "options": {"num_predict": 3}}),
    ("/api/chat", {"model": "llama3.2", "messages": USER}),
    ("/api/chat", {"model": "qwen3", "messages": USER, "think": True}),
    ("/api/chat", {"model": "llama3.2", "messages": WEATHER, "tools": TOOLS}),
    ("/api/chat", {"model": "llama3.2", "messages": USER, "logprobs": True}),
    ("/v1/chat/completions", {"model": "llama3.2", "messages": USER, "seed": 1}),
    ("/v1/chat/completions", {"model": "llama3.2", "messages": WEATHER, "tools": TOOLS}),
    ("/v1/chat/completions", {"model": "qwen3", "messages": USER, "reasoning_effort": "low"}),
    ("/v1/chat/completions", {"model": "llama3.2", "messages": USER, "max_tokens": 4}),
    ("/v1/completions", {"model": "llama3.2", "prompt": "Once upon a time"}),
]
EMBEDDINGS: list[tuple[str, dict[str, Any]]] = [
    ("/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}),
    ("/api/embeddings", {"model": "nomic-embed-text", "prompt": "a"}),
    ("/v1/embeddings", {"model": "nomic-embed-text", "input": "a"}),
]


def simulator() -> Simulator:
    return Simulator(MODELS, tokens_per_second=1e6, first_token_delay=0.0, response_tokens=6)


async def ask(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
    """``(content type, body)`` of the simulator's answer."""
    request = Request("POST", path, "", Headers([]), orjson.dumps(body), ("127.0.0.1", 9))
    response = await sim.handle(request)
    assert response.status == 200, response.body
    content_type = next(v for n, v in response.headers if n.lower() == b"content-type")
    if isinstance(response, StreamResponse):
        return content_type, b"".join([chunk async for chunk in response.chunks])
    return content_type, response.body


def stable(value: Any) -> Any:
    """``value`` without the fields that change from one ask to the next."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def lines(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def events(body: bytes) -> list[Any]:
    """SSE data, ``"[DONE]"`` included as a string."""
    out: list[Any] = []
    for event in body.split(b"\n\n"):
        data = event.strip().removeprefix(b"data: ")
        if data:
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out
