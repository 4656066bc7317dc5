"""Errors corral answers with. The status lives on the class; nothing else knows status codes.

::

    CorralError                      500
    ├── BadRequest                   400  invalid JSON, missing model, bad field
    ├── Unauthorized                 401
    ├── Forbidden                    403  IP denied, model not allowed for a key
    ├── NotFound                     404  unknown path
    │   └── ModelNotFound            404  no backend has the model (Ollama's wording)
    ├── MethodNotAllowed             405
    ├── PayloadTooLarge              413
    ├── RateLimited                  429  (Retry-After)
    ├── Unavailable                  503  (Retry-After)
    │   ├── QueueFull
    │   ├── QueueTimeout
    │   └── NoHealthyBackend
    ├── UpstreamError                502  a backend refused, reset or sent garbage
    └── UpstreamTimeout              504  a backend did not answer in time

Rendering is per API surface (``corral.http.errors``): ``{"error": "..."}`` on native routes,
OpenAI's error object on ``/v1``.
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every error corral answers with. ``message`` is safe to show a client."""

    status: int = 500
    # The error ``type`` on /v1 routes; Ollama's /v1 layer says "api_error" for what it does not
    # name, and so does corral.
    openai_type: str = "api_error"
    openai_code: str | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(CorralError):
    status = 400
    openai_type = "invalid_request_error"


class Unauthorized(CorralError):
    status = 401
    openai_type = "authentication_error"
    openai_code = "invalid_api_key"


class Forbidden(CorralError):
    status = 403
    openai_type = "permission_error"


class NotFound(CorralError):
    status = 404
    # As Ollama's own /v1 layer types a 404.
    openai_type = "not_found_error"


class ModelNotFound(NotFound):
    # Ollama's own wording, which clients match on. It differs by endpoint: generation says
    # what to do, the model-management and embed endpoints only what is missing.
    _TERSE = frozenset({"/api/show", "/api/delete", "/api/embed", "/v1/embeddings", "/api/push"})

    def __init__(self, model: str, endpoint: str = "/api/generate") -> None:
        if endpoint in self._TERSE:
            message = f"model '{model}' not found"
        else:
            message = f'model "{model}" not found, try pulling it first'
        super().__init__(message)
        self.model = model


class MethodNotAllowed(CorralError):
    status = 405
    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(CorralError):
    status = 413
    openai_type = "invalid_request_error"


class RateLimited(CorralError):
    status = 429
    openai_type = "rate_limit_error"
    openai_code = "rate_limit_exceeded"


class Unavailable(CorralError):
    status = 503


class QueueFull(Unavailable):
    pass


class QueueTimeout(Unavailable):
    pass


class NoHealthyBackend(Unavailable):
    pass


class UpstreamError(CorralError):
    status = 502


class UpstreamTimeout(CorralError):
    status = 504
