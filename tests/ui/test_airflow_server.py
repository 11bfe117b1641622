"""The server fixture's stop: it ends the whole process group and descendants that left it, and says if
anything survived; the watchdog ends the group when the test process dies without stopping it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from .airflow_server import WATCHDOG, AirflowServer

pytestmark = pytest.mark.ui
# A parent with a child in its group and a grandchild that left for its own session, all ignoring SIGTERM.
TREE = "trap '' TERM; sleep 300 & setsid sh -c \"trap '' TERM; sleep 300\" & wait"


@pytest.fixture
def tree(tmp_path):
    """The process tree under a server object; whatever a failing test leaves is killed afterwards."""
    server = AirflowServer(env={"AIRFLOW_HOME": str(tmp_path)})
    server.proc = subprocess.Popen(["sh", "-c", TREE], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(psutil.Process(server.proc.pid).children(recursive=True)) < 3:
        assert time.monotonic() < deadline, "the process tree did not start"
        time.sleep(0.05)
    server.remember_descendants()
    yield server
    for proc in server.seen.values():
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def test_stop_ends_group_and_escaped_descendants(tree):
    server = tree
    seen = list(server.seen.values())
    assert len(seen) >= 4
    assert any(os.getsid(p.pid) != server.proc.pid for p in seen), "no process left the session"
    assert server.stop(grace=1) == []
    assert not [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_alive_reports_what_still_runs(tree):
    assert len(tree.alive()) >= 4
    assert tree.stop(grace=1) == []
    assert tree.alive() == []


def test_watchdog_ends_group_when_owner_dies(tmp_path):
    group = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    owner = subprocess.Popen(["sleep", "300"])
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(owner.pid), str(group.pid)])
    try:
        assert group.poll() is None
        owner.kill()
        owner.wait()
        watchdog.wait(timeout=10)
        assert group.wait(timeout=5) == -9
    finally:
        for proc in (group, owner, watchdog):
            proc.kill()
