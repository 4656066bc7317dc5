"""The cache key: a hash of the canonical request.

Two requests share a key exactly when they must get the same answer. The key covers the endpoint
kind, the model name as the client wrote it (it is echoed in the answer), the model's digest
(a re-pulled ``latest`` is another model), and every field of the body but those that only
shape the delivery: ``stream``, ``stream_options`` (the replay honours them) and ``keep_alive``;
and ``apikey``, which is a credential, not a question. Unknown fields are kept: a field corral
does not know may change the answer, and an extra miss is cheaper than a wrong hit.

Canonical means: keys sorted; ``null`` the same as absent; every documented field written out,
with its default when it is absent (``"raw": false``, ``"images": []``, ``"format": ""`` is no
format); a whole float the same number as the integer (``"temperature": 0.0`` is ``0``).

Example::

    key = cache_key("chat", "llama3.2", "sha256:ab12...", {"messages": [...], "stream": True})
    key == cache_key("chat", "llama3.2", "sha256:ab12...", {"messages": [...]})   # True
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

# Delivery, not content: the same answer, sent differently.
IGNORED_FIELDS = frozenset({"model", "stream", "stream_options", "keep_alive", "apikey"})

_GENERATION_DEFAULTS: dict[str, Any] = {
    "format": None,
    "think": None,
    "options": {},
    "logprobs": False,
    "top_logprobs": 0,
    "truncate": True,
    "shift": True,
}
# Ollama's documented defaults: a field absent and a field set to these are the same request.
DEFAULTS: dict[str, dict[str, Any]] = {
    "generate": {
        **_GENERATION_DEFAULTS,
        "prompt": "",
        "suffix": "",
        "system": "",
        "template": "",
        "context": [],
        "images": [],
        "raw": False,
    },
    "chat": {**_GENERATION_DEFAULTS, "messages": [], "tools": []},
    "embed": {"input": None, "truncate": True, "dimensions": None, "options": {}},
    "embeddings": {"prompt": "", "options": {}},
    "openai_chat": {"messages": [], "tools": [], "n": 1, "logprobs": False, "stop": None},
    "openai_completion": {"prompt": "", "suffix": "", "n": 1, "stop": None},
    "openai_embeddings": {"input": None, "encoding_format": "float", "dimensions": None},
}
MESSAGE_DEFAULTS: dict[str, Any] = {
    "content": "",
    "images": [],
    "tool_calls": [],
    "thinking": "",
    "tool_name": "",
}
# Values Ollama reads as "not set" besides null ("format": "" is no format).
_UNSET_ALIASES: dict[str, Any] = {"format": ""}


def cache_key(kind: str, model: str, digest: str, fields: dict[str, Any]) -> str:
    """The key of a request to endpoint ``kind`` for ``model`` (whose digest is ``digest``)."""
    material = orjson.dumps(
        [kind, model, digest, canonical_request(kind, fields)], option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(material, digest_size=20).hexdigest()


def canonical_request(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The request's answer-changing fields with every default made explicit."""
    canonical: dict[str, Any] = dict(DEFAULTS[kind])
    for name, value in fields.items():
        if name in IGNORED_FIELDS or value is None:
            continue
        if name in _UNSET_ALIASES and value == _UNSET_ALIASES[name]:
            continue
        # bool is an int subclass, but True is not 1 here: only real floats are folded.
        if type(value) is float and value.is_integer():
            value = int(value)
        canonical[name] = value
    options = canonical.get("options")
    if isinstance(options, dict) and options:
        canonical["options"] = {k: _number(v) for k, v in options.items() if v is not None}
    stop = canonical.get("stop")
    if isinstance(stop, str):
        canonical["stop"] = [stop]  # OpenAI: one stop string or a list of them
    messages = canonical.get("messages")
    if not kind.startswith("openai") and isinstance(messages, list) and messages:
        canonical["messages"] = [_message(m) for m in messages]
    return canonical


def _message(message: object) -> object:
    if not isinstance(message, dict):
        return message
    if None in message.values():
        message = {k: v for k, v in message.items() if v is not None}
    return {**MESSAGE_DEFAULTS, **message}


def _number(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        return int(value)
    return value
