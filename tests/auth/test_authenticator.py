"""Verifying keys: every bad shape is refused the same way, and states say what is wrong."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.auth import authenticator as authenticator_module
from corral.auth.authenticator import MAX_KEY_LENGTH, Authenticator
from corral.auth.keyformat import KEY_PREFIX
from corral.auth.keyring import KeyRing
from corral.errors import Unauthorized
from tests.auth.fakes import EPOCH, FakeClock, MemoryKeyStore


@pytest.fixture
async def setup() -> tuple[Authenticator, MemoryKeyStore, str, FakeClock]:
    store = MemoryKeyStore()
    _, issued = store.add("ci")
    ring = KeyRing(store, interval=60)
    await ring.load()
    clock = FakeClock()
    return Authenticator(ring, clock=clock), store, issued.plaintext, clock


def bad_variants(key: str) -> dict[str, str]:
    secret = key.removeprefix(KEY_PREFIX)
    flipped_last = key[:-1] + ("A" if key[-1] != "A" else "B")
    return {
        "empty": "",
        "wrong prefix": "sk-" + secret,
        "other product's prefix": "corral-" + secret,
        "last character wrong": flipped_last,
        "truncated": key[:-1],
        "prefix only": key[:15],
        "one character longer": key + "A",
        "over-long": key + "A" * (MAX_KEY_LENGTH + 1),
        "non-ASCII": key[:-1] + "é",
        "header injection CRLF": key + "\r\nX-Admin-Token: x",
        "NUL byte": key + "\x00",
        "surrounding spaces": f" {key} ",
        "lowercased": key.lower() if key.lower() != key else key.upper(),
    }


async def test_the_issued_key_is_accepted(
    setup: tuple[Authenticator, MemoryKeyStore, str, FakeClock],
) -> None:
    auth, _, key, _ = setup
    principal = auth.verify(key)
    assert (principal.key_id, principal.name) == (1, "ci")


@pytest.mark.parametrize("kind", list(bad_variants(KEY_PREFIX + "x" * 43)))
async def test_a_malformed_or_wrong_key_is_refused_as_invalid(
    setup: tuple[Authenticator, MemoryKeyStore, str, FakeClock], kind: str
) -> None:
    auth, _, key, _ = setup
    presented = bad_variants(key)[kind]
    with pytest.raises(Unauthorized) as err:
        auth.verify(presented)
    assert err.value.message == "Invalid API key"
    assert key not in err.value.message
    assert not presented or presented not in err.value.message


async def test_every_presented_key_takes_one_code_path(
    setup: tuple[Authenticator, MemoryKeyStore, str, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever part of a key is wrong, it is hashed whole and compared once in constant time:
    no early exit that would let timing tell a wrong prefix from a wrong last character."""
    auth, _, key, _ = setup
    trace: list[str] = []
    real_sha256, real_compare = authenticator_module.sha256, authenticator_module.hmac

    def sha256(data: bytes) -> Any:
        trace.append("sha256")
        return real_sha256(data)

    class CountingHmac:
        @staticmethod
        def compare_digest(a: bytes, b: bytes) -> bool:
            trace.append(f"compare_digest({len(a)},{len(b)})")
            return real_compare.compare_digest(a, b)

    monkeypatch.setattr(authenticator_module, "sha256", sha256)
    monkeypatch.setattr(authenticator_module, "hmac", CountingHmac)
    paths = {}
    variants = {"valid": key, **bad_variants(key)}
    del variants["over-long"]  # refused by length alone, before any hashing
    for kind, presented in variants.items():
        trace.clear()
        with contextlib.suppress(Unauthorized):
            auth.verify(presented)
        paths[kind] = list(trace)
    assert all(path == ["sha256", "compare_digest(32,32)"] for path in paths.values()), paths


async def test_revoked_inactive_and_expired_keys_say_which(
    setup: tuple[Authenticator, MemoryKeyStore, str, FakeClock],
) -> None:
    auth, store, key, clock = setup
    ring = auth.keyring
    assert ring is not None

    store.change(1, expires_at=EPOCH + timedelta(hours=1))
    await ring.refresh()
    assert auth.verify(key).name == "ci"
    clock.now += 3600
    with pytest.raises(Unauthorized, match="API key has expired"):
        auth.verify(key)

    store.change(1, expires_at=None, active=False)
    await ring.refresh()
    with pytest.raises(Unauthorized, match="API key is inactive"):
        auth.verify(key)

    store.change(1, active=True, revoked_at=datetime.now(UTC))
    await ring.refresh()
    with pytest.raises(Unauthorized, match="API key has been revoked"):
        auth.verify(key)


async def test_keys_from_settings_are_checked_the_same_way() -> None:
    auth = Authenticator(None, static_keys=["sk-llamagate", "ahP7DieD7rNpTUa6No--iJpOaXY3TDK8="])
    assert auth.verify("sk-llamagate").name == "settings key 1"
    assert auth.verify("ahP7DieD7rNpTUa6No--iJpOaXY3TDK8=").key_id is None
    for wrong in ["sk-llamagat", "sk-llamagate ", "SK-LLAMAGATE", ""]:
        with pytest.raises(Unauthorized, match="Invalid API key"):
            auth.verify(wrong)


async def test_auth_is_on_when_a_key_exists_or_when_required() -> None:
    store = MemoryKeyStore()
    ring = KeyRing(store, interval=60)
    await ring.load()
    auth = Authenticator(ring)
    assert not auth.enabled
    auth.configure([], required=True)
    assert auth.enabled
    auth.configure(["sk-1"], required=False)
    assert auth.enabled
    auth.configure([], required=False)
    record, _ = store.add("ci")
    store.change(record.id, revoked_at=datetime.now(UTC))
    await ring.refresh()
    assert auth.enabled  # a revoked key still exists: revoking never opens the gateway
