"""A real Airflow 3.3 (from .venv-airflow) for the UI tests, run as `make airflow` runs it (its components under
`cpt_local.supervisor`, every listener on 127.0.0.1: `python -m cpt_local.airflow_home serve`)
in the Airflow home and environment that `make airflow` uses (SQLite, LocalExecutor, the repo's dags/, the local
runner), plus free ports and SimpleAuthManager with one known admin. Started in its own process group, with a
watchdog that ends it if the test process dies; `stop()` ends it and every descendant it ever saw, and says if
anything survived."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cpt_local.supervisor import describe, is_alive
from cpt_local.watchdog import Watchdog

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"
USER = "cpt"
PASSWORD = secrets.token_urlsafe(16)  # the test user's, new every session (written to the passwords file)
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class AirflowServer:
    """One local Airflow configured by `env` (AIRFLOW_HOME and the rest, e.g. from
    `cpt_local.airflow_home.prepare`); `url` is the UI, `log` its combined output."""

    env: dict[str, str]
    port: int = field(default_factory=find_free_port)
    log_port: int = field(default_factory=find_free_port)
    proc: subprocess.Popen | None = None
    watchdog: Watchdog | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    watcher: threading.Thread | None = None

    @property
    def home(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "standalone.log"

    def build_env(self) -> dict[str, str]:
        """The process environment: `env` plus the server's own settings (none from an airflow.cfg)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(self.env)
        env.update({
            "PATH": f"{AIRFLOW_BIN}{os.pathsep}{env.get('PATH', '')}",
            "VIRTUAL_ENV": str(AIRFLOW_BIN.parent),
            "PYTHONPATH": str(ROOT),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor forks this many workers up front
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "NO_COLOR": "1",
        })
        return env

    def start(self, timeout: float = 300) -> AirflowServer:
        """Start the server and wait until the API server answers and every component reports healthy."""
        self.home.mkdir(parents=True, exist_ok=True)
        # A password file written before start: SimpleAuthManager keeps it and generates nothing.
        (self.home / "passwords.json").write_text(json.dumps({USER: PASSWORD}) + "\n")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(AIRFLOW_BIN / "python"), "-m", "cpt_local.airflow_home", "serve"],
                                         cwd=self.home, env=self.build_env(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.watchdog = Watchdog()  # ends the server's session if this process dies without stop()
        self.watchdog.guard(self.proc.pid, session=True)
        self.watcher = threading.Thread(target=self.watch_descendants, daemon=True)
        self.watcher.start()
        self.wait_healthy(timeout)
        return self

    def remember_descendants(self) -> None:
        """Note every process below the server now, so stop() can end those that left its group."""
        if self.proc is None:
            return
        try:
            root = psutil.Process(self.proc.pid)
            for proc in [root, *root.children(recursive=True)]:
                self.seen.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            pass

    def watch_descendants(self) -> None:
        """Every second until stop(): remember the processes below the server (task processes come and go)."""
        while not self.stopping.wait(1):
            self.remember_descendants()

    def health(self) -> dict:
        """The API server's /api/v2/monitor/health (no login needed)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=10) as resp:
            return json.load(resp)

    def wait_healthy(self, timeout: float) -> dict:
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Airflow exited {self.proc.returncode}:\n{self.tail_log()}")
            try:
                info = self.health()
                states = {c: (info.get(c) or {}).get("status") for c in COMPONENTS}
                if all(s == "healthy" for s in states.values()):
                    return info
                last = str(states)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = repr(exc)
            time.sleep(2)
        raise TimeoutError(f"Airflow not healthy after {timeout:.0f}s ({last}):\n{self.tail_log()}")

    def api(self, path: str) -> dict:
        """GET a public API path with a token of the test user (set-up checks only, never run states)."""
        body = json.dumps({"username": USER, "password": PASSWORD}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            token = json.load(resp)["access_token"]
        req = urllib.request.Request(f"{self.url}/api/v2/{path}", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def wait_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the DAG processor has stored `dag_id`; fail at once on an import error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            errors = self.api("importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError("DAG import errors:\n" + "\n".join(e["stack_trace"] for e in errors))
            try:
                return self.api(f"dags/{dag_id}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout:.0f}s:\n{self.tail_log()}")

    def tail_log(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def listeners(self) -> set[tuple[str, int]]:
        """(address, port) of every listening TCP socket of the server's processes now."""
        self.remember_descendants()
        found = set()
        for proc in self.seen.values():
            try:
                found.update((c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="tcp")
                             if c.status == psutil.CONN_LISTEN)
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self, grace: float = 20) -> list[str]:
        """SIGTERM to the server (its supervisor stops its tree), then SIGKILL to its process group and every
        descendant seen that is left; return descriptions of any that survived."""
        if self.proc is None:
            return []
        self.stopping.set()
        if self.watcher is not None:
            self.watcher.join()
        self.remember_descendants()
        pgid = self.proc.pid  # start_new_session: the group id is the server's pid
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        gone_by = time.monotonic() + grace
        while time.monotonic() < gone_by and self.alive():
            time.sleep(0.2)
        if self.alive():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for proc in self.seen.values():
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            gone_by = time.monotonic() + 5
            while time.monotonic() < gone_by and self.alive():
                time.sleep(0.2)
        try:
            self.proc.wait(timeout=5)  # reap the server itself
        except subprocess.TimeoutExpired:
            pass
        left = [describe(p) for p in self.alive()]
        if self.watchdog is not None:
            if left:
                self.watchdog.close()  # it kills what is left once more
            else:
                self.watchdog.release()
        for port in (self.port, self.log_port):
            if port_in_use(port):
                left.append(f"something still listens on 127.0.0.1:{port}")
        return left

    def alive(self) -> list[psutil.Process]:
        """Processes of this server still running (zombies count as gone)."""
        left = [proc for proc in self.seen.values() if is_alive(proc)]
        for proc in psutil.process_iter():  # anything still in the group, even if never seen
            try:
                if proc.pid not in self.seen and os.getpgid(proc.pid) == self.proc.pid and is_alive(proc):
                    left.append(proc)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        return left
