"""Questions to an Airflow home's metadata DB through Airflow's public REST API (v2), with no server: a fresh
process of the orchestration env builds the API server's FastAPI app (``airflow.api_fastapi.app.create_app``)
against the home's SQLite DB and asks it with a ``TestClient``, every user an admin (the simple auth manager's
``[core] simple_auth_manager_all_admins``). Read-only: it starts no server and changes nothing in the DB.

``query_api`` is what the demo's summary and the DAG's tests ask through; ``main`` is the process it starts.
"""

from __future__ import annotations

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
    but 200 raises ``RuntimeError`` naming it. Runs with this interpreter, which must be the orchestration env's."""
    airflow_home = Path(airflow_home).resolve()  # SQLite needs an absolute path
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
           "AIRFLOW__CORE__AUTH_MANAGER":
               "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    with tempfile.TemporaryDirectory(prefix="cpt-airflow-api-") as tmp:
        answers = Path(tmp) / "answers.json"
        proc = subprocess.run([sys.executable, "-m", __name__, str(answers), json.dumps(requests)], env=env,
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"Airflow's REST API on {airflow_home} failed ({proc.returncode}):\n"
                               + (proc.stdout + proc.stderr)[-3000:])
        return json.loads(answers.read_text())


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
    """``python -m cpt_local.airflow_api ANSWERS REQUESTS``: REQUESTS a JSON list of [path, params];
    the answers go to the file ANSWERS (stdout carries Airflow's logs)."""
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.app import create_app

    answers, requests = Path(argv[0]), json.loads(argv[1])
    client = TestClient(create_app(apps="core"))
    found = [fetch_all(client, path, params) for path, params in requests]
    answers.write_text(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
