"""A guard around streaming's shared-memory prefix: two datasets created at the same moment by two independent jobs
on one host (the local runner and the tests run trainings and evaluations side by side; a pod has its own
/dev/shm) can pick the same free prefix, and the second one's ``SharedMemory(create=True)`` fails with
``FileExistsError`` (streaming 0.12 checks for a free name, then creates it). In a single-process world the
guard takes the next free prefix and tries again; with several ranks it changes nothing (their barriers inside
``get_shm_prefix`` must stay in step), and a pod's private /dev/shm has no such race.
"""

from __future__ import annotations

import random
import time

TRIES = 5


def guard_shm_prefix() -> None:
    """Make ``StreamingDataset`` retry its prefix registration on ``FileExistsError`` (single process only)."""
    import streaming.base.dataset as dataset

    original = dataset.get_shm_prefix
    if getattr(original, "_cpt_guarded", False):
        return

    def get_shm_prefix(streams_local, streams_remote, world, *args, **kwargs):
        for attempt in range(TRIES):
            try:
                return original(streams_local, streams_remote, world, *args, **kwargs)
            except FileExistsError:
                if world.num_ranks > 1 or attempt == TRIES - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.5))  # the other job's name is registered now: the next is free
        raise AssertionError("unreachable")

    get_shm_prefix._cpt_guarded = True
    dataset.get_shm_prefix = get_shm_prefix
