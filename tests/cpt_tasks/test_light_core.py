"""The light core (configs and mixes) must import without heavy libraries: the Airflow DAG imports it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIGHT = ["cpt_tasks.configs.config_base", "cpt_tasks.mix", "cpt_tasks.layout", "cpt_tasks.configs.convert_config",
         "cpt_tasks.configs.plan_config", "cpt_tasks.configs.verify_config", "cpt_tasks.configs.train_config", "cpt_tasks.runs.status",
         "cpt_tasks.documents", "cpt_tasks.documents.plan_docs", "cpt_tasks.documents.convert_docs",
         "cpt_tasks.documents.verify_docs", "cpt_tasks.documents.train_docs", "cpt_tasks.documents.evaluate_docs",
         "cpt_tasks.configs.evaluate_config", "cpt_tasks.evaluate.eval_report", "cpt_tasks.tracking.mlflow_store"]
HEAVY = ["numpy", "torch", "transformers", "streaming", "llmfoundry", "tiktoken", "orjson", "zstandard", "mlflow",
         "matplotlib"]


@pytest.mark.parametrize("python", [sys.executable, str(ROOT / ".venv-airflow" / "bin" / "python")])
def test_light_core_imports_nothing_heavy(python):
    if not Path(python).exists():
        pytest.skip("the Airflow environment is not set up")
    code = (f"import sys\nfor m in {LIGHT!r}: __import__(m)\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == ""
