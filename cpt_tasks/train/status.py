"""Where a training run lives and how far it got (light core: the DAG imports this at parse time).

A run folder is ``<save_root>/<run_name>`` with ``run_name = <plan fingerprint[:16]>-<sanitized run id>``:
stable across retries of one pipeline run, and different for another plan, so a run never resumes a
checkpoint of other data. ``run-manifest.json``, written last, marks a finished run, and
``<save_root>/finished/<plan fingerprint>.json`` points at the newest finished run of a plan.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from cpt_tasks.storage import is_remote, join, list_files, read_bytes

RUN_MANIFEST = "run-manifest.json"
RUN_MANIFEST_FORMAT = "cpt-pipeline/run-manifest/v1"
FINISHED_DIR = "finished"
LATEST = "latest-rank0.pt"  # Composer's save_latest_filename for rank 0 (a symlink, or a .symlink object)
RUN_ID_CHARS = 48
CHECKPOINT_NAME = re.compile(r"^ep\d+-ba(\d+)-rank\d+\.pt$")  # LLM-Foundry's save_filename, formatted


class TrainResult(BaseModel):
    """What ``cpt-tasks train`` did; the CLI prints it as its last stdout line."""

    status: Literal["trained", "resumed", "already_complete"]
    run_name: str
    run_folder: str
    checkpoint: str | None
    hf_export: str
    run_manifest: str
    plan_fingerprint: str
    final_step: int
    train_tokens: int
    start_step: int | None = None
    loss_curve: str | None = None
    metrics: dict = {}


@dataclass(frozen=True)
class RunPaths:
    """Every location of one run."""

    save_root: str
    run_name: str

    @property
    def folder(self) -> str:
        return join(self.save_root, self.run_name)

    def _file(self, name: str) -> str:
        return join(self.folder, name)

    @property
    def yaml(self) -> str:
        return self._file("train.yaml")

    @property
    def checkpoints(self) -> str:
        return self._file("checkpoints")

    @property
    def hf(self) -> str:
        return self._file("hf")

    @property
    def manifest(self) -> str:
        return self._file(RUN_MANIFEST)

    @property
    def metrics(self) -> str:
        return self._file("metrics.jsonl")

    @property
    def loss_png(self) -> str:
        return self._file("loss.png")

    def finished_pointer(self, plan_fingerprint: str) -> str:
        return finished_pointer(self.save_root, plan_fingerprint)


def sanitize_run_id(run_id: str) -> str:
    """A folder- and Composer-safe form of the run id; a short hash keeps altered ids distinct."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.")[:RUN_ID_CHARS].strip("-.")
    if clean != run_id:
        clean = f"{clean}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}".lstrip("-")
    return clean


def run_name(plan_fingerprint: str, run_id: str) -> str:
    """``<plan fingerprint[:16]>-<sanitized run id>``."""
    return f"{plan_fingerprint[:16]}-{sanitize_run_id(run_id)}"


def finished_pointer(save_root: str, plan_fingerprint: str) -> str:
    """Location of the pointer to the newest finished run of a plan."""
    return join(save_root, FINISHED_DIR, f"{plan_fingerprint}.json")


def read_json(location: str) -> dict | None:
    """A JSON object stored at ``location``, or None when missing or not a JSON object."""
    data = read_bytes(location)
    if data is None:
        return None
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def read_run_manifest(location: str, plan_fingerprint: str) -> dict | None:
    """The run manifest at ``location`` if it is one and belongs to ``plan_fingerprint``."""
    manifest = read_json(location)
    if manifest is None or manifest.get("format") != RUN_MANIFEST_FORMAT:
        return None
    return manifest if manifest.get("plan", {}).get("fingerprint") == plan_fingerprint else None


def find_finished_run(save_root: str, plan_fingerprint: str) -> dict | None:
    """The finished-run pointer of this plan under ``save_root`` (run_name, run_folder, run_manifest,
    plan_fingerprint, final_step, ...), or None when no run of it finished (or its manifest is gone)."""
    pointer = read_json(finished_pointer(save_root, plan_fingerprint))
    if pointer is None or pointer.get("plan_fingerprint") != plan_fingerprint:
        return None
    if not isinstance(pointer.get("run_manifest"), str) or \
            read_run_manifest(pointer["run_manifest"], plan_fingerprint) is None:
        return None
    return pointer


def latest_checkpoint(checkpoints: str) -> tuple[str, int] | None:
    """(location, batch) of the newest complete checkpoint in a Composer save folder, or None.

    Composer points ``latest-rank0.pt`` at a checkpoint only after writing it (locally a symlink; on object
    storage a ``.symlink`` object holding the key, uploaded once the checkpoint is there)."""
    if is_remote(checkpoints):
        data = read_bytes(join(checkpoints, LATEST + ".symlink"))
        if not data:
            return None
        key = data.decode().strip()
        scheme, rest = checkpoints.split("://", 1)
        location = f"{scheme}://{rest.split('/', 1)[0]}/{key.lstrip('/')}"
    else:
        import os

        link = os.path.join(checkpoints, LATEST)
        if not os.path.islink(link) or not os.path.exists(link):
            return None
        location = os.path.normpath(os.path.join(checkpoints, os.readlink(link)))
    found = CHECKPOINT_NAME.match(location.rsplit("/", 1)[-1])
    return (location, int(found.group(1))) if found else None


def checkpoints_after(checkpoints: str, step: int) -> list[str]:
    """Checkpoint files in the save folder from after ``step``: a killed attempt's, written or half-written
    but never made the latest. Composer refuses to save over them (autoresume forbids overwriting)."""
    return [join(checkpoints, name) for name in list_files(checkpoints)
            if (found := CHECKPOINT_NAME.match(name)) and int(found.group(1)) > step]
