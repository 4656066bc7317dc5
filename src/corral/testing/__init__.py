"""Test doubles shipped with corral: above all the Ollama simulator.

Example::

    from corral.testing import Simulator

    sim = Simulator(["llama3.2"], tokens_per_second=500)
    await sim.start()
    ...  # point a client or corral at sim.url
    await sim.aclose()
"""

from __future__ import annotations

from corral.testing.faults import ConnectionDrop, Faults
from corral.testing.simulator import DEFAULT_MODELS, Simulator
from corral.testing.stats import GenerationRecord, Outcome, SimStats

__all__ = [
    "DEFAULT_MODELS",
    "ConnectionDrop",
    "Faults",
    "GenerationRecord",
    "Outcome",
    "SimStats",
    "Simulator",
]
