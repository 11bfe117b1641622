"""``VerifyConfig``: the inputs of ``cpt-tasks verify`` (light core)."""

from __future__ import annotations

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel
from cpt_tasks.configs.convert_config import default_workers


class VerifyConfig(StrictModel):
    """Arguments of ``cpt-tasks verify``."""

    plan: str = Field(description="The plan JSON written by `cpt-tasks plan` (local path or URL)")
    report_dir: str | None = Field(None, description="Where to write the report (default: beside the plan)")
    spot_checks: int = Field(8, ge=0, description="Rows decoded back to text per subset")
    save_root: str | None = Field(None, description="Checkpoint root of `cpt-tasks train`: also report whether "
                                  "this plan was already trained on there (the DAG then skips training)")
    num_workers: int = Field(default_factory=default_workers, ge=0, description="Processes reading shards")
