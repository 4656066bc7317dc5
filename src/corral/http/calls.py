"""The edge of the request flow: a request's JSON read into a :class:`Call`, and the headers
that go upstream with it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from corral.backends.models import normalize_model
from corral.context import Call
from corral.errors import BadRequest
from corral.http import routes
from corral.http.messages import HeaderList, Request

# Never forwarded: hop-by-hop, recomputed, or answered by corral itself (CORS).
_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
        b"origin",
        b"x-request-id",
        b"x-forwarded-for",
    }
)


def parse_call(endpoint: routes.Endpoint, request: Request) -> Call:
    """What a request asks (a :class:`Call`), from its JSON body; bad input is a 400 here."""
    fields: dict[str, Any] = {}
    body = request.body
    if body and request.method in ("POST", "DELETE") and endpoint.name != "/api/blobs/{digest}":
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise BadRequest(f"invalid JSON in request body: {err}") from None
        if not isinstance(decoded, dict):
            raise BadRequest("request body must be a JSON object")
        fields = decoded
    model: str | None = None
    if endpoint.kind == "model":
        for field in endpoint.model_fields:
            value = fields.get(field)
            if isinstance(value, str) and value:
                model = value
                break
        if model is None:
            raise BadRequest("model is required")
    stream = fields.get("stream", endpoint.streams_by_default)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false")
    num_ctx = None
    options = fields.get("options")
    if isinstance(options, dict):
        value = options.get("num_ctx")
        num_ctx = value if isinstance(value, int) else None
    model_key = normalize_model(model) if model is not None else None
    return Call(endpoint.surface, endpoint.name, model, stream, body, fields, model_key, num_ctx)


def upstream_headers(
    request: Request, request_id: str, credentials: Collection[bytes]
) -> HeaderList:
    """The client's headers as a backend gets them: hop-by-hop and corral's own removed,
    ``X-Forwarded-For`` and ``X-Request-ID`` added. A client's credentials are corral's
    business only: no backend ever sees them."""
    headers = [
        (n, v)
        for n, v in request.headers.raw
        if (name := n.lower()) not in _NOT_FORWARDED and name not in credentials
    ]
    forwarded = request.headers.get_bytes(b"x-forwarded-for")
    client = request.client[0].encode()
    headers.append((b"X-Forwarded-For", forwarded + b", " + client if forwarded else client))
    headers.append((b"X-Request-ID", request_id.encode()))
    return headers
