"""Run a tool of the Airflow environment (.venv-airflow) from a test running in the tasks environment.

The deploy checks need packages that only the Airflow env's lock holds (Helm's Go SDK, kubernetes-validate,
hadolint, detect-secrets, docker-py); the tests start its executables and read what they print."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"
TOOLS = ROOT / "tests" / "tools"


def run_tool(executable: str, *args: str, stdin: str | None = None, cwd: Path = ROOT,
             timeout: int = 120) -> subprocess.CompletedProcess:
    """Run .venv-airflow/bin/<executable> ARGS; a missing executable means `make setup` did not run."""
    exe = AIRFLOW_BIN / executable
    assert exe.exists(), f"{exe} is missing: run `make setup` (requirements/airflow.lock.txt installs it)"
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def run_python_tool(script: str, *args: str, stdin: str | None = None) -> object:
    """Run tests/tools/<script> with the Airflow env's Python; return its JSON output."""
    proc = run_tool("python", str(TOOLS / script), *args, stdin=stdin)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)
