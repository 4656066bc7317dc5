"""The key format: prefix, length, randomness, and what is stored instead of the key."""

from __future__ import annotations

import hashlib

from corral.auth.keyformat import KEY_PREFIX, PREFIX_LENGTH, is_key_shaped, key_digest, new_key


def test_a_key_is_corral_prefix_and_256_random_bits() -> None:
    issued = new_key()
    secret = issued.plaintext.removeprefix(KEY_PREFIX)
    assert issued.plaintext.startswith("corral_")
    assert len(secret) == 43  # base64url of 32 bytes
    assert is_key_shaped(issued.plaintext)
    # What is hidden after the visible prefix still carries more than 192 bits.
    assert (len(issued.plaintext) - PREFIX_LENGTH) * 6 >= 192


def test_keys_do_not_repeat() -> None:
    keys = {new_key().plaintext for _ in range(2000)}
    assert len(keys) == 2000
    assert len({k[:PREFIX_LENGTH] for k in keys}) == 2000


def test_only_the_digest_and_the_visible_prefix_are_kept() -> None:
    issued = new_key()
    assert issued.digest == hashlib.sha256(issued.plaintext.encode()).digest()
    assert issued.prefix == issued.plaintext[:PREFIX_LENGTH]
    assert issued.plaintext not in repr(issued)


def test_any_text_has_a_digest() -> None:
    for text in ["", "ключ", "\udcff", "a\r\nb", "x" * 10_000]:
        assert len(key_digest(text)) == 32
