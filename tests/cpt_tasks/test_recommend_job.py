"""``cpt-tasks recommend`` on what it refuses: a plan that is not a sweep's, and a sweep whose proxy runs did not
finish (the DAG test tests/dags/test_replay_sweep.py runs it on a real sweep)."""

import pytest
from conftest import call_cli

from cpt_local.samples.code_corpus import write_domain_sample
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.recommend_config import RecommendConfig
from cpt_tasks.documents import write_document
from cpt_tasks.errors import UserError
from cpt_tasks.plan.plan_job import plan
from cpt_tasks.sweep.recommend_job import recommend_sweep

PLAN = dict(subsets=["wiki", "math"], concat_tokens=128, val_fraction=0.01, domain_text_field="content",
            overrides={"wiki": {"val_tokens": 128}, "math": {"val_tokens": 128}}, num_workers=0, total_tokens=40_000)


@pytest.fixture(scope="module")
def plans(tmp_path_factory, sample_dir, small_tokenizer_dir):
    root = tmp_path_factory.mktemp("recommend")
    write_domain_sample(root / "code", "python", documents=60)
    written = {}
    for name, extra in (("sweep", {"sweep_fractions": [0, 0.5]}), ("plain", {"replay_fraction": 0.25})):
        body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(small_tokenizer_dir), domain=str(root / "code"),
                               out_root=str(root / "data"), **PLAN, **extra))
        written[name] = str(root / name / "plan.json")
        write_document(written[name], body)
    return written


def test_a_plan_that_is_not_a_sweep_s_is_refused(plans, tmp_path):
    with pytest.raises(UserError, match=r"not a replay sweep's plan \(no sweep_fractions\)"):
        recommend_sweep(RecommendConfig(plan=plans["plain"], save_root=str(tmp_path), run_id="r"))


def test_a_fraction_without_its_finished_proxy_run_is_named(plans, tmp_path):
    proc = call_cli("recommend", "--plan", plans["sweep"], "--save_root", tmp_path, "--run_id", "sweep-1",
                    "--sweeps_root", tmp_path / "sweeps")
    assert proc.returncode == 2, proc.stderr
    assert "replay fraction 0 (run sweep-1-replay-0): no finished training run" in proc.stderr
    assert not (tmp_path / "sweeps").exists()  # no pointer without a report
