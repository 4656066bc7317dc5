"""The simulator's model catalogue: names, digests, sizes, details, capabilities, blobs.

A model's profile (family, parameter count, context length, capabilities) comes from the first
known prefix of its name; a size tag such as ``:0.5b`` or ``:70b`` overrides the parameter count.
Digests are SHA-256 hex of the name and its pull generation, so they are stable across runs and
change only when a re-pull is told to change them.

Example::

    catalogue = ModelCatalogue(["llama3.2:latest", "nomic-embed-text"])
    info = catalogue.get("llama3.2")          # the ":latest" tag is implied
    info.digest                               # 64 hex characters, stable per name
    info.details()["family"]                  # "llama"
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

_SIZE_TAG = re.compile(r"^(?:.*-)?(\d+(?:\.\d+)?)([bm])(?:-|$)")
# Bytes per parameter for a quantization level; close enough to real file sizes.
_BYTES_PER_PARAM = {"Q4_0": 0.56, "Q4_K_M": 0.6, "Q8_0": 1.06, "F16": 2.0, "MXFP4": 0.62}
# Fixed "downloaded" date for the built-in models, so listings are the same on every run.
_CATALOGUE_EPOCH = 1_746_057_600.0  # 2025-05-01T00:00:00Z
DEFAULT_TEMPLATE = (
    "{{ if .System }}<|system|>{{ .System }}<|end|>{{ end }}"
    "{{ if .Prompt }}<|user|>{{ .Prompt }}<|end|>{{ end }}<|assistant|>{{ .Response }}<|end|>"
)


@dataclass(frozen=True, slots=True)
class Profile:
    """What a family of models is like."""

    family: str
    parameters: float
    quantization_level: str = "Q4_K_M"
    context_length: int = 8192
    embedding_length: int = 4096
    capabilities: tuple[str, ...] = ("completion",)
    families: tuple[str, ...] = ()


_GENERATE = ("completion", "tools")
_THINK = ("completion", "tools", "thinking")
_EMBED = ("embedding",)
_PROFILES: tuple[tuple[str, Profile], ...] = (
    (
        "llama3.2",
        Profile(
            "llama", 3.2e9, context_length=131072, embedding_length=3072, capabilities=_GENERATE
        ),
    ),
    ("llama3.1", Profile("llama", 8.0e9, context_length=131072, capabilities=_GENERATE)),
    ("llama", Profile("llama", 8.0e9)),
    (
        "qwen2.5",
        Profile(
            "qwen2", 7.6e9, context_length=32768, embedding_length=3584, capabilities=_GENERATE
        ),
    ),
    ("qwen3", Profile("qwen3", 8.2e9, context_length=40960, capabilities=_THINK)),
    ("deepseek-r1", Profile("qwen2", 7.6e9, context_length=131072, capabilities=_THINK)),
    ("gpt-oss", Profile("gptoss", 20.9e9, "MXFP4", 131072, 2880, _THINK)),
    ("mistral", Profile("llama", 7.2e9, "Q4_0", 32768, capabilities=_GENERATE)),
    (
        "gemma3",
        Profile(
            "gemma3",
            4.3e9,
            context_length=131072,
            embedding_length=2560,
            capabilities=("completion", "vision"),
        ),
    ),
    (
        "llava",
        Profile(
            "llama",
            7.2e9,
            "Q4_0",
            32768,
            capabilities=("completion", "vision"),
            families=("llama", "clip"),
        ),
    ),
    ("nomic-embed-text", Profile("nomic-bert", 137e6, "F16", 2048, 768, _EMBED)),
    ("mxbai-embed-large", Profile("bert", 334e6, "F16", 512, 1024, _EMBED)),
    ("all-minilm", Profile("bert", 23e6, "F16", 512, 384, _EMBED)),
)
_DEFAULT_PROFILE = Profile("llama", 7.0e9)
# Generative models embed too; a short vector keeps that cheap.
GENERATIVE_EMBED_DIM = 384


def canonical_name(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest``; a name with a tag is kept as it is."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def model_digest(name: str, generation: int = 0) -> str:
    return hashlib.sha256(f"corral-sim/{canonical_name(name)}#{generation}".encode()).hexdigest()


def profile_for(name: str) -> Profile:
    base, _, tag = canonical_name(name).rsplit("/", 1)[-1].partition(":")
    profile = next((p for prefix, p in _PROFILES if base.startswith(prefix)), _DEFAULT_PROFILE)
    match = _SIZE_TAG.match(tag.lower())
    if match:
        scale = 1e9 if match.group(2) == "b" else 1e6
        profile = replace(profile, parameters=float(match.group(1)) * scale)
    return profile


def parameter_size(parameters: float) -> str:
    return f"{parameters / 1e9:.1f}B" if parameters >= 1e9 else f"{parameters / 1e6:.2f}M"


@dataclass(slots=True)
class ModelInfo:
    """One installed model, as ``/api/tags`` and ``/api/show`` describe it."""

    name: str
    digest: str
    modified_at: float
    profile: Profile
    quantization_level: str
    parent_model: str = ""
    system: str = ""
    template: str = DEFAULT_TEMPLATE
    parameters: dict[str, Any] = field(default_factory=dict)
    license: str = ""

    @property
    def size(self) -> int:
        per_param = _BYTES_PER_PARAM.get(self.quantization_level, 0.6)
        return int(self.profile.parameters * per_param) + int(self.digest[:5], 16)

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.profile.capabilities

    @property
    def embed_dim(self) -> int:
        return (
            self.profile.embedding_length
            if "embedding" in self.capabilities
            else (GENERATIVE_EMBED_DIM)
        )

    def details(self) -> dict[str, Any]:
        profile = self.profile
        return {
            "parent_model": self.parent_model,
            "format": "gguf",
            "family": profile.family,
            "families": list(profile.families or (profile.family,)),
            "parameter_size": parameter_size(profile.parameters),
            "quantization_level": self.quantization_level,
        }


class ModelCatalogue:
    """The installed models and pushed blobs of one simulated server."""

    def __init__(self, names: Iterable[str]) -> None:
        self._models: dict[str, ModelInfo] = {}
        # Every spelling a client may use ("x" and "x:latest"), so lookups are one dict probe.
        self._aliases: dict[str, ModelInfo] = {}
        self._pulls: dict[str, int] = {}
        self.blobs: dict[str, int] = {}
        for name in names:
            stamp = _CATALOGUE_EPOCH - zlib.crc32(name.encode()) % (90 * 86400)
            self.add(name, now=stamp)

    def get(self, name: str) -> ModelInfo | None:
        info = self._aliases.get(name)
        if info is None and name:
            info = self._models.get(canonical_name(name))
        return info

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def models(self) -> list[ModelInfo]:
        """Newest first, as ``/api/tags`` lists them."""
        return sorted(self._models.values(), key=lambda m: (-m.modified_at, m.name))

    def add(self, name: str, *, now: float, generation: int = 0, **fields: Any) -> ModelInfo:
        canonical = canonical_name(name)
        profile = fields.pop("profile", None) or profile_for(canonical)
        quant = fields.pop("quantization_level", None) or profile.quantization_level
        digest = fields.pop("digest", None) or model_digest(canonical, generation)
        info = ModelInfo(canonical, digest, now, profile, quant, **fields)
        self._install(info)
        return info

    def planned_pull(self, name: str, *, now: float, new_digest: bool) -> ModelInfo:
        """What pulling ``name`` would install, without installing it."""
        canonical = canonical_name(name)
        existing = self._models.get(canonical)
        if existing is not None and not new_digest:
            return existing
        profile = profile_for(canonical)
        digest = model_digest(canonical, self._pull_generation(canonical, new_digest))
        return ModelInfo(canonical, digest, now, profile, profile.quantization_level)

    def pull(self, name: str, *, now: float, new_digest: bool) -> ModelInfo:
        """Install (or keep) a pulled model; ``new_digest`` makes a re-pull change its digest."""
        info = self.planned_pull(name, now=now, new_digest=new_digest)
        if self._models.get(info.name) is not info:
            self._pulls[info.name] = self._pull_generation(info.name, new_digest)
            self._install(info)
        return info

    def _pull_generation(self, canonical: str, new_digest: bool) -> int:
        if canonical in self._models:
            current = self._pulls.get(canonical, 0)
            return current + 1 if new_digest else current
        return self._pulls.get(canonical, -1) + 1

    def copy(self, source: str, destination: str, *, now: float) -> ModelInfo | None:
        info = self.get(source)
        if info is None:
            return None
        clone = replace(info, name=canonical_name(destination), modified_at=now)
        self._install(clone)
        return clone

    def delete(self, name: str) -> ModelInfo | None:
        info = self.get(name)
        if info is None:
            return None
        del self._models[info.name]
        self._aliases = {k: v for k, v in self._aliases.items() if v is not info}
        return info

    def _install(self, info: ModelInfo) -> None:
        previous = self._models.get(info.name)
        if previous is not None:
            self._aliases = {k: v for k, v in self._aliases.items() if v is not previous}
        self._models[info.name] = info
        self._aliases[info.name] = info
        if info.name.endswith(":latest"):
            self._aliases[info.name.removesuffix(":latest")] = info
