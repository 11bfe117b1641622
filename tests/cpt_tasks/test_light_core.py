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




COUNT_GPUS = """
import sys
from cpt_tasks.runs import workers
nodes = {"device-node": ["/dev/nvidia0"], "no-device-node": []}[sys.argv[1]]  # as on a machine with(out) a GPU
workers.glob.glob = lambda pattern: nodes if pattern == "/dev/nvidia*" else []
count, asked = workers.count_gpus(), "torch" in sys.modules
import torch
print(count, asked, torch.cuda.device_count() if torch.cuda.is_available() else 0)
"""


def test_a_job_counts_no_gpu_without_importing_torch_where_the_machine_has_no_gpu_device():
    """The train and evaluate jobs count GPUs before starting their processes: on a Linux machine without any GPU
    device node (NVIDIA, ROCm, WSL) that is 0 at once, torch not imported; with one, torch's own count."""
    found = {}
    for case in ("no-device-node", "device-node"):
        out = subprocess.run([sys.executable, "-c", COUNT_GPUS, case], capture_output=True, text=True, check=True,
                             cwd=ROOT).stdout.split()
        found[case] = (int(out[0]), out[1] == "True", int(out[2]))
    assert found["no-device-node"][:2] == (0, False)
    count, asked, torch_count = found["device-node"]
    assert asked and count == torch_count
