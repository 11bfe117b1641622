"""
### cpt_replay_sweep: how much replay does your corpus need?

Short **proxy runs**, one per replay fraction, measure what each fraction gains on your corpus and what it keeps
from being forgotten, before the big run (`cpt_dolmino`) spends its GPUs.

**plan** → **convert** (one task per component, or per part of a big one) → **verify** → **proxy_runs** → **train** (one task per replay
fraction) → **evaluate** (one per fraction) → **recommend**.

* **plan** budgets *Tokens per proxy run* for every fraction of *Replay fractions* and converts each component
  **once**, at the largest budget any fraction needs; each proxy run draws its own rows from that data.
* **train** continues the *Proxy model* (same tokenizer as the big run) on one fraction's draw; **evaluate**
  compares it with the proxy model it started from, like `cpt_dolmino`'s evaluation.
* **recommend** fits forgetting against the fraction and recommends the smallest fraction whose predicted
  forgetting stays within *Forgetting tolerance*, or says why it cannot (too noisy, not monotone, none within the
  tolerance): `sweep-report.json`/`.md` and `sweep.png` beside the plan, and the corpus's sweep pointer, which
  `cpt_dolmino` reads with `replay_fraction: "recommended"`. Asset: `cpt_dolmino/replay_recommendation`.

Every proxy run is tracked in MLflow under one parent run for the sweep.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, TriggerRule

from cpt_pipeline.dag_shapes import REPLAY_SWEEP
from cpt_pipeline.lineage import RECOMMENDATION, asset_name
from cpt_pipeline.params import build_params
from cpt_pipeline.proxy_runs import ProxyRunsOperator
from cpt_pipeline.runners import make_operator
from cpt_pipeline.settings import Deployment
from cpt_pipeline.steps import convert_kwargs, proxy_evaluate_kwargs, proxy_templates, proxy_train_kwargs, step
from cpt_tasks.jobs import SAFE_RUN_ID_FILTER
from cpt_tasks.layout import safe_run_id

DEPLOYMENT = Deployment.from_env()
RECOMMENDATION_ASSET = Asset(name=asset_name(RECOMMENDATION))

with DAG(
    dag_id=REPLAY_SWEEP.dag_id,
    description="Proxy runs sweep the replay fraction for your corpus and recommend one",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["cpt", "llm-foundry", "replay-sweep"],
    params=build_params(DEPLOYMENT.storage_root, DEPLOYMENT.load_param_defaults(), REPLAY_SWEEP),
    user_defined_filters={SAFE_RUN_ID_FILTER: safe_run_id},
    default_args=DEPLOYMENT.default_args(),
):
    plan = make_operator(step("plan", REPLAY_SWEEP), DEPLOYMENT)

    convert = make_operator(
        step("convert", REPLAY_SWEEP), DEPLOYMENT, partial=True, map_index_template="{{ subset }}",
        max_active_tis_per_dagrun=DEPLOYMENT.max_active_convert,
    ).expand_kwargs(plan.output.map(convert_kwargs))

    verify = make_operator(step("verify", REPLAY_SWEEP), DEPLOYMENT, trigger_rule=TriggerRule.NONE_FAILED)

    proxy_runs = ProxyRunsOperator(task_id="proxy_runs", templates=proxy_templates(REPLAY_SWEEP))

    train = make_operator(
        step("train", REPLAY_SWEEP), DEPLOYMENT, partial=True, map_index_template="replay {{ fraction }}",
    ).expand_kwargs(proxy_runs.output.map(proxy_train_kwargs))

    evaluate = make_operator(
        step("evaluate", REPLAY_SWEEP), DEPLOYMENT, partial=True, map_index_template="replay {{ fraction }}",
    ).expand_kwargs(proxy_runs.output.map(proxy_evaluate_kwargs))

    recommend = make_operator(step("recommend", REPLAY_SWEEP), DEPLOYMENT, outlets=[RECOMMENDATION_ASSET])

    plan >> convert >> verify >> proxy_runs >> train >> evaluate >> recommend
