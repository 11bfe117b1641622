"""Worker processes for the jobs: one rule for how they start, and a pool that fails instead of hanging.

``ProcessPoolExecutor`` raises ``BrokenProcessPool`` when a worker dies (killed, out of memory), where
``multiprocessing.Pool`` would wait forever. Forking is fastest (workers inherit what the parent loaded),
but forking a process that runs other threads can deadlock the child; so fork only a single-threaded
process (the CLI) and otherwise start workers from a clean forkserver, running ``initializer`` there.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes; ``initializer`` runs only where workers do not inherit the parent."""
    if threading.active_count() == 1:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=initializer, initargs=initargs)
