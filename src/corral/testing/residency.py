"""Which models a simulated server holds in memory, and until when (what ``/api/ps`` shows).

A model is loaded by its first request, stays while requests use it, and then for its
``keep_alive`` (default 5 minutes; ``0`` unloads at once, a negative value keeps it forever).
A request asking for another context size (``options.num_ctx``) reloads it, as Ollama does.
All methods take the event loop's time explicitly, so the rules are tested without waiting.

Example::

    loaded = LoadedModels()
    entry = loaded.acquire(info, now=10.0, keep_alive=None, load_delay=2.0, num_ctx=None)
    entry.ready_at          # 12.0: the request waits for the load
    loaded.release(entry, now=15.0)
    loaded.running(now=314.0)   # still there; gone at 315.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from corral.testing.models import ModelInfo
from corral.testing.payload import BadRequest

DEFAULT_KEEP_ALIVE = 300.0
DEFAULT_NUM_CTX = 4096
FOREVER = math.inf

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: object) -> float | None:
    """``keep_alive`` in seconds; ``None`` when absent (use the default), ``inf`` for forever.

    Ollama takes a number of seconds or a Go duration string (``"5m"``, ``"1h30m"``, ``"0"``);
    any negative value means "keep loaded forever".
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest(f"json: cannot unmarshal bool into keep_alive: {value}")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else float(value)
    if not isinstance(value, str):
        raise BadRequest("json: keep_alive must be a number or a duration string")
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        seconds = float(body)  # a bare number is seconds, as in the JSON number form
    except ValueError:
        seconds = _go_duration(body, value)
    seconds *= sign
    return FOREVER if seconds < 0 else seconds


def _go_duration(body: str, original: str) -> float:
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise BadRequest(f'time: invalid duration "{original}"')
    return total


@dataclass(slots=True)
class LoadedModel:
    """One model in memory. Times are event-loop seconds."""

    model: ModelInfo
    ready_at: float
    keep_alive: float
    context_length: int
    expires_at: float = FOREVER
    in_use: int = 0

    def expires(self, now: float) -> float:
        """When it will be unloaded if nothing else uses it."""
        return now + self.keep_alive if self.in_use else self.expires_at


class LoadedModels:
    """The loaded-model table of one simulated server."""

    def __init__(
        self, default_keep_alive: float = DEFAULT_KEEP_ALIVE, default_num_ctx: int = DEFAULT_NUM_CTX
    ) -> None:
        self.default_keep_alive = default_keep_alive
        self.default_num_ctx = default_num_ctx
        self._loaded: dict[str, LoadedModel] = {}

    def acquire(
        self,
        model: ModelInfo,
        now: float,
        keep_alive: float | None,
        load_delay: float,
        num_ctx: int | None,
    ) -> LoadedModel:
        """Mark ``model`` in use, loading it first when needed (``ready_at`` says until when)."""
        context = min(num_ctx or self.default_num_ctx, model.profile.context_length)
        entry = self._loaded.get(model.name)
        if entry is None or entry.context_length != context or self._expired(entry, now):
            entry = LoadedModel(model, now + load_delay, self.default_keep_alive, context)
            self._loaded[model.name] = entry
        entry.keep_alive = self.default_keep_alive if keep_alive is None else keep_alive
        entry.in_use += 1
        return entry

    def release(self, entry: LoadedModel, now: float) -> None:
        """A request finished with the model: its keep-alive clock starts now."""
        entry.in_use = max(0, entry.in_use - 1)
        if entry.in_use:
            return
        if entry.keep_alive <= 0:
            if self._loaded.get(entry.model.name) is entry:
                del self._loaded[entry.model.name]
            return
        entry.expires_at = now + entry.keep_alive

    def unload(self, name: str) -> bool:
        return self._loaded.pop(name, None) is not None

    def get(self, name: str, now: float) -> LoadedModel | None:
        entry = self._loaded.get(name)
        return entry if entry is not None and not self._expired(entry, now) else None

    def running(self, now: float) -> list[LoadedModel]:
        """Loaded models, soonest to expire last; expired ones are dropped on the way."""
        for name in [n for n, e in self._loaded.items() if self._expired(e, now)]:
            del self._loaded[name]
        return sorted(self._loaded.values(), key=lambda e: -e.expires(now))

    def clear(self) -> None:
        self._loaded.clear()

    @staticmethod
    def _expired(entry: LoadedModel, now: float) -> bool:
        return entry.in_use == 0 and entry.expires_at <= now
