"""Once started, corral keeps the cycle collector from pausing every stream often."""

from __future__ import annotations

import gc

from corral.app import FULL_COLLECTION_EVERY
from tests.harness import running_corral
from tests.integration.conftest import StartSim


async def test_a_started_corral_makes_full_collections_rare(start_sim: StartSim) -> None:
    sim = await start_sim()
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # the interpreter's defaults
        async with running_corral([sim.url]):
            assert gc.get_threshold() == (700, 10, FULL_COLLECTION_EVERY)
            assert gc.get_freeze_count() > 0  # what start-up built is out of the collector's way
    finally:
        gc.set_threshold(*thresholds)
