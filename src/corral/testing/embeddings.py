"""Deterministic embedding vectors: unit length, derived from a hash of the text.

The vector's components are read from a SHAKE-128 stream of the text, so a shorter
``dimensions`` is exactly the renormalised prefix of the full vector, as Ollama's truncation is.

Example::

    v = embedding("Why is the sky blue?", 768)
    len(v)                        # 768
    round(sum(x * x for x in v))  # 1
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import sys
from array import array


def embedding(text: str, dimensions: int) -> list[float]:
    raw = array("h", hashlib.shake_128(text.encode()).digest(2 * dimensions))
    if sys.byteorder == "big":
        raw.byteswap()
    norm = math.hypot(*raw) or 1.0
    scale = 1.0 / norm
    return [v * scale for v in raw]


def to_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
