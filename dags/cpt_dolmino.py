"""
### cpt_dolmino: continual pretraining on the Dolmino mix

**plan** → **convert** (one task per subset, or per part of a big one) → **verify** → **train** → **evaluate**, each step running
`cpt-tasks` in its own pod (`CPT_RUNNER=kubernetes`) or as a local process (`CPT_RUNNER=local`, the demo and CI).

* **plan** derives every subset's token budget from *Total train tokens* and the *Proportions*, and a
  fingerprint of everything that determines each subset's bytes.
* **convert** tokenizes one subset with the *Tokenizer* (Llama 3.1's by default) into fixed-length MDS rows; a
  subset beyond *Tokens per convert part* converts in parts (`dclm/0`, `dclm/1`, …), merged by the last one.
  A subset already converted with the same fingerprint is **skipped** (already complete), so a scheduled refresh
  with unchanged sources converts nothing.
* **verify** checks every subset's shards, counts and mix against the plan before any GPU is spent.
* **train** continues pretraining with Composer + LLM-Foundry on the verified mix, one process per GPU;
  retries resume from the latest checkpoint. With *Train* = `if_changed` it is skipped when this exact data
  has already been trained on.
* **evaluate** compares the trained model with the one it started from, alike: held-out loss and perplexity on
  every subset's val split, and ICL tasks (*ICL tasks*: held-out next word by default, or a gauntlet task list).
  The report (`eval-report.json`/`.md`/`.png`) lands beside the run's checkpoints. With *Evaluate* = `if_trained`
  it is skipped when training was. Train and evaluate log to MLflow; their task pages link to their runs.

Exit status 2 (bad input) and 3 (bad data) fail a step at once; other failures retry with backoff.
Assets: `cpt_dolmino/<subset>` for each subset of the run's plan and `cpt_dolmino/domain` for your corpus when the
plan has one (from verify, through the alias `cpt_dolmino/verified`: no event for a component the run left out),
`cpt_dolmino/checkpoint` (from train) and `cpt_dolmino/eval` (from evaluate).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetAlias, TriggerRule

from cpt_tasks.layout import safe_run_id
from cpt_pipeline.lineage import CHECKPOINT, EVAL, VERIFIED, asset_name
from cpt_pipeline.params import build_params
from cpt_pipeline.runners import make_operator
from cpt_pipeline.settings import Deployment
from cpt_pipeline.steps import convert_kwargs, step
from cpt_tasks.jobs import SAFE_RUN_ID_FILTER

DEPLOYMENT = Deployment.from_env()
VERIFIED_DATA = AssetAlias(name=asset_name(VERIFIED))  # an event for each component this run's plan holds
CHECKPOINT_ASSET = Asset(name=asset_name(CHECKPOINT))
EVAL_ASSET = Asset(name=asset_name(EVAL))

with DAG(
    dag_id="cpt_dolmino",
    description="Plan, convert, verify and continue pretraining on the Dolmino mix",
    doc_md=__doc__,
    schedule=DEPLOYMENT.schedule,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["cpt", "llm-foundry", "dolmino"],
    params=build_params(DEPLOYMENT.storage_root, DEPLOYMENT.load_param_defaults()),
    user_defined_filters={SAFE_RUN_ID_FILTER: safe_run_id},
    default_args=DEPLOYMENT.default_args(),
):
    plan = make_operator(step("plan"), DEPLOYMENT)

    convert = make_operator(
        step("convert"), DEPLOYMENT, partial=True, map_index_template="{{ subset }}",
        max_active_tis_per_dagrun=DEPLOYMENT.max_active_convert,
    ).expand_kwargs(plan.output.map(convert_kwargs))

    verify = make_operator(
        step("verify"), DEPLOYMENT, trigger_rule=TriggerRule.NONE_FAILED, outlets=[VERIFIED_DATA],
    )

    train = make_operator(step("train"), DEPLOYMENT, outlets=[CHECKPOINT_ASSET])

    # none_failed: a skipped train still reaches the gate, which decides (Param evaluate)
    evaluate = make_operator(
        step("evaluate"), DEPLOYMENT, trigger_rule=TriggerRule.NONE_FAILED, outlets=[EVAL_ASSET],
    )

    plan >> convert >> verify >> train >> evaluate
