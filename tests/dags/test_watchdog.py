"""The watchdog of ``make airflow``'s supervisor and the UI tests' server: when its owner is SIGKILLed it ends
every guarded session (children that left its process group included), the descendants reported to it (a
grandchild that left for a session of its own), and not a process that merely reuses a reported pid; after
``release()`` it ends nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from cpt_local.supervisor import is_alive
from cpt_local.watchdog import targets

# A session: its leader, a child in the leader's group, one in a group of its own, and an orphan that left for
# a session of its own (``setsid -f``: handed to the owner, a subreaper as the supervisor is); all ignore SIGTERM.
TREE = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(["sleep", "300"])
subprocess.Popen(["sleep", "300"], process_group=0)
subprocess.Popen(["setsid", "-f", "sleep", "300"]).wait()
time.sleep(300)
"""
# The owner: a watchdog guarding the session and reporting every descendant (as the supervisor does); prints the
# pids, then releases the watchdog on "release" or waits to be killed.
OWNER = """
import json, subprocess, sys, time, psutil
from cpt_local.supervisor import become_subreaper
from cpt_local.watchdog import Watchdog
become_subreaper()
dog = Watchdog()
tree = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True)
dog.guard(tree.pid, session=True)
def settled():
    # the tree once it has settled: its leader and three sleeps (setsid's own process, which forks and exits,
    # and a child not yet exec'd are passing states, never recorded)
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid != dog.pid and p.status() != psutil.STATUS_ZOMBIE:
                found.append((p, p.name()))
        except psutil.NoSuchProcess:
            pass
    return [p for p, _ in found] if len(found) == 4 and sum(n == "sleep" for _, n in found) == 3 else None
deadline = time.monotonic() + 20
while (kids := settled()) is None:
    assert time.monotonic() < deadline, psutil.Process().children(recursive=True)
    time.sleep(0.05)
for kid in kids:
    dog.guard(kid.pid)
print(json.dumps({"dog": dog.pid, "tree": [kid.pid for kid in kids]}), flush=True)
if sys.stdin.readline().strip() == "release":
    dog.release()
    print("released", flush=True)
time.sleep(300)
"""


@pytest.fixture
def owner():
    """The owner process and its pids; everything it started is killed afterwards, whatever the test did."""
    proc = subprocess.Popen([sys.executable, "-c", OWNER, TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids = json.loads(proc.stdout.readline())
    procs = [psutil.Process(pid) for pid in [pids["dog"], *pids["tree"]]]
    yield proc, procs
    proc.kill()
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_alive(p) for p in procs):
        time.sleep(0.05)
    return [p for p in procs if is_alive(p)]


def test_sigkilled_owner_takes_its_tree_along(owner):
    proc, procs = owner
    dog, tree = procs[0], procs[1:]
    assert len({os.getsid(p.pid) for p in tree}) == 2, "no process left the session"
    assert len({os.getpgid(p.pid) for p in tree}) == 3, "no process left the leader's group"
    assert sum(p.ppid() == proc.pid for p in tree) == 2, "no orphan was handed to the owner"
    proc.kill()
    proc.wait()
    assert wait_gone(tree, 10) == [], "processes of the owner's tree outlived it"
    assert wait_gone([dog], 10) == [], "the watchdog did not exit"


def test_released_watchdog_ends_nothing(owner):
    proc, procs = owner
    dog, tree = procs[0], procs[1:]
    proc.stdin.write("release\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    assert wait_gone([dog], 10) == []
    proc.kill()
    proc.wait()
    time.sleep(1)
    assert all(is_alive(p) for p in tree)


def test_a_process_reusing_a_reported_pid_is_left_alone():
    other = subprocess.Popen(["sleep", "60"])
    try:
        started = psutil.Process(other.pid).create_time()
        assert other.pid in targets({other.pid: started}, set())
        assert other.pid not in targets({other.pid: started - 5}, set())
    finally:
        other.kill()
        other.wait()
