"""Verifying a presented API key: one SHA-256, one dictionary lookup, one constant-time compare.

Every presented key takes the same path, whatever is wrong with it: hashed whole (no early exit
on a wrong prefix or length), looked up by digest among the stored keys and the keys declared in
settings, then compared with :func:`hmac.compare_digest` against the stored digest (or a dummy
one when nothing matched). Only after that does the key's state (revoked, inactive, expired)
decide the message. Nothing here awaits: the key ring is already in memory.

>>> from corral.auth.keyformat import key_digest
>>> auth = Authenticator(None, static_keys=["sk-local"])
>>> auth.enabled, auth.verify("sk-local").name
(True, 'settings key 1')
>>> auth.verify("sk-wrong")
Traceback (most recent call last):
corral.errors.Unauthorized: Invalid API key
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Sequence
from hashlib import sha256

from corral.auth.keyformat import key_digest
from corral.auth.keyring import KeyEntry, KeyRing
from corral.auth.principal import Principal
from corral.errors import Unauthorized

# Longer than any key corral makes or accepts in settings; longer input is refused unhashed.
MAX_KEY_LENGTH = 512
MISSING = "API key required: send it as 'Authorization: Bearer <key>' or in an 'X-API-Key' header"
INVALID = "Invalid API key"  # seed 004's wording, which its clients may match on
REVOKED = "API key has been revoked"
INACTIVE = "API key is inactive"
EXPIRED = "API key has expired"


class Authenticator:
    """Keys from the database (through the :class:`KeyRing`) and from settings, one code path.

    Auth is ``enabled`` as soon as any key exists, or when ``required`` is set.
    """

    def __init__(
        self,
        keyring: KeyRing | None,
        *,
        static_keys: Sequence[str] = (),
        required: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        # Never equal to a real digest: compared against when nothing matched, so that a miss
        # costs what a hit costs.
        self._no_match = os.urandom(32)
        self.configure(static_keys, required)

    def configure(self, static_keys: Sequence[str], required: bool) -> None:
        """Replace the keys declared in settings, and the ``required`` switch (on reload)."""
        self.required = required
        self._static = {
            key_digest(key): KeyEntry(key_digest(key), Principal(None, f"settings key {n}"))
            for n, key in enumerate(static_keys, start=1)
        }

    def declared(self) -> list[KeyEntry]:
        """The keys declared in settings, as entries (a digest and a principal, never the key
        itself): for the per-key metrics."""
        return list(self._static.values())

    @property
    def enabled(self) -> bool:
        return self.required or bool(self._static) or bool(self.keyring and self.keyring.entries)

    def verify(self, presented: str) -> Principal:
        """The principal for ``presented``, or :class:`Unauthorized` saying what is wrong."""
        if len(presented) > MAX_KEY_LENGTH:
            raise Unauthorized(INVALID)
        # key_digest, spelled out: this runs for every request.
        digest = sha256(presented.encode("utf-8", "surrogatepass")).digest()
        keyring = self.keyring
        entry = keyring.entries.get(digest) if keyring is not None else None
        if entry is None:
            entry = self._static.get(digest)
        expected = entry.digest if entry is not None else self._no_match
        if not hmac.compare_digest(expected, digest) or entry is None:
            raise Unauthorized(INVALID)
        if entry.revoked:
            raise Unauthorized(REVOKED)
        if not entry.active:
            raise Unauthorized(INACTIVE)
        if entry.expires_at is not None and self.clock() >= entry.expires_at:
            raise Unauthorized(EXPIRED)
        return entry.principal
