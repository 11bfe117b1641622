"""The guard around streaming's shared-memory prefix race (cpt_tasks.runs.shm_prefix)."""

from types import SimpleNamespace

import pytest
import streaming.base.dataset as dataset

from cpt_tasks.runs import shm_prefix


def test_a_taken_prefix_is_retried_in_one_process_and_left_alone_with_several_ranks(monkeypatch):
    calls, races = [], [1]

    def racy(streams_local, streams_remote, world, retry=100):
        calls.append(world.num_ranks)
        if races[0]:  # another job took the name between streaming's check and its create
            races[0] -= 1
            raise FileExistsError("/000001_locals")
        return 1, "shm"

    monkeypatch.setattr(dataset, "get_shm_prefix", racy)
    monkeypatch.setattr(shm_prefix.time, "sleep", lambda seconds: None)
    shm_prefix.guard_shm_prefix()
    shm_prefix.guard_shm_prefix()  # idempotent: one wrapper
    assert dataset.get_shm_prefix(["/l"], [None], SimpleNamespace(num_ranks=1)) == (1, "shm") and calls == [1, 1]
    races[0] = 1
    with pytest.raises(FileExistsError):  # several ranks: their barriers must stay in step, no retry here
        dataset.get_shm_prefix(["/l"], [None], SimpleNamespace(num_ranks=2))
    assert calls == [1, 1, 2]


def test_a_prefix_that_stays_taken_still_fails(monkeypatch):
    def always(*args, **kwargs):
        raise FileExistsError("/000001_locals")

    monkeypatch.setattr(dataset, "get_shm_prefix", always)
    monkeypatch.setattr(shm_prefix.time, "sleep", lambda seconds: None)
    shm_prefix.guard_shm_prefix()
    with pytest.raises(FileExistsError):
        dataset.get_shm_prefix(["/l"], [None], SimpleNamespace(num_ranks=1))
