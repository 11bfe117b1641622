"""A self-contained Airflow home for the embedded default: SQLite metadata DB, this repo's ``dags/``, the
local runner, OpenLineage events to a file, MLflow runs to a local file store (``$CPT_HOME/mlflow``, browsed with
``make mlflow``), and the demo's Param defaults (no Airflow import here).

``environment()`` is what ``make demo``, ``make airflow`` and the tests export before running Airflow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpt_tasks.pipeline.settings import REPO_ROOT
from cpt_tasks.tracking import DEFAULT_UI_URL

LOCAL_SETTINGS = Path(__file__).with_name("airflow_local_settings.py")


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


def main(argv: list[str] | None = None) -> None:
    """``python -m cpt_tasks.pipeline.airflow_home <airflow args>``: run Airflow in the demo's home, with
    the UI and API on 127.0.0.1 (``make airflow`` runs ``standalone``)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    bin_dir = Path(sys.executable).parent  # standalone starts its components as `airflow ...` from PATH
    env = {**os.environ, **prepare(), "AIRFLOW__API__HOST": os.environ.get("AIRFLOW__API__HOST", "127.0.0.1"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    airflow = str(bin_dir / "airflow")
    os.execve(airflow, [airflow, *args], env)


if __name__ == "__main__":
    main()
