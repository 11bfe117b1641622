"""A self-contained Airflow home for the embedded default: SQLite metadata DB, this repo's ``dags/``, the
local runner, OpenLineage events to a file, MLflow runs to a local file store (``$CPT_HOME/mlflow``, browsed with
``make mlflow``), and the demo's Param defaults (no Airflow import here).

``prepare()`` is what ``make demo``, ``make airflow`` and the tests export before running Airflow; ``main()`` is
``make airflow`` (its components on 127.0.0.1 under :mod:`cpt_local.supervisor`) and ``make airflow-stop``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from cpt_pipeline.settings import REPO_ROOT
from cpt_tasks.tracking.mlflow_store import DEFAULT_UI_URL

LOCAL_SETTINGS = REPO_ROOT / "cpt_pipeline" / "airflow_local_settings.py"


def cpt_home() -> Path:
    """``$CPT_HOME`` (default: ``.cpt/`` in the repository)."""
    return Path(os.environ.get("CPT_HOME") or REPO_ROOT / ".cpt").resolve()


def demo_params(home: Path, storage_root: Path | None = None) -> dict:
    """The embedded default's Params: the bundled sample, the offline tokenizer, a tiny Llama on the CPU;
    outputs under ``storage_root`` (default ``<home>/demo``)."""
    return {
        "total_tokens": 350_000, "concat_tokens": 256, "val_fraction": 0.03,
        "dataset": str(home / "sample" / "dolmino"), "tokenizer": str(home / "tokenizer" / "llama3"),
        "storage_root": str(storage_root or home / "demo"), "model": str(home / "models" / "tiny-llama"),
        "gpus": 0, "global_batch_size": 4, "device_microbatch_size": 2, "max_duration": "20ba",
        "train_options": {"save_interval": "10ba", "eval_interval": "10ba", "eval_subset_num_batches": 2,
                          "lr": 0.001, "num_workers": 0},
        "convert_cpu": 2, "convert_memory": "2Gi", "train_cpu": 2, "train_memory": "8Gi", "shm_size": "1Gi",
    }


def mlflow_store(home: Path) -> str:
    """The embedded default's MLflow tracking store: a file store (sqlite fails with the locked SQLAlchemy)."""
    return f"file://{home / 'mlflow'}"


def prepare(home: Path | None = None, airflow_home: Path | None = None, storage_root: Path | None = None,
            params: dict | None = None, tracking: str | None = None) -> dict[str, str]:
    """Create an Airflow home (default ``$CPT_HOME/airflow``) whose Param defaults are the demo's (with
    ``params`` over them), with outputs under ``storage_root`` (default ``$CPT_HOME/demo``) and MLflow runs in
    ``tracking`` (default :func:`mlflow_store`); return the environment to run Airflow with. The sample,
    tokenizer and tiny model come from ``home`` (``make setup``)."""
    home = home or cpt_home()
    airflow_home = airflow_home or home / "airflow"
    storage_root = storage_root or home / "demo"
    (airflow_home / "config").mkdir(parents=True, exist_ok=True)
    (airflow_home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS.read_text())
    defaults = airflow_home / "demo-params.json"
    defaults.write_text(json.dumps(demo_params(home, storage_root) | (params or {}), indent=2))
    lineage = storage_root / "openlineage"
    lineage.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cpt-demo",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path":
                                                       str(lineage / "events.jsonl"), "append": True}),
        "CPT_HOME": str(home),
        "CPT_RUNNER": "local",
        # Locally, runs are triggered by hand: a weekly schedule would queue a scheduled run ahead of them
        # (max_active_runs=1) as soon as the DAG is unpaused.
        "CPT_SCHEDULE": os.environ.get("CPT_SCHEDULE", "none"),
        "CPT_STORAGE_ROOT": str(storage_root),
        "CPT_PARAM_DEFAULTS": str(defaults),
        "CPT_TASKS_BIN": str(REPO_ROOT / ".venv" / "bin" / "cpt-tasks"),
        "CPT_MLFLOW_TRACKING_URI": tracking or mlflow_store(home),
        "CPT_MLFLOW_UI_URL": os.environ.get("CPT_MLFLOW_UI_URL", DEFAULT_UI_URL),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    }


def loopback_hostname() -> str:
    """``[core] hostname_callable`` of the local Airflow: task and triggerer log URLs point at 127.0.0.1, where
    its one log server listens (the machine's name may resolve to an address that server does not bind)."""
    return "127.0.0.1"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def local_config(env: Mapping[str, str], cores: int | None = None) -> dict[str, str]:
    """Settings of the local Airflow over ``env``: every listener on 127.0.0.1 (API server on
    ``AIRFLOW__API__PORT``, default 8080; one log server for task and triggerer logs on
    ``AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT``, default 8793), the scheduler's health server off, and
    parallelism sized to the usable cores (LocalExecutor forks that many workers up front) unless set in ``env``."""
    cores = cores or usable_cores()
    port = env.get("AIRFLOW__API__PORT") or "8080"
    log_port = env.get("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT") or "8793"
    sized = {
        "AIRFLOW__CORE__PARALLELISM": str(max(2, min(cores, 8))),
        "AIRFLOW__API__WORKERS": "1" if cores <= 4 else "2",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1" if cores <= 2 else "2",
    }
    return {**sized, **{k: v for k, v in env.items() if k in sized}, **{
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": env.get("AIRFLOW__API__BASE_URL") or f"http://127.0.0.1:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": log_port, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": log_port,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cpt_local.airflow_home.loopback_hostname",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    }}


def components(bin_dir: Path, config: Mapping[str, str]) -> dict[str, list[str]]:
    """The local Airflow's processes, started one by one instead of by ``airflow standalone`` (which cannot
    skip the components' log servers, bound to every interface, and leaves its children running when it gets
    SIGTERM): scheduler and triggerer without their own log servers, the DAG processor, the API server on
    127.0.0.1, and Airflow's own log-serving app on 127.0.0.1 in their place."""
    airflow = str(bin_dir / "airflow")
    return {
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", config["AIRFLOW__API__PORT"],
                       "--workers", config["AIRFLOW__API__WORKERS"]],
        "log-server": [str(bin_dir / "python"), "-m", "uvicorn", "airflow.utils.serve_logs.log_server:get_app",
                       "--factory", "--host", "127.0.0.1", "--port", config["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"],
                       "--no-access-log"],
    }


def airflow_home_dir() -> Path:
    """The local Airflow's home: ``$CPT_AIRFLOW_HOME``, default ``$CPT_HOME/airflow``."""
    return Path(os.environ.get("CPT_AIRFLOW_HOME") or cpt_home() / "airflow").resolve()


def pid_file(airflow_home: Path) -> Path:
    return airflow_home / "local-airflow.pid"


class ReadyBanner:
    """Prints once, when the API server reports every component healthy, where the UI is and how to stop."""

    def __init__(self, url: str, airflow_home: Path):
        self.url, self.airflow_home, self.shown, self.next_try = url, airflow_home, False, 0.0

    def __call__(self) -> None:
        if self.shown or time.monotonic() < self.next_try:
            return
        self.next_try = time.monotonic() + 2
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2) as resp:
                health = json.load(resp)
        except (OSError, ValueError):
            return
        if all((health.get(c) or {}).get("status") == "healthy"
               for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")):
            self.shown = True
            passwords = self.airflow_home / "simple_auth_manager_passwords.json.generated"
            print(f"\n[cpt-airflow] Airflow is ready: {self.url} (user admin, password in {passwords})\n"
                  "[cpt-airflow] Ctrl-C here or `make airflow-stop` in another shell stops every process.\n",
                  file=sys.stderr, flush=True)


def run_local(grace: float = 5.0) -> int:
    """``make airflow``: the local Airflow in the demo's home under a supervisor (see :mod:`supervisor`)."""
    home = airflow_home_dir()
    return serve({**os.environ, **prepare(airflow_home=home)}, home, grace)


def serve(env: Mapping[str, str], home: Path, grace: float = 5.0) -> int:
    """The local Airflow's components (:func:`components`, :func:`local_config` over ``env``) in Airflow home
    ``home`` under a supervisor, stopped with every process they started (see :mod:`supervisor`)."""
    from cpt_local.supervisor import Supervisor

    bin_dir = Path(sys.executable).parent
    env = dict(env)
    env.update(local_config(env))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    url = env["AIRFLOW__API__BASE_URL"]
    supervisor = Supervisor(components(bin_dir, env), env, pid_file(home), grace=grace, cwd=home,
                            first=[[str(bin_dir / "airflow"), "db", "migrate"]],
                            on_tick=ReadyBanner(url, home))
    return supervisor.run()


def main(argv: list[str] | None = None) -> None:
    """``python -m cpt_local.airflow_home standalone``: the local Airflow (``make airflow``) on
    127.0.0.1, stopped with every process it started by Ctrl-C, SIGTERM or ``... stop`` (``make airflow-stop``)
    from another shell; ``... serve``: the same in the Airflow home and settings the environment already holds
    (``AIRFLOW_HOME`` and the rest from :func:`prepare`: the UI tests' private home); ``python -m
    cpt_local.airflow_home <airflow args>``: any other Airflow command in the demo's home."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["standalone"]:
        raise SystemExit(run_local())
    if args == ["serve"]:
        raise SystemExit(serve(os.environ, Path(os.environ["AIRFLOW_HOME"])))
    if args == ["stop"]:
        from cpt_local.supervisor import stop_running

        raise SystemExit(stop_running(pid_file(airflow_home_dir())))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **prepare(airflow_home=airflow_home_dir())}
    env.update(local_config(env))
    airflow = str(bin_dir / "airflow")
    os.execve(airflow, [airflow, *args], env)


if __name__ == "__main__":
    main()
