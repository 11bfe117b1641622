"""The light core (configs and mixes) must import without heavy libraries: the Airflow DAG imports it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIGHT = ["cpt_tasks.configs.base", "cpt_tasks.mix", "cpt_tasks.layout", "cpt_tasks.configs.convert",
         "cpt_tasks.configs.plan", "cpt_tasks.configs.verify", "cpt_tasks.configs.train", "cpt_tasks.runs.status",
         "cpt_tasks.documents", "cpt_tasks.documents.plan", "cpt_tasks.documents.convert",
         "cpt_tasks.documents.verify", "cpt_tasks.documents.train", "cpt_tasks.documents.evaluate",
         "cpt_tasks.configs.evaluate", "cpt_tasks.evaluate.report", "cpt_tasks.tracking"]
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
