"""Value objects that travel through a request: :class:`Call` (what was asked)."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

Surface = Literal["ollama", "openai", "ops"]


class Call(NamedTuple):
    """What a request asks of the fleet, parsed once at the edge. A named tuple: one is made
    for every request, and a tuple is made several times faster than a frozen dataclass.

    ``fields`` is the decoded JSON body (empty when there is none); ``body`` the bytes that go
    upstream unchanged. ``model_key`` is the model's normalised name (``llama3`` ->
    ``llama3:latest``), the one the fleet's model index uses.

    >>> Call("ollama", "/api/chat", "llama3.2", True, b"{}", {}).model
    'llama3.2'
    """

    surface: Surface
    endpoint: str
    model: str | None
    stream: bool
    body: bytes
    fields: dict[str, Any]
    model_key: str | None = None
    num_ctx: int | None = None
