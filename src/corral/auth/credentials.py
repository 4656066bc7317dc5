"""Where a client puts its API key, and taking it out again before the request goes upstream.

Looked for in this order: ``Authorization: Bearer <key>``, ``X-API-Key``, the header named by
``auth.header`` (seed 001's ``authHeaderName``; when that is ``Authorization``, a bare key without
``Bearer`` works too), ``?apikey=`` in the query and ``"apikey"`` in a JSON body (seed 004).
A backend never sees any of them.

>>> from corral.http.messages import Headers
>>> Credentials(None).from_headers(Headers([(b"Authorization", b"Bearer corral_abc")]))
'corral_abc'
>>> from_query("apikey=k1&x=1"), strip_query("apikey=k1&x=1")
('k1', 'x=1')
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from corral.http.messages import Headers


QUERY_FIELD = "apikey"
BODY_FIELD = "apikey"


class Credentials:
    """The headers that may carry a key, for one ``auth.header`` setting."""

    def __init__(self, header: str | None) -> None:
        self.header = header.lower().encode("latin-1") if header else None
        names = {b"authorization", b"x-api-key"}
        if self.header is not None:
            names.add(self.header)
        # Removed from every request forwarded upstream.
        self.header_names = frozenset(names)

    def from_headers(self, headers: Headers) -> str | None:
        authorization = headers.get_bytes(b"authorization")
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return value.strip().decode("latin-1")
            if self.header == b"authorization":
                return authorization.strip().decode("latin-1")
        found = headers.get_bytes(b"x-api-key")
        if found is None and self.header is not None and self.header != b"authorization":
            found = headers.get_bytes(self.header)
        return found.strip().decode("latin-1") if found is not None else None


def from_query(query: str) -> str | None:
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if unquote_plus(name) == QUERY_FIELD:
            return unquote_plus(value)
    return None


def strip_query(query: str) -> str:
    """``query`` without its ``apikey`` parameters; the others keep their exact spelling."""
    kept = [
        part for part in query.split("&") if unquote_plus(part.partition("=")[0]) != QUERY_FIELD
    ]
    return "&".join(kept)
