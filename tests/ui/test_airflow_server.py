"""The server fixture's stop: it ends the whole process group and descendants that left it, and says if
anything survived; the server's settings: every listener on 127.0.0.1 (the running server's sockets are checked
by the ``airflow`` fixture; the watchdog that ends it when the test process dies: tests/dags/test_watchdog.py)."""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from cpt_local.airflow_home import components, local_config

from .airflow_server import AIRFLOW_BIN, AirflowServer

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


def test_server_listens_on_loopback_only(tmp_path):
    """The settings the server runs with (``airflow_home serve``): the API server and the one log server on
    127.0.0.1 at the server's ports, the scheduler and triggerer without their own (all-interface) log servers."""
    server = AirflowServer(env={"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__API__HOST": "0.0.0.0"})
    env = server.build_env()
    config = local_config(env)
    assert (config["AIRFLOW__API__HOST"], config["AIRFLOW__API__PORT"]) == ("127.0.0.1", str(server.port))
    assert config["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(server.log_port)
    assert config["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == str(server.log_port)
    argvs = components(AIRFLOW_BIN, config)
    for name in ("api-server", "log-server"):
        argv = argvs[name]
        assert argv[argv.index("--host") + 1] == "127.0.0.1", argv
    assert str(server.log_port) in argvs["log-server"]
    assert all("--skip-serve-logs" in argvs[name] for name in ("scheduler", "triggerer"))
