"""What a backend has and has loaded, as Ollama reports it (``/api/tags``, ``/api/ps``).

Model names are normalised the way Ollama resolves them, so ``llama3``, ``llama3:latest`` and
``registry.ollama.ai/library/llama3:latest`` are one model.

>>> normalize_model("Llama3")
'llama3:latest'
>>> normalize_model("registry.ollama.ai/library/qwen2.5:0.5b")
'qwen2.5:0.5b'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_DEFAULT_REGISTRY = "registry.ollama.ai/"
_DEFAULT_NAMESPACE = "library/"


# Names longer than this are normalised every time instead of remembered: a client chooses the
# name, and a thousand remembered megabyte-long names would be a gigabyte.
_REMEMBERED_LENGTH = 256


def normalize_model(name: str) -> str:
    """Ollama's full form of a model name: ``llama3.2`` is ``llama3.2:latest``."""
    if len(name) > _REMEMBERED_LENGTH:
        return _normalize(name)
    return _remembered(name)


def _normalize(name: str) -> str:
    name = name.strip().lower()
    name = name.removeprefix(_DEFAULT_REGISTRY).removeprefix(_DEFAULT_NAMESPACE)
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    return name


# Once per request on the hot path, and a fleet has few distinct names.
_remembered = functools.lru_cache(maxsize=1024)(_normalize)


@dataclass(slots=True)
class LoadedModel:
    """A model in a backend's memory: until when (epoch seconds), with which context length."""

    name: str
    expires_at: float | None
    context_length: int | None
    size_vram: int | None = None


def parse_tags(payload: Any) -> dict[str, str] | None:
    """``/api/tags`` -> {normalised name: digest}; None when the answer is not a model list
    (then what the backend holds stays unknown, rather than "nothing")."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        return None
    models: dict[str, str] = {}
    for entry in payload["models"]:
        if isinstance(entry, dict):
            name = entry.get("name") or entry.get("model")
            if isinstance(name, str) and name:
                models[normalize_model(name)] = str(entry.get("digest") or "")
    return models


def parse_ps(payload: Any) -> dict[str, LoadedModel]:
    """``/api/ps`` -> {normalised name: LoadedModel}."""
    loaded: dict[str, LoadedModel] = {}
    for entry in payload.get("models") or [] if isinstance(payload, dict) else []:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name") or entry.get("model")
        if not isinstance(name, str) or not name:
            continue
        context = entry.get("context_length")
        size_vram = entry.get("size_vram")
        key = normalize_model(name)
        loaded[key] = LoadedModel(
            key,
            parse_time(entry.get("expires_at")),
            context if isinstance(context, int) else None,
            size_vram if isinstance(size_vram, int) else None,
        )
    return loaded


def index_change(endpoint: str, fields: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Models a successful pull, create, copy or delete added to, or removed from, a backend."""

    def name(*keys: str) -> list[str]:
        for key in keys:
            value = fields.get(key)
            if isinstance(value, str) and value:
                return [normalize_model(value)]
        return []

    if endpoint in ("/api/pull", "/api/create"):
        return name("model", "name"), []
    if endpoint == "/api/copy":
        return name("destination"), []
    if endpoint == "/api/delete":
        return [], name("model", "name")
    return [], []


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DEFAULT_KEEP_ALIVE = 300.0


def keep_alive_seconds(value: Any) -> float:
    """Ollama's ``keep_alive``: seconds as a number, or a Go duration ("5m", "1h30m", "-1").
    Negative means forever (returned as -1); absent means Ollama's default of five minutes."""
    if value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, int | float):
        return -1.0 if value < 0 else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            return -1.0
        try:
            return float(text)
        except ValueError:
            pass
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    return DEFAULT_KEEP_ALIVE


def parse_time(value: Any) -> float | None:
    """Ollama's RFC 3339 times carry nanoseconds; Python's parser takes microseconds."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                text = f"{head}.{digits[:6]:0<6}{rest[i:]}"
                break
            digits += ch
        else:
            text = f"{head}.{digits[:6]:0<6}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
