"""Which requests the cache may answer or keep: the endpoints, the mode, ``Cache-Control``.

Cacheability is decided from cheap field checks, before any hashing, so a request the cache will
not touch (the default chat, sampled at a random temperature) costs a dictionary lookup or two.

Modes (``cache_mode``):

- ``deterministic`` (default): embeddings, and generations that ask for ``temperature`` 0 or a
  fixed ``seed``: the requests whose answer does not change when asked again.
- ``all``: every request to a cacheable endpoint; a repeated question gets the first answer.
- ``off``: nothing is cached.

Per request, ``Cache-Control: no-cache`` skips the lookup but keeps the fresh answer, and
``no-store`` keeps the request away from the cache altogether.

Example::

    policy = CachePolicy("deterministic")
    kind = KINDS["/api/chat"]
    policy.cacheable(kind, {"options": {"temperature": 0}})   # True
    directive(b"no-cache")                                      # Directive.REFRESH
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["deterministic", "all", "off"]
Shape = Literal["json", "ndjson", "sse"]


@dataclass(frozen=True, slots=True)
class Kind:
    """A cacheable endpoint: its name in cache keys, and how its answers are shaped."""

    name: str
    openai: bool
    # The shape of a streamed answer; None for endpoints that never stream (embeddings).
    stream_shape: Shape | None

    @property
    def embedding(self) -> bool:
        return self.stream_shape is None

    def shape(self, stream: bool) -> Shape:
        """The shape of the answer to a request with this ``stream`` flag."""
        return self.stream_shape if stream and self.stream_shape is not None else "json"


KINDS: dict[str, Kind] = {
    "/api/generate": Kind("generate", False, "ndjson"),
    "/api/chat": Kind("chat", False, "ndjson"),
    "/api/embed": Kind("embed", False, None),
    "/api/embeddings": Kind("embeddings", False, None),
    "/v1/chat/completions": Kind("openai_chat", True, "sse"),
    "/v1/completions": Kind("openai_completion", True, "sse"),
    "/v1/embeddings": Kind("openai_embeddings", True, None),
}


class Directive(enum.Enum):
    """What one request lets the cache do."""

    USE = "use"  # look up, and keep the answer on a miss
    REFRESH = "refresh"  # no-cache: do not look up, keep the fresh answer
    SKIP = "skip"  # no-store: neither


def directive(cache_control: bytes | None) -> Directive:
    """The request's ``Cache-Control`` header, as far as the cache is concerned."""
    if not cache_control:
        return Directive.USE
    names = {part.split(b"=", 1)[0].strip() for part in cache_control.lower().split(b",")}
    if b"no-store" in names:
        return Directive.SKIP
    if b"no-cache" in names:
        return Directive.REFRESH
    return Directive.USE


def _is_number(value: object, wanted: float) -> bool:
    return type(value) in (int, float) and value == wanted


class CachePolicy:
    """Decides, from the request's fields alone, whether its answer may be cached.

    >>> CachePolicy("deterministic").cacheable(KINDS["/api/embed"], {"input": "hi"})
    True
    """

    __slots__ = ("mode",)

    def __init__(self, mode: Mode = "deterministic") -> None:
        self.mode: Mode = mode

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def cacheable(self, kind: Kind, fields: dict[str, Any]) -> bool:
        mode = self.mode
        if mode == "all":
            return True
        if mode == "off":
            return False
        return kind.embedding or deterministic(kind, fields)


def deterministic(kind: Kind, fields: dict[str, Any]) -> bool:
    """Temperature 0 (greedy decoding) or a fixed seed: asked again, the model says the same.

    Ollama reads both from ``options``; its OpenAI layer from the top level. A negative seed is
    llama.cpp's "random", so it does not count.
    """
    params = fields if kind.openai else fields.get("options")
    if not isinstance(params, dict):
        return False
    if _is_number(params.get("temperature"), 0):
        return True
    seed = params.get("seed")
    return type(seed) is int and seed >= 0
