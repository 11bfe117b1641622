"""``make airflow`` started as the Makefile starts it (``python -m cpt_local.airflow_home standalone``
from the orchestration env) on free ports: once healthy, every TCP listener of its process tree is on
127.0.0.1; after Ctrl-C (SIGINT to its process group), SIGTERM to it, or ``... airflow_home stop`` (``make
airflow-stop``) from another process, no process of the tree is left 30 s later and the pid file is gone; after
SIGKILL to the supervisor (no clean-up possible) its watchdog ends the tree as well."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from cpt_local.airflow_home import local_config
from cpt_local.supervisor import describe, is_alive

ROOT = Path(__file__).resolve().parents[2]
MODULE = "cpt_local.airflow_home"
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalAirflow:
    """One ``make airflow`` in a private CPT_HOME; notes every process of its tree while it runs."""

    def __init__(self, base: Path):
        self.port, self.log_port = find_free_port(), find_free_port()
        self.home = base / "airflow"
        self.log = base / f"local-airflow-{self.port}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.update({"CPT_HOME": str(base / "cpt"), "CPT_AIRFLOW_HOME": str(self.home), "NO_COLOR": "1",
                         "PYTHONPATH": str(ROOT), "AIRFLOW__API__PORT": str(self.port),
                         "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_port)})
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", MODULE, "standalone"], env=self.env, cwd=base,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # its own group, as a terminal gives `make`
        self.top = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {self.proc.pid: self.top}
        self.done = threading.Event()
        self.watcher = threading.Thread(target=self.watch, daemon=True)
        self.watcher.start()

    def watch(self) -> None:
        while not self.done.wait(0.5):
            self.tree()

    def tree(self) -> list[psutil.Process]:
        """The processes below the top one now (also noted for the end)."""
        try:
            procs = self.top.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for proc in procs:
            self.seen.setdefault(proc.pid, proc)
        return procs

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.tail()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as r:
                    health = json.load(r)
                states = {c: (health.get(c) or {}).get("status") for c in COMPONENTS}
                if set(states.values()) == {"healthy"}:
                    return
                last = str(states)
            except (OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.25)  # healthy is seen within a quarter second (each test starts one Airflow)
        raise TimeoutError(f"not healthy after {timeout:.0f}s ({last}):\n{self.tail()}")

    def listeners(self) -> set[tuple[str, int, str]]:
        """(address, port, process name) of every listening TCP socket of the tree."""
        found = set()
        for proc in [self.top, *self.tree()]:
            try:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN:
                        found.add((conn.laddr.ip, conn.laddr.port, proc.name()))
            except psutil.NoSuchProcess:
                pass
        return found

    def alive(self) -> list[psutil.Process]:
        return [proc for proc in self.seen.values() if is_alive(proc)]

    def wait_gone(self, timeout: float = 30) -> list[str]:
        """Wait until no process of the tree runs; return those still running (pid and command line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            self.proc.poll()
            time.sleep(0.2)
        self.done.set()
        return [describe(p) for p in self.alive()]

    def kill(self) -> None:
        """Clean-up after a failed test: SIGKILL to anything left."""
        self.done.set()
        for proc in self.alive():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """One CPT_HOME for the module: the second and third start find the metadata DB migrated."""
    return tmp_path_factory.mktemp("local-airflow")


def stop_with_verb(airflow: LocalAirflow) -> None:
    done = subprocess.run([sys.executable, "-m", MODULE, "stop"], env=airflow.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "stopped" in done.stderr


STOPS = {
    "ctrl-c": lambda airflow: os.killpg(airflow.proc.pid, signal.SIGINT),  # what a terminal sends its job
    "sigterm": lambda airflow: airflow.proc.send_signal(signal.SIGTERM),
    "stop-verb": stop_with_verb,
}


@pytest.mark.slow
@pytest.mark.timeout(360)
@pytest.mark.parametrize("how", list(STOPS))
def test_local_airflow_listens_on_loopback_and_stops_everything(base, how):
    airflow = LocalAirflow(base)
    try:
        airflow.wait_healthy()
        pid_file = airflow.home / "local-airflow.pid"
        assert json.loads(pid_file.read_text())["pid"] == airflow.proc.pid
        listeners = airflow.listeners()
        assert {(ip, port) for ip, port, _ in listeners} == {("127.0.0.1", airflow.port),
                                                            ("127.0.0.1", airflow.log_port)}, listeners
        names = [" ".join(p.cmdline()) for p in airflow.tree()]
        assert sum("LocalExecutor" in n for n in names) <= max(2, min(len(os.sched_getaffinity(0)), 8)), names
        before = len(airflow.seen)

        started = time.monotonic()
        STOPS[how](airflow)
        left = airflow.wait_gone(30)
        took = time.monotonic() - started
        assert not left, f"still running {took:.0f}s after {how}: {left}\n{airflow.tail()}"
        assert airflow.proc.wait(timeout=5) == 0, airflow.tail()
        assert not pid_file.exists()
        print(f"{how}: {before} processes gone in {took:.1f}s")
    finally:
        airflow.kill()


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_sigkilled_supervisor_takes_its_tree_along(base):
    airflow = LocalAirflow(base)
    try:
        airflow.wait_healthy()
        tree = airflow.tree()  # every component and what it started (API and executor workers, ...)
        assert len(tree) >= 6, [describe(p) for p in tree]
        started = time.monotonic()
        airflow.proc.kill()
        assert airflow.proc.wait(timeout=5) == -signal.SIGKILL
        airflow.done.set()  # the tree as it was before the kill is what must end
        deadline = started + 30
        while time.monotonic() < deadline and any(is_alive(p) for p in tree):
            time.sleep(0.2)
        left = [describe(p) for p in tree if is_alive(p)]
        assert not left, f"still running 30s after SIGKILL to the supervisor: {left}\n{airflow.tail()}"
        print(f"sigkill: {len(tree)} processes gone in {time.monotonic() - started:.1f}s")
    finally:
        airflow.kill()


def test_stop_verb_leaves_a_process_that_reuses_the_pid_alone(tmp_path):
    """A stale pid file (its pid now another process, started later): `stop` says nothing runs, signals
    nothing and removes the file."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        env = {**os.environ, "CPT_HOME": str(tmp_path), "CPT_AIRFLOW_HOME": str(tmp_path / "airflow"),
               "PYTHONPATH": str(ROOT)}
        pid_file = tmp_path / "airflow" / "local-airflow.pid"
        pid_file.parent.mkdir()
        pid_file.write_text(json.dumps({"pid": other.pid, "create_time": 1.0}))
        done = subprocess.run([sys.executable, "-m", MODULE, "stop"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "not running" in done.stderr
        assert other.poll() is None, "stop signalled a process that only reuses the pid"
        assert not pid_file.exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(("cores", "parallelism", "api_workers"), [(1, "2", "1"), (2, "2", "1"), (16, "8", "2")])
def test_local_config_sizes_to_the_cores_and_binds_loopback(cores, parallelism, api_workers):
    config = local_config({"AIRFLOW__API__HOST": "0.0.0.0"}, cores=cores)
    assert (config["AIRFLOW__CORE__PARALLELISM"], config["AIRFLOW__API__WORKERS"]) == (parallelism, api_workers)
    assert config["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert config["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == config["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]


def test_local_config_keeps_a_parallelism_the_user_set():
    assert local_config({"AIRFLOW__CORE__PARALLELISM": "3"}, cores=2)["AIRFLOW__CORE__PARALLELISM"] == "3"
