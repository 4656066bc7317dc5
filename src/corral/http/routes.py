"""The route table: every path corral answers, what it is, and how it reaches a backend.

``kind`` says how a request is served:

- ``model``: names a model in its JSON body; routed to a backend that can run it.
- ``any``: needs no particular backend.
- ``fleet``: about the whole fleet: merged answers (``/api/tags``, ``/api/ps``, ``/api/version``,
  ``/v1/models``) and writes to every backend (pull, create, copy, delete): ``http/fleet.py``.
- ``local``: answered by corral itself (``/``, ``/health``).

``name`` is the route template used in logs and metric labels (never the raw path, which would
make label values unbounded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from corral.context import Surface
from corral.errors import MethodNotAllowed, NotFound

Kind = Literal["model", "any", "fleet", "local", "admin"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    surface: Surface
    methods: frozenset[str]
    kind: Kind
    # Whether Ollama streams this endpoint's answer unless the body says "stream": false.
    streams_by_default: bool = False
    # JSON fields that may carry the model name, in order ("name" is Ollama's older spelling).
    model_fields: tuple[str, ...] = ("model",)


def _ep(
    name: str,
    surface: Surface,
    methods: str,
    kind: Kind,
    *,
    stream: bool = False,
    model_fields: tuple[str, ...] = ("model",),
) -> Endpoint:
    return Endpoint(name, surface, frozenset(methods.split()), kind, stream, model_fields)


_ENDPOINTS = [
    _ep("/", "ollama", "GET HEAD", "local"),
    _ep("/api/version", "ollama", "GET HEAD", "fleet"),
    _ep("/api/generate", "ollama", "POST", "model", stream=True),
    _ep("/api/chat", "ollama", "POST", "model", stream=True),
    _ep("/api/embed", "ollama", "POST", "model"),
    _ep("/api/embeddings", "ollama", "POST", "model"),
    _ep("/api/show", "ollama", "POST", "model", model_fields=("model", "name")),
    _ep("/api/tags", "ollama", "GET HEAD", "fleet"),
    _ep("/api/ps", "ollama", "GET HEAD", "fleet"),
    _ep("/api/pull", "ollama", "POST", "fleet", stream=True),
    _ep("/api/push", "ollama", "POST", "any", stream=True),
    _ep("/api/create", "ollama", "POST", "fleet", stream=True),
    _ep("/api/copy", "ollama", "POST", "fleet"),
    _ep("/api/delete", "ollama", "DELETE", "fleet"),
    _ep("/v1/chat/completions", "openai", "POST", "model"),
    _ep("/v1/completions", "openai", "POST", "model"),
    _ep("/v1/embeddings", "openai", "POST", "model"),
    _ep("/v1/responses", "openai", "POST", "model"),
    _ep("/v1/models", "openai", "GET HEAD", "fleet"),
    _ep("/v1/messages", "openai", "POST", "model"),
    _ep("/health", "ops", "GET HEAD", "local"),
    _ep("/healthz", "ops", "GET HEAD", "local"),
]

# Routes with a parameter at the end of the path.
_PREFIXES = [
    ("/api/blobs/", _ep("/api/blobs/{digest}", "ollama", "HEAD POST", "any")),
    ("/v1/models/", _ep("/v1/models/{model}", "openai", "GET HEAD", "any")),
    ("/admin/", _ep("/admin/*", "ops", "GET HEAD POST PUT PATCH DELETE", "admin")),
]

EXACT: dict[str, Endpoint] = {e.name: e for e in _ENDPOINTS}


def surface_of(path: str) -> Surface:
    return "openai" if path.startswith("/v1/") else "ollama"


def match(method: str, path: str) -> Endpoint:
    """The endpoint for ``method path``; raises ``NotFound`` or ``MethodNotAllowed``."""
    endpoint = EXACT.get(path)
    if endpoint is None and len(path) > 1 and path.endswith("/"):
        endpoint = EXACT.get(path.rstrip("/"))
    if endpoint is None:
        for prefix, candidate in _PREFIXES:
            if path.startswith(prefix) and len(path) > len(prefix):
                endpoint = candidate
                break
    if endpoint is None:
        raise NotFound(f"path {path!r} not found")
    if method not in endpoint.methods and method != "OPTIONS":
        allow = allowed_methods(endpoint)
        raise MethodNotAllowed(f"method {method} not allowed on {endpoint.name}", allow=allow)
    return endpoint


def allowed_methods(endpoint: Endpoint) -> str:
    return ", ".join(sorted(endpoint.methods | {"OPTIONS"}))
