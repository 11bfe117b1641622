"""Questions to an Airflow home's metadata DB through Airflow's public REST API (v2), with no server: a process
of the orchestration env (one per home, kept for the later questions) builds the API server's FastAPI app
(``airflow.api_fastapi.app.create_app``) against the home's SQLite DB and asks it with a ``TestClient``, every user
an admin (the simple auth manager's ``[core] simple_auth_manager_all_admins``). Read-only: it starts no server and
changes nothing in the DB.

``query_api`` is what the demo's summary and the DAG's tests ask through; ``main`` is the process it starts.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cpt_pipeline.settings import REPO_ROOT

API = "/api/v2"


def query_api(airflow_home: Path, *requests: tuple[str, dict]) -> list:
    """GET each ``(path under /api/v2, query parameters)`` from the Airflow whose home (metadata DB
    ``airflow.db``) is ``airflow_home``; the JSON answers in order, every page of a collection in one. Any answer
    but 200 raises ``RuntimeError`` naming it. Runs with this interpreter, which must be the orchestration env's.
    The process that answers is started once per home and asked again by later calls (building the API's app
    costs seconds); each request reads the DB afresh."""
    answers = _answerer(Path(airflow_home).resolve()).ask(requests)  # SQLite needs an absolute path
    if isinstance(answers, dict):
        raise RuntimeError(f"Airflow's REST API on {airflow_home} failed:\n{answers['error']}")
    return answers


class _Answerer:
    """One ``python -m cpt_local.airflow_api`` process serving one Airflow home: a JSON list of requests per line
    on its stdin, a JSON line per answer on its own pipe (its stdout carries Airflow's logs)."""

    def __init__(self, airflow_home: Path) -> None:
        env = {**os.environ, "AIRFLOW_HOME": str(airflow_home),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
               "AIRFLOW__CORE__AUTH_MANAGER":
                   "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
        self.log = tempfile.TemporaryFile(mode="w+", prefix="cpt-airflow-api-")
        read, write = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, str(write)], env=env, cwd=REPO_ROOT,
                                     stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     pass_fds=(write,))
        os.close(write)
        self.replies = os.fdopen(read, "r")

    def ask(self, requests) -> list | dict:
        try:
            self.proc.stdin.write(json.dumps(requests) + "\n")
            self.proc.stdin.flush()
            line = self.replies.readline()
        except BrokenPipeError:
            line = ""
        if not line:  # the process ended: say why
            self.close()
            self.log.seek(0)
            return {"error": f"the API process exited ({self.proc.returncode}):\n{self.log.read()[-3000:]}"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _ANSWERERS.pop(self, None)


_ANSWERERS: dict = {}


def _answerer(airflow_home: Path) -> _Answerer:
    found = next((a for a, home in _ANSWERERS.items() if home == airflow_home and a.proc.poll() is None), None)
    if found is None:
        found = _Answerer(airflow_home)
        _ANSWERERS[found] = airflow_home
    return found


@atexit.register
def _close_all() -> None:
    for answerer in list(_ANSWERERS):
        answerer.close()


def fetch_all(client, path: str, params: dict) -> dict:
    """One GET; a collection (``total_entries`` and one list) is fetched page after page into one answer."""
    answer = fetch_page(client, path, params)
    lists = [key for key, value in answer.items() if isinstance(value, list)]
    if "total_entries" not in answer or len(lists) != 1:
        return answer
    items = answer[lists[0]]
    while len(items) < answer["total_entries"]:
        more = fetch_page(client, path, params | {"offset": len(items)})[lists[0]]
        if not more:
            break
        items += more
    return answer


def fetch_page(client, path: str, params: dict) -> dict:
    """One GET's JSON answer; anything but 200 raises."""
    response = client.get(API + path, params=params)
    if response.status_code != 200:
        raise RuntimeError(f"GET {API}{path} {params}: {response.status_code} {response.text[:2000]}")
    return response.json()


def main(argv: list[str]) -> int:
    """``python -m cpt_local.airflow_api REPLY_FD``: one JSON list of [path, params] per line on stdin, each
    answered by one JSON line on the file descriptor REPLY_FD (the answers in order, or {"error": why}) until
    stdin ends; stdout carries Airflow's logs."""
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import create_app

    client = TestClient(create_app(apps="core"))
    with os.fdopen(int(argv[0]), "w") as replies:
        for line in sys.stdin:
            try:
                answer = [fetch_all(client, path, params) for path, params in json.loads(line)]
            except Exception as exc:  # noqa: BLE001 - reported to the asker, who raises it
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            replies.write(json.dumps(answer) + "\n")
            replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
