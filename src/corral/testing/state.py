"""The live parts of one simulator, in one typed container handed to every route.

Example::

    state = SimState(ModelCatalogue(["llama3.2"]))
    state.tokens_per_second = 1000.0   # takes effect for the next generation
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.testing.faults import Faults
from corral.testing.models import ModelCatalogue
from corral.testing.residency import LoadedModels
from corral.testing.stats import SimStats
from corral.testing.timestamps import WallClock

DEFAULT_RESPONSE_TOKENS = 24


@dataclass(slots=True)
class SimState:
    catalogue: ModelCatalogue
    tokens_per_second: float = 200.0
    first_token_delay: float = 0.02
    load_delay: float = 0.0
    response_tokens: int = DEFAULT_RESPONSE_TOKENS
    exact_lengths: bool = False
    """A requested limit sets an answer's length exactly, instead of only capping it."""
    version: str = "0.12.6"
    name: str = "sim"
    repull_changes_digest: bool = False
    loaded: LoadedModels = field(default_factory=LoadedModels)
    faults: Faults = field(default_factory=Faults)
    stats: SimStats = field(default_factory=SimStats)
    clock: WallClock = field(default_factory=WallClock)
