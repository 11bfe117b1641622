"""``EvaluateConfig``: the arguments of ``cpt-tasks evaluate`` (light core: no heavy imports)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel

DEFAULT_TASKS, NO_TASKS = "default", "none"


class EvaluateConfig(StrictModel):
    """Arguments of ``cpt-tasks evaluate``."""

    report: str = Field(description="The verify-report.json of the data the run trained on (local path or URL); "
                        "its val splits are the held-out data")
    save_root: str = Field(description="Where training runs are (the train step's --save_root)")
    run_id: str | None = Field(None, description="The pipeline run id: evaluate the training run of this plan and "
                               "run id if it finished, else the plan's newest finished run")
    run_manifest: str | None = Field(None, description="Evaluate exactly this training run (its "
                                     "run-manifest.json); overrides --run_id")
    base_model: str | None = Field(None, description="The model to compare with (default: the one the run "
                                   "started from, as its manifest records)")
    base_model_revision: str | None = Field(None, description="Hub revision of --base_model")
    icl_tasks: str = Field(DEFAULT_TASKS, min_length=1, description="ICL tasks: default (held-out next word of "
                           "each subset's val documents), none, or a task list in LLM-Foundry's icl_tasks format "
                           "(a gauntlet YAML: local path, s3:// or gs://)")
    icl_data_root: str | None = Field(None, description="Folder that relative dataset_uri values of the task list "
                                      "are resolved against (default: the task list's own folder)")
    max_icl_examples: int = Field(500, ge=1, description="Examples per subset in the default tasks, spread evenly "
                                  "over the val documents")
    device_eval_batch_size: int = Field(8, ge=1, description="Rows (loss) and examples (ICL) per eval batch")
    eval_subset_num_batches: int = Field(-1, ge=-1, description="Val batches per subset (-1: the whole val split)")
    icl_subset_num_batches: int | None = Field(None, ge=1, description="Batches per ICL task (default: all)")
    precision: Literal["auto", "amp_bf16", "fp32"] = Field("auto", description="auto: amp_bf16 on GPU, fp32 on CPU")
    local_dir: str | None = Field(None, description="Local scratch for the models, data cache and the evaluation "
                                  "process's files (default: $TMPDIR/cpt-evaluate)")
