"""The cache key: equal canonical requests share a key; any answer-changing field changes it."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from corral.cache.key import DEFAULTS, MESSAGE_DEFAULTS, cache_key

DIGEST = "sha256:" + "ab" * 32
text = st.text(max_size=12)
small_float = st.floats(min_value=-4, max_value=4, allow_nan=False).map(lambda f: round(f, 2))
scalar = st.none() | st.booleans() | st.integers(-5, 5) | small_float | text
json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
options = st.dictionaries(
    st.sampled_from(["temperature", "seed", "num_ctx", "top_k", "top_p", "stop", "num_predict"]),
    st.integers(0, 4096) | small_float | st.lists(text, max_size=2),
    max_size=4,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": text},
    optional={
        "images": st.lists(text, max_size=2),
        "thinking": text,
        "tool_calls": st.lists(st.fixed_dictionaries({"function": json_value}), max_size=1),
        "tool_name": text,
    },
)
messages = st.lists(message, min_size=1, max_size=3)

REQUESTS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "generate": st.fixed_dictionaries(
        {"prompt": text},
        optional={
            "suffix": text, "system": text, "template": text, "raw": st.booleans(),
            "images": st.lists(text, max_size=2), "context": st.lists(st.integers(0, 9), max_size=3),
            "format": st.sampled_from(["", "json", {"type": "object"}]),
            "think": st.sampled_from([True, False, "low", "high"]), "options": options,
            "logprobs": st.booleans(), "top_logprobs": st.integers(0, 5),
            "truncate": st.booleans(), "shift": st.booleans(),
        },
    ),
    "chat": st.fixed_dictionaries(
        {"messages": messages},
        optional={
            "tools": st.lists(json_value, max_size=2), "options": options,
            "format": st.sampled_from(["", "json", {"type": "object"}]),
            "think": st.sampled_from([True, False, "medium"]), "logprobs": st.booleans(),
            "top_logprobs": st.integers(0, 5), "truncate": st.booleans(), "shift": st.booleans(),
        },
    ),
    "embed": st.fixed_dictionaries(
        {"input": text | st.lists(text, min_size=1, max_size=3)},
        optional={"truncate": st.booleans(), "dimensions": st.integers(1, 64), "options": options},
    ),
    "embeddings": st.fixed_dictionaries({"prompt": text}, optional={"options": options}),
    "openai_chat": st.fixed_dictionaries(
        {"messages": messages},
        optional={
            "temperature": small_float, "seed": st.integers(0, 99), "top_p": small_float,
            "max_tokens": st.integers(1, 99), "stop": text | st.lists(text, max_size=2),
            "tools": st.lists(json_value, max_size=2), "frequency_penalty": small_float,
            "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
            "reasoning_effort": st.sampled_from(["low", "high"]),
        },
    ),
    "openai_completion": st.fixed_dictionaries(
        {"prompt": text},
        optional={"suffix": text, "temperature": small_float, "seed": st.integers(0, 99),
                  "max_tokens": st.integers(1, 99), "stop": text | st.lists(text, max_size=2)},
    ),
    "openai_embeddings": st.fixed_dictionaries(
        {"input": text | st.lists(text, min_size=1, max_size=3)},
        optional={"dimensions": st.integers(1, 64), "encoding_format": st.just("base64")},
    ),
}  # fmt: skip
kinds = st.sampled_from(sorted(REQUESTS))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(kinds)
    return kind, draw(REQUESTS[kind])


def key(kind: str, fields: dict[str, Any], model: str = "llama3.2", digest: str = DIGEST) -> str:
    return cache_key(kind, model, digest, fields)


def respelled(kind: str, fields: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The same request written differently: other key order, defaults spelled out, whole floats
    as floats, ``null`` for absent, and delivery fields that do not change the answer."""
    out: dict[str, Any] = {}
    for name, default in DEFAULTS[kind].items():
        if name not in fields:
            out[name] = None if name in extra.get("as_null", ()) else copy.deepcopy(default)
    for name, value in reversed(list(fields.items())):
        if name == "options":
            value = {k: float(v) if type(v) is int else v for k, v in value.items()}
        if name == "messages" and not kind.startswith("openai"):
            value = [{**{k: v for k, v in MESSAGE_DEFAULTS.items() if k not in m}, **m} for m in value]
        out[name] = value
    out.update(extra.get("delivery", {}))
    return out


delivery = st.fixed_dictionaries(
    {},
    optional={
        "stream": st.booleans(),
        "keep_alive": st.sampled_from([0, -1, "5m", "1h", 300]),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    },
)


@given(requests(), delivery, st.lists(st.sampled_from(["format", "think", "dimensions"])))
def test_equal_canonical_requests_share_a_key(
    request: tuple[str, dict[str, Any]], extra: dict[str, Any], as_null: list[str]
) -> None:
    kind, fields = request
    other = respelled(kind, fields, {"delivery": extra, "as_null": as_null})
    assert key(kind, other) == key(kind, fields)


@given(requests(), delivery)
def test_stream_and_keep_alive_do_not_change_the_key(
    request: tuple[str, dict[str, Any]], extra: dict[str, Any]
) -> None:
    kind, fields = request
    assert key(kind, {**fields, **extra}) == key(kind, fields)


def changed(kind: str, fields: dict[str, Any], name: str) -> dict[str, Any]:
    """``fields`` with ``name`` set to a value that asks a different question."""
    current = fields.get(name, DEFAULTS[kind].get(name))
    if name == "messages":
        last = dict(current[-1])
        variant = len(current) % 4
        if variant == 0:
            last["content"] = (last.get("content") or "") + "!"
        elif variant == 1:
            last["images"] = [*(last.get("images") or []), "aGk="]
        elif variant == 2:
            last["tool_calls"] = [*(last.get("tool_calls") or []), {"function": {"name": "f"}}]
        else:
            last["thinking"] = (last.get("thinking") or "") + "hmm"
        value: Any = [*current[:-1], last]
    elif name == "options":
        temperature = current.get("temperature")
        number = type(temperature) in (int, float)
        value = {**current, "temperature": temperature + 0.5 if number else 0.25}
    elif name == "format":
        value = {"type": "object"} if current == "json" else "json"
    elif name == "think":
        value = "high" if current is True else True
    elif name == "stop":
        value = [*(current if isinstance(current, list) else [current] if current else []), "#"]
    elif isinstance(current, bool):
        value = not current
    elif isinstance(current, int | float):
        value = current + 1
    elif isinstance(current, str):
        value = current + "!"
    elif isinstance(current, list):
        value = [*current, "more"]
    elif isinstance(current, dict):
        value = {**current, "x": 1}
    else:  # None: absent and without a default
        value = {"reasoning_effort": "low", "response_format": {"type": "json_object"}}.get(name, 7)
    return {**fields, name: value}


ANSWER_FIELDS = {
    "generate": ["prompt", "suffix", "system", "template", "raw", "images", "context", "format",
                 "think", "options", "logprobs", "top_logprobs", "truncate", "shift"],
    "chat": ["messages", "tools", "format", "think", "options", "logprobs", "top_logprobs",
             "truncate", "shift"],
    "embed": ["input", "truncate", "dimensions", "options"],
    "embeddings": ["prompt", "options"],
    "openai_chat": ["messages", "temperature", "seed", "top_p", "max_tokens", "stop", "tools",
                    "frequency_penalty", "response_format", "reasoning_effort"],
    "openai_completion": ["prompt", "suffix", "temperature", "seed", "max_tokens", "stop"],
    "openai_embeddings": ["input", "dimensions", "encoding_format"],
}  # fmt: skip


@given(requests(), st.data())
def test_changing_any_answer_field_changes_the_key(
    request: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    kind, fields = request
    name = data.draw(st.sampled_from(ANSWER_FIELDS[kind]))
    assert key(kind, changed(kind, fields, name)) != key(kind, fields)


@given(requests(), text, text)
def test_model_name_digest_and_endpoint_are_part_of_the_key(
    request: tuple[str, dict[str, Any]], model: str, digest: str
) -> None:
    kind, fields = request
    base = key(kind, fields)
    assert key(kind, fields, model="llama3.2:latest" + model) != base
    assert key(kind, fields, digest=digest + "new") != base
    other = next(k for k in sorted(REQUESTS) if k != kind)
    assert cache_key(other, "llama3.2", DIGEST, fields) != base


def test_an_unknown_field_is_kept_in_the_key() -> None:
    fields = {"prompt": "hi"}
    assert key("generate", {**fields, "min_p_future": 0.1}) != key("generate", fields)
