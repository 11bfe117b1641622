"""The pipeline's fixed names and storage layout, in one place (light core).

Under one storage root (a local path, ``s3://`` or ``gs://``)::

    <root>/data/<mix>/<fingerprint[:16]>/<subset>/{train,val}/   MDS (index.json + shards), manifest.json
    <root>/data/<mix>/<fingerprint[:16]>/<subset>/{train,val}/part-NNNNN/, parts/   a subset converted in parts
    <root>/runs/<dag>/<run>/                                       plan.json, verify-report.{json,md}, verify-mix.png
    <root>/checkpoints/<plan fingerprint[:16]>-<run>/              a training run (see cpt_tasks.runs.status)
    <root>/checkpoints/finished/<plan fingerprint>.json            the newest finished run of a plan
    <run folder>/eval/<eval fingerprint[:16]>/                     an evaluation of a run: eval-report.{json,md},
                                                                   eval.png, the eval YAMLs, the ICL task list

``<run>`` is :func:`safe_run_id` of the Airflow run id, everywhere it appears.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal, get_args

from cpt_tasks.storage import join

Split = Literal["train", "val"]  # the output splits of every conversion
SPLITS: tuple[str, ...] = get_args(Split)  # in write order
TRAIN, VAL = SPLITS
MANIFEST_FILE = "manifest.json"  # a conversion's completion marker, written last
MDS_INDEX_FILE = "index.json"  # an MDS split's index
PARTS_DIR = "parts"  # a conversion in parts: <out_root>/parts/part-NNNNN.json, each part's completion marker
COLUMN_NAME = "tokens"  # the one MDS column
COLUMN_ENCODING = "ndarray:int32"  # its encoding: rows of exactly concat_tokens int32 ids
PLAN_FILE = "plan.json"
REPORT_JSON, REPORT_MD, REPORT_PNG = "verify-report.json", "verify-report.md", "verify-mix.png"
RUN_MANIFEST_FILE = "run-manifest.json"  # a training run's completion marker, written last
FINISHED_DIR = "finished"
TERMINATION_LOG = "/dev/termination-log"  # Kubernetes' default terminationMessagePath: a Job node's result
TRAIN_NODE_LABEL = "cpt-pipeline/train-node"  # on multi-node training pods: the chart's Service and policy select it
EVAL_DIR = "eval"  # a training run's evaluations, one folder per eval fingerprint
EVAL_JSON, EVAL_MD, EVAL_PNG = "eval-report.json", "eval-report.md", "eval.png"  # the JSON: written last
EVAL_TASKS_FILE = "icl-tasks.yaml"  # the ICL task list an evaluation used, in LLM-Foundry's icl_tasks format
SWEEPS_DIR = "sweeps"  # replay sweeps' pointers, one per corpus key
SWEEP_REPORT_JSON, SWEEP_REPORT_MD, SWEEP_PNG = "sweep-report.json", "sweep-report.md", "sweep.png"
LOCATION_DIGITS = 16  # fingerprint characters in data and run folder names
RUN_ID_CHARS = 48


def safe_run_id(run_id: str) -> str:
    """A run id as one folder name (and Composer run name): letters, digits, '.', '_' and '-', at most
    48 characters; an id that had to change gets a short hash of the original, so two ids never collide."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.")[:RUN_ID_CHARS].strip("-.")
    if clean != run_id:
        clean = f"{clean}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}".lstrip("-")
    return clean


def part_name(part: int) -> str:
    """A part's folder under each split (``<out_root>/<split>/part-NNNNN/``, one level deep, as streaming's
    ``merge_index`` lays parts out) and its marker's name under ``<out_root>/parts/``."""
    return f"part-{part:05d}"


def data_root(storage_root: str) -> str:
    """Where conversions go: ``<root>/data``."""
    return join(storage_root, "data")


def subset_root(data: str, mix: str, fingerprint: str, subset: str) -> str:
    """One conversion's folder: ``<data>/<mix>/<fingerprint[:16]>/<subset>``."""
    return join(data, mix, fingerprint[:LOCATION_DIGITS], subset)


def run_dir(storage_root: str, dag_id: str, safe_run: str) -> str:
    """A pipeline run's documents: ``<root>/runs/<dag>/<run>`` (``safe_run`` already made safe)."""
    return join(storage_root, "runs", dag_id, safe_run)


def checkpoints_root(storage_root: str) -> str:
    """Where training runs go: ``<root>/checkpoints`` (the train step's save root)."""
    return join(storage_root, "checkpoints")


def training_run_name(plan_fingerprint: str, run_id: str) -> str:
    """A training run's folder name: ``<plan fingerprint[:16]>-<safe run id>``, stable across retries."""
    return f"{plan_fingerprint[:LOCATION_DIGITS]}-{safe_run_id(run_id)}"


def short_run_name(run_name: str) -> str:
    """A training run's name for a picture's title: ``plan <8 hex digits> · <run id, at most 28 characters>``."""
    plan, _, run = run_name.partition("-")
    return f"plan {plan[:8]} · {run if len(run) <= 28 else run[:27] + '…'}"


def finished_pointer(save_root: str, plan_fingerprint: str) -> str:
    """The pointer to the newest finished training run of a plan."""
    return join(save_root, FINISHED_DIR, f"{plan_fingerprint}.json")


def eval_folder(run_folder: str, eval_fingerprint: str) -> str:
    """One evaluation of a training run: ``<run folder>/eval/<eval fingerprint[:16]>``."""
    return join(run_folder, EVAL_DIR, eval_fingerprint[:LOCATION_DIGITS])


def data_cache(cache: Path, fingerprint: str, subset: str) -> Path:
    """A verified subset's local stream cache under a job's scratch: ``<cache>/<fingerprint[:16]>/<subset>``."""
    return cache / fingerprint[:LOCATION_DIGITS] / subset


def sweeps_root(storage_root: str) -> str:
    """Where replay sweeps leave their pointers: ``<root>/sweeps``."""
    return join(storage_root, SWEEPS_DIR)


def sweep_pointer(sweeps: str, corpus_key: str) -> str:
    """The pointer to the newest replay sweep of a corpus (with its mix and tokenizer)."""
    return join(sweeps, f"{corpus_key}.json")


def sweep_run_id(run_id: str, fraction: float) -> str:
    """The run id of one proxy run of a replay sweep: ``<run id>-replay-<fraction>`` (its own run folder)."""
    return f"{run_id}-replay-{fraction:g}"
