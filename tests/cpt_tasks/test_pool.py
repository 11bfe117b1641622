"""The jobs' process pools: a forkserver worker sees the parent's environment as it is when the pool starts,
not as it was when the forkserver started (object-storage credentials set later must reach the workers)."""

import os
import threading

from cpt_tasks.pool import process_pool


def read_env(name: str) -> str | None:
    return os.environ.get(name)


def test_forkserver_workers_see_the_environment_set_after_the_forkserver_started(monkeypatch):
    idle = threading.Event()
    thread = threading.Thread(target=idle.wait)  # a second thread: the pool uses the forkserver, not fork
    thread.start()
    try:
        monkeypatch.delenv("CPT_POOL_TEST", raising=False)
        with process_pool(1) as pool:  # starts the forkserver (if none runs yet) without the variable
            assert pool.submit(read_env, "CPT_POOL_TEST").result() is None
        monkeypatch.setenv("CPT_POOL_TEST", "set later")
        with process_pool(1) as pool:
            assert pool.submit(read_env, "CPT_POOL_TEST").result() == "set later"
    finally:
        idle.set()
        thread.join()
