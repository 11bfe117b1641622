"""What a run trains on, resolved and checked once before any process starts: the verification report (never
a plan), the data manifests it names and the framing they recorded, the tokenizer the data was made with,
and the pretrained model (staged locally), with the run layer's checks (``cpt_tasks.runs.staging``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpt_tasks.documents.convert_docs import Framing
from cpt_tasks.documents.train_docs import ConsumedData, ModelSource
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.runs.staging import check_data, check_model, resolve_tokenizer, stage_model
from cpt_tasks.configs.train_config import TrainConfig


@dataclass(frozen=True)
class TrainInputs:
    """Everything a run reads, checked: the data as verified, the tokenizer and the staged model."""

    report: VerifyReport
    report_sha256: str
    data: list[ConsumedData]
    framing: Framing
    tokenizer_dir: Path
    vocab_size: int
    model_dir: Path
    model: ModelSource
    model_config: dict


def resolve_inputs(cfg: TrainConfig, report: VerifyReport, report_sha256: str, cache: Path) -> TrainInputs:
    """Check the data, the tokenizer and the model against the report; stage the model under ``cache``."""
    data, framing = check_data(report)
    tokenizer_dir, vocab_size = resolve_tokenizer(report, framing)
    model_dir, model = stage_model(cfg.model, cfg.model_revision, cache / "models")
    model_config = check_model(model_dir, vocab_size, report.concat_tokens, cfg.model)
    return TrainInputs(report=report, report_sha256=report_sha256, data=data, framing=framing,
                       tokenizer_dir=tokenizer_dir, vocab_size=vocab_size, model_dir=model_dir, model=model,
                       model_config=model_config)
