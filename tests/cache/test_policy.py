"""Which requests may be cached: by endpoint, mode, determinism and Cache-Control."""

from __future__ import annotations

from typing import Any

import pytest

from corral.cache.policy import KINDS, CachePolicy, Directive, directive

CHAT, V1_CHAT, EMBED = KINDS["/api/chat"], KINDS["/v1/chat/completions"], KINDS["/api/embed"]


@pytest.mark.parametrize(
    ("kind", "fields", "expected"),
    [
        (CHAT, {}, False),  # sampled at the model's temperature: another answer each time
        (CHAT, {"options": {"temperature": 0.7}}, False),
        (CHAT, {"options": {"temperature": 0}}, True),
        (CHAT, {"options": {"temperature": 0.0}}, True),
        (CHAT, {"options": {"seed": 42, "temperature": 1.2}}, True),
        (CHAT, {"options": {"seed": -1}}, False),  # llama.cpp's "random"
        (CHAT, {"options": {"temperature": False}}, False),
        (CHAT, {"temperature": 0}, False),  # Ollama reads it from options only
        (V1_CHAT, {"temperature": 0}, True),
        (V1_CHAT, {"seed": 7}, True),
        (V1_CHAT, {"options": {"temperature": 0}}, False),
        (EMBED, {}, True),
        (KINDS["/v1/embeddings"], {}, True),
        (KINDS["/api/embeddings"], {}, True),
    ],
)
def test_deterministic_mode_caches_embeddings_and_fixed_generations(
    kind: Any, fields: dict[str, Any], expected: bool
) -> None:
    assert CachePolicy("deterministic").cacheable(kind, fields) is expected


def test_all_mode_caches_every_request_and_off_none() -> None:
    assert CachePolicy("all").cacheable(CHAT, {})
    assert not CachePolicy("off").cacheable(EMBED, {})
    assert not CachePolicy("off").enabled


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Directive.USE),
        (b"", Directive.USE),
        (b"max-age=60", Directive.USE),
        (b"no-cache", Directive.REFRESH),
        (b"No-Cache", Directive.REFRESH),
        (b"max-age=0, no-cache", Directive.REFRESH),
        (b"no-store", Directive.SKIP),
        (b"no-cache, no-store", Directive.SKIP),
    ],
)
def test_cache_control_directives(header: bytes | None, expected: Directive) -> None:
    assert directive(header) is expected


def test_only_answer_endpoints_are_cacheable() -> None:
    assert set(KINDS) == {
        "/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
    }  # fmt: skip
    assert KINDS["/api/generate"].shape(True) == "ndjson"
    assert KINDS["/v1/completions"].shape(True) == "sse"
    assert KINDS["/api/embed"].shape(True) == "json"
