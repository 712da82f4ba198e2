"""Python's cyclic garbage collector, set for a server whose heap is mostly what it loaded.

With Python's defaults (a young collection every 700 new container objects, a full one when
enough survive), a serving process ran 3 full collections per 1,000 no-op calls, each walking
the whole heap (about 150,000 objects, nearly all of them the SDK, pydantic's schemas, Celery
and kombu, loaded at start and never freed) for about 126 ms, during which no call moves: 0.38
ms of CPU per call, and the garbage collector 0.49 ms in all, a quarter of the server's CPU
(measured with `gc.callbacks` on the bench machine; bench/ANALYSIS.md). So once the server
serves, what it loaded is frozen (`gc.freeze`: the collector never walks it again) and young
collections run every `YOUNG_THRESHOLD` new objects: the collector then took 0.05 ms a call,
and a collection pauses the calls for a few milliseconds, not a tenth of a second.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

YOUNG_THRESHOLD = 50_000
"""New container objects between young collections: a few MB of cyclic garbage at most waits."""


def freeze_start_up_heap() -> None:
    """Collect once, freeze every object that survives, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    logger.info(
        "garbage collector: %d start-up objects frozen, young collections every %d",
        gc.get_freeze_count(),
        YOUNG_THRESHOLD,
    )
