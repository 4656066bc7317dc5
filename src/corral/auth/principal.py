"""Who a request acts as, once its key is verified: :class:`Principal`.

>>> p = Principal.for_models(1, "ci", ["llama3", "qwen*"])
>>> p.may_use("llama3:latest"), p.may_use("qwen2.5:0.5b"), p.may_use("mistral")
(True, True, False)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from corral.backends.models import normalize_model


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified key: its id (``None`` for keys declared in settings), name, allowed models
    (``None``: every model) and limits, for the stages after authentication."""

    key_id: int | None
    name: str
    models: frozenset[str] | None = None
    model_patterns: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    # The key in metrics and logs: its id, or its name for keys declared in settings. Made
    # once here rather than per request.
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            label = self.name if self.key_id is None else str(self.key_id)
            object.__setattr__(self, "label", label)

    @classmethod
    def for_models(
        cls,
        key_id: int | None,
        name: str,
        models: Iterable[str] | None,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrency: int | None = None,
    ) -> Principal:
        """Split ``models`` into exact names (normalised as Ollama resolves them) and
        ``*``/``?`` patterns (matched against normalised names)."""
        if models is None:
            return cls(key_id, name, None, (), rpm, tpm, max_concurrency)
        exact: set[str] = set()
        patterns: list[str] = []
        for model in models:
            if any(c in model for c in "*?["):
                patterns.append(model.strip().lower())
            else:
                exact.add(normalize_model(model))
        return cls(key_id, name, frozenset(exact), tuple(patterns), rpm, tpm, max_concurrency)

    def may_use(self, model: str) -> bool:
        if self.models is None:
            return True
        name = normalize_model(model)
        return name in self.models or any(fnmatchcase(name, p) for p in self.model_patterns)
