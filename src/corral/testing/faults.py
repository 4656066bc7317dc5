"""Switchable misbehaviour of the simulated Ollama, for failover, health and streaming tests.

All switches are off by default. Set them from Python (``sim.faults.busy = True``) or, for a
simulator in another process, over HTTP: ``POST /_sim/faults`` with a JSON object of switches,
``DELETE /_sim/faults`` to reset. Faults apply to the model endpoints (generate, chat, embed and
their ``/v1`` twins) unless ``scope`` is ``"all"``; ``times`` limits them to the next N requests.

Example::

    sim.faults.update({"busy": True, "times": 1})  # one 503 for the next model request
    sim.faults.drop_after_chunks = 3                # streams are cut after three chunks
    sim.faults.reset()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from corral.testing.payload import BadRequest

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
MODEL_ERROR_MESSAGE = "an error was encountered while running the model"
CRASH_MESSAGE = "llama runner process has terminated: exit status 2"
# Looks like JSON for a few bytes, so a client must really parse to notice.
BAD_JSON_BODY = b'{"model": "sim", "created_at": <<not json>>\n'

INFERENCE_PATHS = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
    }
)


class ConnectionDrop(ConnectionResetError):
    """Raised from a response to cut the connection with no proper end.

    The HTTP server treats a ``ConnectionError`` escaping a handler or a stream as "close this
    connection now": a chunked body then lacks its terminating chunk, and a request that had no
    answer yet gets none, which is what a crashed Ollama looks like to its client.
    """


@dataclass(frozen=True, slots=True)
class StreamFaults:
    """The faults one generation runs with, captured when its request arrived."""

    first_token_delay: float | None = None
    tokens_per_second: float | None = None
    drop_after_chunks: int | None = None
    error_after_chunks: int | None = None

    @property
    def cuts_stream(self) -> bool:
        return self.drop_after_chunks is not None or self.error_after_chunks is not None


NO_STREAM_FAULTS = StreamFaults()


@dataclass(slots=True)
class Faults:
    """The fault switches of one simulator.

    Example::

        faults = Faults()
        faults.error_after_chunks = 2    # streams send two chunks, then {"error": ...}
        faults.update({"scope": "all", "status_500": True})   # every path answers 500
        faults.reset()
    """

    hang: bool = False
    busy: bool = False
    status_500: bool = False
    bad_json: bool = False
    first_token_delay: float | None = None
    tokens_per_second: float | None = None
    drop_after_chunks: int | None = None
    error_after_chunks: int | None = None
    scope: Literal["inference", "all"] = "inference"
    times: int | None = None

    @property
    def active(self) -> bool:
        return (
            self.hang
            or self.busy
            or self.status_500
            or self.bad_json
            or self.first_token_delay is not None
            or self.tokens_per_second is not None
            or self.drop_after_chunks is not None
            or self.error_after_chunks is not None
        )

    def applies_to(self, path: str) -> bool:
        return self.scope == "all" or path in INFERENCE_PATHS

    def consume(self) -> None:
        """One request met the faults; with ``times`` set, they switch off after the last."""
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.reset()

    def for_stream(self) -> StreamFaults:
        return StreamFaults(
            self.first_token_delay,
            self.tokens_per_second,
            self.drop_after_chunks,
            self.error_after_chunks,
        )

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)

    def snapshot(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, values: Mapping[str, object]) -> None:
        """Set switches from JSON-like values, all or none; a bad value names its field."""
        checked: dict[str, object] = {}
        for name, value in values.items():
            kind = _KINDS.get(name)
            if kind is None:
                raise BadRequest(f"unknown fault {name!r}; known: {', '.join(sorted(_KINDS))}")
            checked[name] = _check(name, kind, value)
        for name, value in checked.items():
            setattr(self, name, value)


_KINDS = {
    "hang": "bool",
    "busy": "bool",
    "status_500": "bool",
    "bad_json": "bool",
    "first_token_delay": "seconds",
    "tokens_per_second": "rate",
    "drop_after_chunks": "count",
    "error_after_chunks": "count",
    "scope": "scope",
    "times": "count",
}


def _check(name: str, kind: str, value: object) -> object:
    if kind == "bool":
        if not isinstance(value, bool):
            raise BadRequest(f"fault {name!r} must be true or false")
        return value
    if kind == "scope":
        if value not in ("inference", "all"):
            raise BadRequest(f'fault {name!r} must be "inference" or "all"')
        return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"fault {name!r} must be a number or null")
    if kind == "count":
        if not float(value).is_integer() or value < 0:
            raise BadRequest(f"fault {name!r} must be a whole number >= 0")
        return int(value)
    if value < 0 or (kind == "rate" and value == 0):
        raise BadRequest(f"fault {name!r} must be {'> 0' if kind == 'rate' else '>= 0'}")
    return float(value)
