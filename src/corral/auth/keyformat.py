"""The API key format: ``corral_`` + 43 URL-safe characters (256 random bits).

Only the SHA-256 digest of a key is stored, plus its first characters for display and lookup.
The secret is random, so a slow password hash would add nothing but latency to every request.

>>> issued = new_key()
>>> issued.plaintext.startswith("corral_"), len(issued.plaintext), len(issued.digest)
(True, 50, 32)
>>> issued.prefix == issued.plaintext[:15] and key_digest(issued.plaintext) == issued.digest
True
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

KEY_PREFIX = "corral_"
SECRET_BYTES = 32
# Characters of the secret shown with the prefix: 48 of the 256 bits, which leaves 208 unknown.
VISIBLE_CHARS = 8
PREFIX_LENGTH = len(KEY_PREFIX) + VISIBLE_CHARS
_KEY = re.compile(r"corral_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made. ``plaintext`` is shown once, to whoever asked, and never kept."""

    plaintext: str = field(repr=False)
    prefix: str
    digest: bytes = field(repr=False)


def new_key() -> IssuedKey:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    return IssuedKey(plaintext, plaintext[:PREFIX_LENGTH], key_digest(plaintext))


def key_digest(key: str) -> bytes:
    """SHA-256 of any presented text; never fails, whatever the characters."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def is_key_shaped(text: str) -> bool:
    """Whether ``text`` has the form of a whole corral key (says nothing about its validity)."""
    return _KEY.fullmatch(text) is not None
