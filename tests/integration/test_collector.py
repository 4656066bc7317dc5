"""Once started, corral keeps the cycle collector from pausing every stream often."""

from __future__ import annotations

import gc

from corral.app import FULL_COLLECTION_EVERY, MIDDLE_COLLECTION_EVERY
from tests.harness import running_corral
from tests.integration.conftest import StartSim


async def test_a_started_corral_keeps_collections_short_and_full_ones_rare(start_sim: StartSim) -> None:
    sim = await start_sim()
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # the interpreter's defaults
        async with running_corral([sim.url]):
            # Short pauses of the middle generation, full collections as rare as 10 x 100.
            assert gc.get_threshold() == (700, MIDDLE_COLLECTION_EVERY, FULL_COLLECTION_EVERY)
            assert MIDDLE_COLLECTION_EVERY * FULL_COLLECTION_EVERY >= 1000
            assert gc.get_freeze_count() > 0  # what start-up built is out of the collector's way
    finally:
        gc.set_threshold(*thresholds)
