"""The garbage collector's thresholds during a replay."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def young_collections_rarer() -> Iterator[None]:
    """The collector's thresholds raised for a replay (restored after): it makes many
    short-lived tracked objects (step tuples, lists; tens of millions in a cluster run), and
    at the default (a young collection every 700 net allocations, older ones every 10) the
    collector's walks took ~10% of a 250,000-request cluster run and ~8 ms of a one-engine
    replay of the Azure sample; at 50,000 ~1% and ~0. Only objects in reference cycles wait
    longer to be freed (reference counts free the rest at once); outputs do not change."""
    old = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
