"""Where a training run lives and how far it got (light core: the DAG imports this at parse time).

A run folder is ``<save_root>/<run_name>`` with ``run_name = <plan fingerprint[:16]>-<safe run id>``:
stable across retries of one pipeline run, and different for another plan, so a run never resumes a
checkpoint of other data. ``run-manifest.json``, written last, marks a finished run, and
``<save_root>/finished/<plan fingerprint>.json`` points at the newest finished run of a plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cpt_tasks.documents.train_docs import FinishedRun, RunManifest
from cpt_tasks.layout import RUN_MANIFEST_FILE, finished_pointer, training_run_name
from cpt_tasks.runs.completion import find_complete
from cpt_tasks.storage import exists, is_remote, join, list_files, read_bytes, remove_file, remove_tree

LATEST = "latest-rank0.pt"  # Composer's save_latest_filename for rank 0 (a symlink, or a .symlink object)
LATEST_SHARDED = "latest-sharded-rank0"  # LLM-Foundry's name for it with sharded checkpoints (nnodes > 1)
CHECKPOINT_NAME = re.compile(r"^ep\d+-ba(\d+)-rank\d+\.pt$")  # LLM-Foundry's save_filename, formatted
SHARDED_NAME = re.compile(r"^ep\d+-ba(\d+)$")  # a sharded checkpoint: a folder of one .distcp file per rank
SHARDED_METADATA = ".metadata"  # torch.distributed.checkpoint's index, in every sharded checkpoint folder


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
        return self._file(RUN_MANIFEST_FILE)

    @property
    def metrics(self) -> str:
        return self._file("metrics.jsonl")

    @property
    def loss_png(self) -> str:
        return self._file("loss.png")

    def finished_pointer(self, plan_fingerprint: str) -> str:
        return finished_pointer(self.save_root, plan_fingerprint)


def run_paths(save_root: str, plan_fingerprint: str, run_id: str) -> RunPaths:
    """The locations of the training run of a plan for a pipeline run id."""
    return RunPaths(save_root, training_run_name(plan_fingerprint, run_id))


def read_run_manifest(location: str, plan_fingerprint: str) -> RunManifest | None:
    """The run manifest at ``location`` if there is a valid one and it belongs to ``plan_fingerprint``: the run
    is complete."""
    return find_complete(location, RunManifest, lambda manifest: manifest.plan.fingerprint == plan_fingerprint)


def find_finished_run(save_root: str, plan_fingerprint: str) -> FinishedRun | None:
    """The finished-run pointer of this plan under ``save_root``, or None when no run of it finished (or the
    run's manifest is gone or belongs to another plan)."""
    pointer = find_complete(finished_pointer(save_root, plan_fingerprint), FinishedRun,
                            lambda found: found.plan_fingerprint == plan_fingerprint)
    return pointer if pointer is not None and read_run_manifest(pointer.run_manifest, plan_fingerprint) else None


def latest_checkpoint(checkpoints: str) -> tuple[str, int] | None:
    """(location, batch) of the newest complete checkpoint in a Composer save folder, or None.

    Composer points ``latest-rank0.pt`` at a checkpoint file, or with sharded checkpoints
    ``latest-sharded-rank0`` at a checkpoint folder, only after every rank wrote its part (locally a symlink;
    on object storage a ``.symlink`` object holding the key, uploaded once the checkpoint is there)."""
    found = [c for c in (_pointed(checkpoints, LATEST, CHECKPOINT_NAME),
                         _pointed(checkpoints, LATEST_SHARDED, SHARDED_NAME)) if c is not None]
    return max(found, key=lambda c: c[1]) if found else None


def _pointed(checkpoints: str, pointer: str, name: re.Pattern) -> tuple[str, int] | None:
    """(location, batch) of the checkpoint ``pointer`` names, if it is one of ``name`` and there."""
    if is_remote(checkpoints):
        data = read_bytes(join(checkpoints, pointer + ".symlink"))
        if not data:
            return None
        key = data.decode().strip()
        scheme, rest = checkpoints.split("://", 1)
        location = f"{scheme}://{rest.split('/', 1)[0]}/{key.lstrip('/')}".rstrip("/")
    else:
        import os

        link = os.path.join(checkpoints, pointer)
        if not os.path.islink(link) or not os.path.exists(link):
            return None
        location = os.path.normpath(os.path.join(checkpoints, os.readlink(link)))
    found = name.match(location.rsplit("/", 1)[-1])
    if found is None or (name is SHARDED_NAME and not exists(join(location, SHARDED_METADATA))):
        return None
    return location, int(found.group(1))


def checkpoints_after(checkpoints: str, step: int) -> list[str]:
    """Checkpoints in the save folder from after ``step`` (files, or folders of sharded ones): a killed
    attempt's, written or half-written but never made the latest. Composer refuses to save over them
    (autoresume forbids overwriting)."""
    stale: set[str] = set()
    for name in list_files(checkpoints):
        top = name.split("/", 1)[0]
        found = (CHECKPOINT_NAME if top == name else SHARDED_NAME).match(top)
        if found and int(found.group(1)) > step:
            stale.add(join(checkpoints, top))
    return sorted(stale)


def remove_checkpoint(location: str) -> None:
    """Delete one checkpoint: a file, or a sharded checkpoint's folder."""
    if SHARDED_NAME.match(location.rstrip("/").rsplit("/", 1)[-1]):
        remove_tree(location)
    else:
        remove_file(location)
