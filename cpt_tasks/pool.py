"""Worker processes for the jobs: one rule for how they start, and a pool that fails instead of hanging.

``ProcessPoolExecutor`` raises ``BrokenProcessPool`` when a worker dies (killed, out of memory), where
``multiprocessing.Pool`` would wait forever. Forking is fastest (workers inherit what the parent loaded),
but forking a process that runs other threads can deadlock the child; so fork only a single-threaded
process (the CLI) and otherwise start workers from a clean forkserver, running ``initializer`` there. A
forkserver outlives the pool that started it and its workers inherit *its* environment, so each forkserver worker
first takes the parent's environment as it is now (credentials and endpoints set since, e.g. ``S3_ENDPOINT_URL``).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def forks() -> bool:
    """Whether :func:`process_pool` forks its workers now (they inherit the parent's memory)."""
    return threading.active_count() == 1


def process_pool(workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes; ``initializer`` runs only where workers do not inherit the parent."""
    if forks():
        gc.freeze()  # what the parent holds stays shared, and the workers' collections never walk it
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_start_worker, initargs=(dict(os.environ), initializer, initargs))


def _start_worker(environ: dict[str, str], initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """A forkserver worker's start: the parent's environment, then ``initializer``."""
    os.environ.clear()
    os.environ.update(environ)
    if initializer is not None:
        initializer(*initargs)
