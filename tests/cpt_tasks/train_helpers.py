"""Shared pieces of the training tests: a verified mix of the sample data, a tiny random Llama, the CLI's
train command, and a run killed (SIGKILL, whole process group) once its first checkpoint exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CPT, ROOT, run_cli

from cpt_tasks.convert.run import convert
from cpt_tasks.plan.config import PlanConfig
from cpt_tasks.plan.run import plan, planned_config
from cpt_tasks.storage import write_bytes_atomic
from cpt_tasks.train.status import latest_checkpoint
from cpt_tasks.verify.config import VerifyConfig
from cpt_tasks.verify.run import verify

CONCAT = 128
SUBSETS = ["dclm", "flan", "math"]
# three subsets (proportions renormalized): 13 + 4 + 5 train rows of 128 tokens and one val row each
MIX = dict(subsets=SUBSETS, total_tokens=3072, concat_tokens=CONCAT, val_fraction=0,
           overrides={name: {"val_tokens": CONCAT} for name in SUBSETS})
MIX_TOKENS = 22 * CONCAT


def make_verified(root: Path, sample_dir: Path, tokenizer_dir: Path, **plan_args) -> Path:
    """Plan, convert and verify the sample into ``root``; the verification report's path."""
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root=str(root / "data"),
                           num_workers=0, **plan_args))
    write_bytes_atomic(str(root / "plan.json"), json.dumps(body).encode())
    for sub in body["subsets"]:
        convert(planned_config(sub), progress_interval=0)
    result = verify(VerifyConfig(plan=str(root / "plan.json"), num_workers=0))
    assert result.ok
    return Path(result.paths["json"])


@pytest.fixture(scope="session")
def mix_report(tmp_path_factory, sample_dir, tokenizer_dir) -> Path:
    """A verified mix of three subsets."""
    return make_verified(tmp_path_factory.mktemp("mix"), sample_dir, tokenizer_dir, **MIX)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer_dir) -> Path:
    """A random 2-layer Llama with the Llama 3 vocabulary, saved with save_pretrained."""
    from cpt_tasks.train.tiny import write_random_llama

    return write_random_llama(tmp_path_factory.mktemp("model") / "tiny", tokenizer_dir)


def train_flags(report: Path, model: Path | str, save_root: str, run_id: str, local_dir: Path, **over) -> list[str]:
    """`cpt-tasks train` flags for a small CPU run (4 rows per step, checkpoint every 2 steps)."""
    values = {"report": report, "model": model, "save_root": save_root, "run_id": run_id,
              "global_batch_size": 4, "device_microbatch_size": 2, "lr": 3e-3, "warmup": "2ba",
              "eval_interval": "1dur", "save_interval": "2ba", "num_workers": 0, "log_interval": 1,
              "local_dir": local_dir, **over}
    return [str(x) for key, value in values.items() for x in (f"--{key}", value)]


def run_train(flags: list[str], env: dict | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Run `cpt-tasks train`; (the result parsed from the last stdout line, the process)."""
    proc = run_cli("train", *flags, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def kill_after_first_checkpoint(flags: list[str], checkpoints: str, log: Path, env: dict | None = None,
                                timeout: float = 400) -> None:
    """Start `cpt-tasks train`, SIGKILL its whole process group once a checkpoint is complete."""
    with open(log, "w") as err:
        proc = subprocess.Popen([*CPT, "train", *flags], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while latest_checkpoint(checkpoints) is None:
                assert proc.poll() is None, f"training ended (exit {proc.returncode}) before its first " \
                                            f"checkpoint:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
