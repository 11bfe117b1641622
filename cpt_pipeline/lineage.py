"""Lineage: the Airflow Assets the DAG declares, their run-time metadata, and OpenLineage inputs/outputs.

The chain a run records: source files (hub or folder) -> each subset's MDS (convert) -> the verified mix
(verify) -> the checkpoint (train), whose run manifest names the plan fingerprint and every data manifest ->
the evaluation report (evaluate: the trained model, the val splits and the ICL task files in).
OpenLineage datasets are named by storage location, so one step's output is the next step's input.
"""

from __future__ import annotations

from cpt_tasks.documents.convert_docs import ConvertSummary, SourceInfo
from cpt_tasks.documents.evaluate_docs import EvaluateResult
from cpt_tasks.documents.plan_docs import PlanEntry
from cpt_tasks.documents.train_docs import TrainResult
from cpt_tasks.documents.sweep_docs import SweepResult
from cpt_tasks.documents.verify_docs import VerifySummary
from cpt_tasks.storage.urls import parse_url
from cpt_pipeline.wiring import Lineage, Pairs

ASSET_PREFIX = "cpt_dolmino"
CHECKPOINT = "checkpoint"
EVAL = "eval"
RECOMMENDATION = "replay_recommendation"
DOMAIN = "domain"  # the Asset of the plan's domain corpus component, whatever its domain_name
VERIFIED = "verified"  # the AssetAlias verify emits through: one event per component the run's plan holds


def asset_name(part: str) -> str:
    """The Asset name of a subset's MDS data (``part`` = subset), of the checkpoint or of the evaluation (or the
    name of verify's AssetAlias)."""
    return f"{ASSET_PREFIX}/{part}"


def verify_extras(result: dict) -> dict[str, dict]:
    """Each component's Asset event metadata from the verify step's result (tokens, fingerprint, manifest)."""
    verified = VerifySummary.model_validate(result)
    return {asset_name(DOMAIN if s.role == "domain" else name): {
        "fingerprint": s.fingerprint, "location": s.out_root, "manifest": s.manifest, "component": name,
        "train_tokens": s.train_tokens, "val_tokens": s.val_tokens, "epochs": s.epochs,
        "plan_fingerprint": verified.plan_fingerprint, "report": verified.report}
        for name, s in verified.subsets.items()}


def train_extras(result: dict) -> dict[str, dict]:
    """The checkpoint Asset's event metadata from the train step's result."""
    trained = TrainResult.model_validate(result)
    return {asset_name(CHECKPOINT): trained.model_dump(include={
        "run_name", "run_folder", "checkpoint", "hf_export", "run_manifest", "plan_fingerprint", "final_step",
        "train_tokens", "status"})}


def evaluate_extras(result: dict) -> dict[str, dict]:
    """The evaluation Asset's event metadata (report, fingerprints, headline) from the evaluate step's result."""
    evaluated = EvaluateResult.model_validate(result)
    return {asset_name(EVAL): {**evaluated.model_dump(include={
        "report", "eval_fingerprint", "plan_fingerprint", "run_folder", "hf_export", "status"}),
        **evaluated.headline}}


def location_dataset(location: str) -> tuple[str, str]:
    """(namespace, name) of an OpenLineage dataset at a storage location (s3://b/k, gs://b/k or a path)."""
    parsed = parse_url(location)
    if parsed.remote:
        return f"{parsed.scheme}://{parsed.bucket}", parsed.key
    return "file", location.rstrip("/")


def source_dataset(source: SourceInfo) -> tuple[str, str]:
    """(namespace, name) of a conversion's source: a hub dataset's subset, or a local folder."""
    if source.kind == "hub":
        name = f"{source.dataset}/{source.subset or ''}".rstrip("/")
        return "huggingface", f"{name}@{source.revision}" if source.revision else name
    return location_dataset(f"{source.dataset}/data/{source.subset or ''}".rstrip("/"))


def plan_lineage(result: list, upstream: dict | None = None) -> tuple[Pairs, Pairs]:
    """The plan: the replay sweep's report its replay fraction came from in (replay_fraction 'recommended'), the
    plan out."""
    entries = [PlanEntry.model_validate(entry) for entry in result]
    swept = sorted({e.replay_from for e in entries if e.replay_from})
    written = sorted({e.plan for e in entries if e.plan})
    return [location_dataset(x) for x in swept], [location_dataset(x) for x in written]


def convert_lineage(result: dict, upstream: dict | None = None) -> tuple[Pairs, Pairs]:
    """A conversion: its source in, its MDS folder out."""
    converted = ConvertSummary.model_validate(result)
    return [source_dataset(converted.source)], [location_dataset(converted.out_root)]


def verify_lineage(result: dict, upstream: dict | None = None) -> tuple[Pairs, Pairs]:
    """Verification: every component's MDS folder in, the report out."""
    report = VerifySummary.model_validate(result)
    return [location_dataset(s.out_root) for s in report.subsets.values()], [location_dataset(report.report)]


def train_lineage(result: dict, upstream: dict | None = None) -> tuple[Pairs, Pairs]:
    """Training: the verified data in (``upstream``: the verify step's result), the run folder out."""
    data = VerifySummary.model_validate(upstream).subsets.values() if upstream else []
    return ([location_dataset(s.out_root) for s in data],
            [location_dataset(TrainResult.model_validate(result).run_folder)])


def evaluate_lineage(result: dict, upstream: dict | None = None) -> tuple[Pairs, Pairs]:
    """Evaluation: the trained model, the val splits and the task files in, the report out."""
    evaluated = EvaluateResult.model_validate(result)
    inputs = [evaluated.hf_export, *evaluated.val_splits, *evaluated.task_files]
    return [location_dataset(x) for x in inputs if "://" not in x or parse_url(x).remote], \
        [location_dataset(evaluated.report)]


def recommend_lineage(result: dict, upstream: dict | None = None) -> tuple[Pairs, Pairs]:
    """The replay sweep's recommendation: the proxy runs' folders in, the report and the pointer out."""
    swept = SweepResult.model_validate(result)
    outputs = [swept.report, *([swept.pointer] if swept.pointer else [])]
    return [location_dataset(f) for f in swept.run_folders], [location_dataset(x) for x in outputs]


def recommend_extras(result: dict) -> dict[str, dict]:
    """The recommendation Asset's event metadata: the fraction (or why none), the corpus, the report."""
    swept = SweepResult.model_validate(result)
    return {asset_name(RECOMMENDATION): swept.model_dump(include={
        "status", "fraction", "reason", "report", "pointer", "corpus_key", "plan_fingerprint"})}


def operator_lineage(lineage: Lineage | None, result: dict | None, upstream: dict | None = None):
    """OpenLineage's OperatorLineage for a finished step (None before the step produced a result, or for a step
    without lineage)."""
    if not result or lineage is None:
        return None
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    inputs, outputs = lineage(result, upstream)
    return OperatorLineage(inputs=[Dataset(namespace=n, name=m) for n, m in inputs],
                           outputs=[Dataset(namespace=n, name=m) for n, m in outputs])
