"""Many backends' answers folded into one, as one Ollama server would have answered.

The merging is pure (no I/O), so each rule is tested on its own:

- :func:`merge_tags`: ``/api/tags`` as the union of the fleet's models, one entry per model.
  When the backends hold different digests under one name, the entry gets
  ``"corral_digests": {backend: digest}``; Ollama clients ignore fields they do not know.
- :func:`merge_openai_models`: ``/v1/models`` as the union of ``data`` by id.
- :func:`merge_ps`: ``/api/ps`` with every loaded model, each labelled with its backend.
- :func:`lowest_version`: which ``/api/version`` answer speaks for the fleet.
- :class:`ProgressMerger`: one NDJSON progress stream out of several pulls or creates.

Reading several upstream bodies together as they arrive is :mod:`corral.http.fanin`.

Example::

    merged = merge_tags([("gpu1", gpu1_tags), ("gpu2", gpu2_tags)])
    merger = ProgressMerger(["gpu1", "gpu2"])
    out = merger.feed(0, b'{"status":"pulling manifest"}\\n')   # emitted once
    out += merger.finish(0, None)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from corral.backends.models import normalize_model, parse_time

if TYPE_CHECKING:
    pass

log = logging.getLogger("corral.fleet")

DIGESTS_FIELD = "corral_digests"
BACKEND_FIELD = "corral_backend"

# (backend name, decoded JSON answer)
Answers = Sequence[tuple[str, Any]]


def _entries(payload: Any, field: str) -> list[dict[str, Any]]:
    items = payload.get(field) if isinstance(payload, dict) else None
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def _newest_first(field: str, name_field: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Sort key: ``field`` (an RFC 3339 time or epoch seconds) descending, entries without a
    readable time last, ties by name, so the order never depends on which backend was faster."""

    def key(entry: dict[str, Any]) -> tuple[Any, ...]:
        value = entry.get(field)
        when = float(value) if isinstance(value, int | float) else parse_time(value)
        return (when is None, -(when or 0.0), str(entry.get(name_field) or ""))

    return key


def merge_tags(answers: Answers) -> dict[str, Any]:
    """The union of several ``/api/tags`` answers, newest first as Ollama lists them.

    The first backend to list a model gives the entry its fields.

    >>> a = {"models": [{"name": "x:latest", "digest": "d1"}]}
    >>> b = {"models": [{"name": "x", "digest": "d2"}]}
    >>> merge_tags([("gpu1", a), ("gpu2", b)])["models"][0]["corral_digests"]
    {'gpu1': 'd1', 'gpu2': 'd2'}
    """
    merged: dict[str, dict[str, Any]] = {}
    digests: dict[str, dict[str, str]] = {}
    for backend, payload in answers:
        for entry in _entries(payload, "models"):
            name = entry.get("name") or entry.get("model")
            if not isinstance(name, str) or not name:
                continue
            key = normalize_model(name)
            merged.setdefault(key, dict(entry))
            digests.setdefault(key, {})[backend] = str(entry.get("digest") or "")
    for key, entry in merged.items():
        if len(set(digests[key].values())) > 1:
            entry[DIGESTS_FIELD] = digests[key]
    return {"models": sorted(merged.values(), key=_newest_first("modified_at", "name"))}


def merge_openai_models(answers: Answers) -> dict[str, Any]:
    """The union of several ``/v1/models`` answers by model id, newest first."""
    merged: dict[str, dict[str, Any]] = {}
    for _, payload in answers:
        for entry in _entries(payload, "data"):
            model_id = entry.get("id")
            if isinstance(model_id, str) and model_id:
                merged.setdefault(normalize_model(model_id), entry)
    return {"object": "list", "data": sorted(merged.values(), key=_newest_first("created", "id"))}


def merge_ps(answers: Answers, *, label: bool) -> dict[str, Any]:
    """Every loaded model of several ``/api/ps`` answers, longest to stay loaded first (Ollama's
    order); with ``label`` each entry names its backend in ``corral_backend``."""
    models: list[dict[str, Any]] = []
    for backend, payload in answers:
        for entry in _entries(payload, "models"):
            models.append({**entry, BACKEND_FIELD: backend} if label else entry)
    return {"models": sorted(models, key=_newest_first("expires_at", "name"))}


_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(.*)", re.DOTALL)


def version_key(version: str | None) -> tuple[int, tuple[int, ...], int, str]:
    """Orders versions: numeric dot parts compared as numbers (``0.5.1 < 0.12.0``), a suffix
    sorts below the plain release (``0.12.0-rc1 < 0.12.0``), unreadable versions after all.

    >>> sorted(["0.12.0", "bogus", "0.12.0-rc1", "0.5.1"], key=version_key)
    ['0.5.1', '0.12.0-rc1', '0.12.0', 'bogus']
    """
    match = _VERSION.fullmatch(version.strip()) if isinstance(version, str) else None
    if match is None:
        return (1, (), 0, str(version))
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()  # 0.12 and 0.12.0 are one version
    suffix = match.group(2)
    return (0, tuple(numbers), 0 if suffix else 1, suffix)


def lowest_version(versions: Sequence[str | None]) -> int:
    """The index of the lowest version: a fleet can do what its oldest server can do."""
    if not versions:
        raise ValueError("no versions to compare")
    return min(range(len(versions)), key=lambda i: version_key(versions[i]))


def results_header(results: Sequence[tuple[str, int]]) -> bytes:
    """``X-Corral-Results``: each target's status, in target order.

    >>> results_header([("gpu1", 200), ("gpu2", 404)])
    b'gpu1=200, gpu2=404'
    """
    return ", ".join(f"{name}={status}" for name, status in results).encode("latin-1")


def error_message(status: int, body: bytes) -> str:
    """What a failed answer says: Ollama's ``{"error": ...}``, else its text, else its status."""
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        error = payload["error"]
        if isinstance(error, dict):  # OpenAI's shape
            error = error.get("message", error)
        return str(error)
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text else f"answered {status}"


class LineSplitter:
    """NDJSON lines out of chunks that may cut a line anywhere.

    >>> s = LineSplitter()
    >>> s.feed(b'{"a":1}\\n{"b"'), s.feed(b':2}\\n'), s.flush()
    ([b'{"a":1}'], [b'{"b":2}'], [])
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._parts.append(chunk)
            return []
        *lines, rest = chunk.split(b"\n")
        if self._parts:
            lines[0] = b"".join((*self._parts, lines[0]))
        self._parts = [rest] if rest else []
        return [line for line in lines if line.strip()]

    def flush(self) -> list[bytes]:
        """The last line, when the stream ended without a newline."""
        rest, self._parts = b"".join(self._parts), []
        return [rest] if rest.strip() else []


class _Layer:
    """One digest's progress on each target."""

    __slots__ = ("completed", "shown_completed", "shown_total", "totals")

    def __init__(self) -> None:
        self.totals: dict[int, int] = {}
        self.completed: dict[int, int] = {}
        self.shown_total = 0
        self.shown_completed = 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class ProgressMerger:
    """Folds the progress streams of one pull (or create) on several backends into one stream.

    - A line without a digest ("pulling manifest", "writing manifest", create's "using existing
      layer ...") is emitted once, the first time any target sends it.
    - A layer line (``digest``, ``total``, ``completed``) is emitted merged: ``completed`` summed
      over the targets, ``total`` summed too, with targets that have not reached the layer yet
      counted at the size the others reported (a digest names one blob, so its size is the same
      everywhere). Ollama's CLI fixes a bar's total when it first sees a digest, so a total that
      grew as slower targets joined would push the bar past 100%. Neither number ever goes down.
    - ``{"status":"success"}`` comes once, after every target ended with success; if any target
      failed (error line, error status, broken connection, stream ended early), the last line is
      ``{"error": "gpu1: message; gpu2: message"}`` instead, once every target has ended.

    Example::

        merger = ProgressMerger(["gpu1", "gpu2"])
        merger.feed(0, b'{"status":"pulling manifest"}\\n')   # b'{"status":"pulling manifest"}\\n'
        merger.feed(1, b'{"status":"pulling manifest"}\\n')   # b""
        merger.finish(0, None); merger.finish(1, "backend closed the connection")
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._names = list(names)
        count = len(self._names)
        self._splitters = [LineSplitter() for _ in range(count)]
        self._succeeded = [False] * count
        self._errors: list[str | None] = [None] * count
        self._ended = [False] * count
        self._seen: set[bytes] = set()
        self._layers: dict[str, _Layer] = {}
        self.done = count == 0

    def feed(self, index: int, chunk: bytes) -> bytes:
        """Merged output for one chunk of target ``index``'s body (often ``b""``)."""
        if self._ended[index]:
            return b""
        out = [self._line(index, line) for line in self._splitters[index].feed(chunk)]
        return b"".join(out)

    def finish(self, index: int, failure: str | None) -> bytes:
        """Target ``index`` ended, cleanly (``failure`` None) or not. The final line comes out
        once every target has ended."""
        if self._ended[index]:
            return b""
        out = [self._line(index, line) for line in self._splitters[index].flush()]
        if failure is not None and self._errors[index] is None:
            self._errors[index] = failure
        elif not self._succeeded[index] and self._errors[index] is None:
            self._errors[index] = "stream ended before success"
        self._ended[index] = True
        if all(self._ended):
            self.done = True
            out.append(self._final())
        return b"".join(out)

    @property
    def failures(self) -> list[str]:
        return [f"{n}: {e}" for n, e in zip(self._names, self._errors, strict=True) if e]

    def _final(self) -> bytes:
        failures = self.failures
        if failures:
            return orjson.dumps({"error": "; ".join(failures)}) + b"\n"
        return b'{"status":"success"}\n'

    def _line(self, index: int, line: bytes) -> bytes:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            return self._once(line.strip(), line.strip())
        if "error" in message:
            if self._errors[index] is None:
                self._errors[index] = str(message["error"])
            return b""
        if message.get("status") == "success" and "digest" not in message:
            self._succeeded[index] = True
            return b""
        digest = message.get("digest")
        if isinstance(digest, str) and ("total" in message or "completed" in message):
            return self._layer(index, digest, message)
        return self._once(orjson.dumps(message, option=orjson.OPT_SORT_KEYS), line.strip())

    def _once(self, key: bytes, line: bytes) -> bytes:
        if key in self._seen:
            return b""
        self._seen.add(key)
        return line + b"\n"

    def _layer(self, index: int, digest: str, message: dict[str, Any]) -> bytes:
        layer = self._layers.setdefault(digest, _Layer())
        layer.totals[index] = max(layer.totals.get(index, 0), _count(message.get("total")))
        done = _count(message.get("completed"))
        layer.completed[index] = max(layer.completed.get(index, 0), done)
        waiting = sum(
            1 for i, ended in enumerate(self._ended) if not ended and i not in layer.totals
        )
        completed = max(layer.shown_completed, sum(layer.completed.values()))
        projected = sum(layer.totals.values()) + max(layer.totals.values()) * waiting
        total = max(layer.shown_total, projected, completed)
        layer.shown_total, layer.shown_completed = total, completed
        merged = dict(message)
        # Ollama omits zero counts (Go's omitempty); so do we.
        for field, value in (("total", total), ("completed", completed)):
            if value:
                merged[field] = value
            else:
                merged.pop(field, None)
        return orjson.dumps(merged) + b"\n"
