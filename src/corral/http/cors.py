"""CORS for browser clients: which origins may call corral, and the preflight answer.

Corral answers CORS itself and does not forward ``Origin`` upstream: the fleet's Ollama servers
need no ``OLLAMA_ORIGINS`` of their own. Patterns may end in or contain ``*`` (``http://localhost:*``);
``*`` alone allows any origin.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from corral.http.messages import HeaderList, Request, Response

_ALLOWED_HEADERS = (
    b"Authorization, Content-Type, User-Agent, Accept, X-Requested-With, X-Request-ID, X-API-Key"
)
_METHODS = b"GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


class CorsPolicy:
    """>>> CorsPolicy(["http://localhost:*"]).allows("http://localhost:3000")
    True
    """

    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        patterns = [fnmatch.translate(o) for o in origins if o != "*"]
        self._regex = re.compile("|".join(patterns)) if patterns else None
        self._seen: dict[str, bool] = {}

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        verdict = self._seen.get(origin)
        if verdict is None:
            verdict = bool(self._regex and self._regex.fullmatch(origin))
            if len(self._seen) < 1024:
                self._seen[origin] = verdict
        return verdict

    def headers_for(self, request: Request) -> HeaderList:
        origin = request.headers.get_bytes(b"origin")
        if origin is None or not self.allows(origin.decode("latin-1")):
            return []
        return [(b"Access-Control-Allow-Origin", origin), (b"Vary", b"Origin")]

    def preflight(self, request: Request) -> Response:
        headers = self.headers_for(request)
        if not headers:
            return Response(403, b"", [(b"Content-Type", b"text/plain")])
        asked = request.headers.get_bytes(b"access-control-request-headers")
        headers += [
            (b"Access-Control-Allow-Methods", _METHODS),
            (b"Access-Control-Allow-Headers", asked or _ALLOWED_HEADERS),
            (b"Access-Control-Max-Age", b"43200"),
        ]
        return Response(204, b"", headers)
