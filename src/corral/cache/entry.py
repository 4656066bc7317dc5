"""A stored answer: the backend's body exactly as it came, and the shape it came in.

Keeping the bytes as sent means a request asking for the same shape gets them back untouched;
:mod:`corral.cache.replay` converts for a request that asks for another shape. The encoding is
one header line and the body, so decoding a hit is a split, not a parse::

    corral-cache/1 ndjson application/x-ndjson
    {"model":"llama3.2","created_at":...,"response":"The","done":false}
    ...

Example::

    answer = CachedAnswer("json", b"application/json; charset=utf-8", b'{"embeddings":[[0.1]]}')
    CachedAnswer.decode(answer.encode()) == answer     # True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from corral.cache.policy import Shape

_MAGIC = b"corral-cache/1"
_SHAPES = frozenset({b"json", b"ndjson", b"sse"})


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    shape: Shape
    content_type: bytes
    body: bytes

    def encode(self) -> bytes:
        return b"%s %s %s\n%s" % (_MAGIC, self.shape.encode(), self.content_type, self.body)

    @classmethod
    def decode(cls, data: bytes) -> CachedAnswer | None:
        """The answer in ``data``; None for anything else (another version's format)."""
        head, newline, body = data.partition(b"\n")
        parts = head.split(b" ", 2)
        if not newline or len(parts) != 3 or parts[0] != _MAGIC or parts[1] not in _SHAPES:
            return None
        return cls(cast(Shape, parts[1].decode()), parts[2], body)
