"""Rendering errors, once per API surface: Ollama's ``{"error": "..."}``, OpenAI's error object."""

from __future__ import annotations

import math

from corral.context import Surface
from corral.errors import CorralError, MethodNotAllowed
from corral.http.messages import HeaderList, Response


def render_error(err: CorralError, surface: Surface) -> Response:
    headers: HeaderList = []
    if err.retry_after is not None:
        headers.append((b"Retry-After", str(max(1, math.ceil(err.retry_after))).encode()))
    if isinstance(err, MethodNotAllowed) and err.allow:
        headers.append((b"Allow", err.allow.encode()))
    if surface == "openai":
        payload: object = {
            "error": {
                "message": err.message,
                "type": err.openai_type,
                "param": None,
                "code": err.openai_code,
            }
        }
    else:
        payload = {"error": err.message}
    return Response.json(err.status, payload, headers)


def render_plain(path: str, status: int, message: str) -> Response:
    """For the HTTP layer's own errors (framing, limits), where only the path is known."""
    surface: Surface = "openai" if path.startswith("/v1/") else "ollama"
    err = CorralError(message)
    err.status = status
    err.openai_type = "invalid_request_error" if status < 500 else "api_error"
    return render_error(err, surface)
