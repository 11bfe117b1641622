"""Lineage: the Airflow Assets the DAG declares, their run-time metadata, and OpenLineage inputs/outputs.

The chain a run records: source files (hub or folder) -> each subset's MDS (convert) -> the verified mix
(verify) -> the checkpoint (train), whose run manifest names the plan fingerprint and every data manifest.
OpenLineage datasets are named by storage location, so one step's output is the next step's input.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ASSET_PREFIX = "cpt_dolmino"
CHECKPOINT = "checkpoint"


def asset_name(part: str) -> str:
    """The Asset name of a subset's MDS data (``part`` = subset) or of the checkpoint."""
    return f"{ASSET_PREFIX}/{part}"


def asset_extras(task_id: str, result: dict) -> dict[str, dict]:
    """Asset name -> metadata to attach to this step's asset events (token counts, fingerprint, manifest)."""
    if task_id == "verify":
        return {asset_name(name): {"fingerprint": s["fingerprint"], "location": s["out_root"],
                                   "manifest": s["manifest"], "train_tokens": s["train_tokens"],
                                   "val_tokens": s["val_tokens"], "plan_fingerprint": result["plan_fingerprint"],
                                   "report": result["report"]}
                for name, s in result.get("subsets", {}).items()}
    if task_id == "train":
        keys = ("run_name", "run_folder", "checkpoint", "hf_export", "run_manifest", "plan_fingerprint",
                "final_step", "train_tokens", "status")
        return {asset_name(CHECKPOINT): {k: result.get(k) for k in keys}}
    return {}


def location_dataset(location: str) -> tuple[str, str]:
    """(namespace, name) of an OpenLineage dataset at a storage location (s3://b/k, gs://b/k or a path)."""
    parts = urlsplit(location)
    if parts.scheme.lower() in ("s3", "gs"):
        return f"{parts.scheme.lower()}://{parts.netloc}", parts.path.lstrip("/")
    return "file", location.rstrip("/")


def source_dataset(source: dict) -> tuple[str, str]:
    """(namespace, name) of a conversion's source: a hub dataset's subset, or a local folder."""
    if source.get("kind") == "hub":
        name = f"{source['dataset']}/{source.get('subset') or ''}".rstrip("/")
        return "huggingface", f"{name}@{source['revision']}" if source.get("revision") else name
    return location_dataset(f"{source.get('dataset', '')}/data/{source.get('subset') or ''}".rstrip("/"))


def lineage_pairs(task_id: str, result: dict, verified: dict | None = None
                  ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(inputs, outputs) of a step as (namespace, name) pairs, from the step's JSON result (and, for
    training, the verify step's result: the data it trained on)."""
    if task_id.startswith("convert"):
        return [source_dataset(result.get("source", {}))], [location_dataset(result["out_root"])]
    if task_id == "verify":
        mds = [location_dataset(s["out_root"]) for s in result.get("subsets", {}).values()]
        return mds, [location_dataset(result["report"])]
    if task_id == "train":
        inputs = [location_dataset(s["out_root"]) for s in (verified or {}).get("subsets", {}).values()]
        return inputs, [location_dataset(result["run_folder"])]
    return [], []


def operator_lineage(task_id: str, result: dict | None, verified: dict | None = None):
    """OpenLineage's OperatorLineage for a finished step (None before the step produced a result)."""
    if not result:
        return None
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    inputs, outputs = lineage_pairs(task_id, result, verified)
    return OperatorLineage(inputs=[Dataset(namespace=n, name=m) for n, m in inputs],
                           outputs=[Dataset(namespace=n, name=m) for n, m in outputs])
