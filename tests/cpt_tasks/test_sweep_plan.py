"""The plan and verify side of a replay sweep (issue 27): the corpus key, a sweep's plan (each component converted
once at its largest budget, each proxy run's draw), its verification, and ``replay_fraction: "recommended"``."""

import hashlib
import json
from decimal import Decimal

import pytest
from conftest import call_cli, edit_plan

from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.documents import write_document
from cpt_tasks.documents.plan_docs import SweepRef
from cpt_tasks.documents.sweep_docs import SweepPointer
from cpt_tasks.errors import UserError
from cpt_tasks.layout import sweep_pointer
from cpt_tasks.plan.plan_job import format_plan, plan
from cpt_local.samples.code_corpus import write_domain_sample
from cpt_tasks.verify.verify_job import verify

CONCAT = 128
# two replay subsets of the sample beside a small Python corpus (60 documents, ~18k tokens in the small tokenizer:
# repeated at these totals), one val row per replay subset
BASE = dict(subsets=["wiki", "math"], concat_tokens=CONCAT, val_fraction=0.01, domain_text_field="content",
            overrides={"wiki": {"val_tokens": CONCAT}, "math": {"val_tokens": CONCAT}}, num_workers=0)
FRACTIONS = [0.5, 0, 0.1]  # given unsorted: the plan sorts them


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "code"
    write_domain_sample(out, "python", documents=60)
    return out


def _plan(sample_dir, tokenizer, corpus, out_root="/tmp/never-written", **kwargs):
    return plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer), out_root=str(out_root),
                           domain=str(corpus), **{**BASE, "total_tokens": 40_000, **kwargs}))


def _exact(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))


def _pointer(root, key, **fields) -> str:
    location = sweep_pointer(str(root), key)
    write_document(location, SweepPointer(**{
        "corpus_key": key, "status": "recommended", "fraction": 0.1, "reason": "the smallest fraction within 2%",
        "report": "/sweeps/run-1/sweep-report.json", "sweep_run": "run-1", "mix": "dolmino-mix-1124",
        "tokenizer": "small", "created_at": "2026-12-05T00:00:00+00:00", **fields}))
    return location


# --- the corpus key -----------------------------------------------------------------------------------------------

def test_the_corpus_key_is_the_corpus_with_its_mix_and_tokenizer(sample_dir, small_tokenizer_dir, tokenizer_dir,
                                                                  corpus, tmp_path):
    body = _plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction=0.25)
    files = sorted(p for p in corpus.iterdir() if p.suffix == ".jsonl")
    recipe = {"recipe": 1,
              "corpus": {"source": {"files": [{"path": p.name, "size": p.stat().st_size, "algorithm": "sha256",
                                               "digest": hashlib.sha256(p.read_bytes()).hexdigest()}
                                              for p in files]},
                         "subset": None, "text_field": "content"},
              "mix": {"name": "dolmino-mix-1124", "version": 1, "proportions": body.mix.proportions},
              "tokenizer": body.tokenizer.sha256}
    assert body.corpus_key == hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":"))
                                             .encode()).hexdigest()
    # not the run's size, replay, rows or sweep: a sweep and the big run share it
    same = [_plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction=0.1, total_tokens=60_000),
            _plan(sample_dir, small_tokenizer_dir, corpus, concat_tokens=256, total_tokens=80_000, val_fraction=0.02,
                  overrides={"wiki": {"val_tokens": 256}, "math": {"val_tokens": 256}}),
            _plan(sample_dir, small_tokenizer_dir, corpus, sweep_fractions=FRACTIONS)]
    assert {b.corpus_key for b in same} == {body.corpus_key}
    # a copy of the corpus elsewhere is the same corpus
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in files:
        (copy / p.name).write_bytes(p.read_bytes())
    assert _plan(sample_dir, small_tokenizer_dir, copy).corpus_key == body.corpus_key
    # another corpus, mix or tokenizer is another key
    (copy / files[0].name).write_text(files[0].read_text() + json.dumps({"content": "def more(): pass"}) + "\n")
    other = [_plan(sample_dir, small_tokenizer_dir, copy),
             _plan(sample_dir, small_tokenizer_dir, corpus, subsets=["wiki", "math", "flan"],
                   overrides={n: {"val_tokens": CONCAT} for n in ("wiki", "math", "flan")}),
             _plan(sample_dir, tokenizer_dir, corpus, total_tokens=100_000, max_domain_epochs=10)]
    keys = [b.corpus_key for b in other]
    assert len(set(keys)) == 3 and body.corpus_key not in keys
    mixed = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(small_tokenizer_dir), out_root="/tmp/x",
                            subsets=["wiki"], total_tokens=40_000, concat_tokens=CONCAT, val_fraction=0))
    assert mixed.corpus_key is None  # no domain: no key


# --- a sweep's plan ----------------------------------------------------------------------------------------------

def test_a_sweep_converts_each_component_at_its_largest_budget_and_each_draw_is_a_plan_at_its_fraction(
        sample_dir, small_tokenizer_dir, corpus):
    body = _plan(sample_dir, small_tokenizer_dir, corpus, sweep_fractions=FRACTIONS, replay_fraction=0.3)
    assert body.replay_fraction is None and body.replay_from is None and body.max_domain_epochs == 4
    assert body.sweep.fractions == [0, 0.1, 0.5] == [d.fraction for d in body.sweep.draws]
    got = {s.name: s for s in body.subsets}
    assert list(got) == ["wiki", "math", "domain"]
    at = {f: {s.name: s for s in _plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction=f).subsets}
          for f in (0.1, 0.5)}
    for name in ("wiki", "math"):  # replay: the largest fraction's budget
        assert got[name].convert.max_tokens == at[0.5][name].max_tokens
        assert got[name].max_tokens > at[0.1][name].max_tokens and got[name].val_tokens == CONCAT
    domain = got["domain"]  # the smallest fraction's (0: the whole total), may repeat: the corpus is small
    assert domain.repeat.budget_tokens == 40_000 and domain.val_tokens == _exact(Decimal(40_000) * Decimal("0.01"))
    assert domain.convert.val_first and domain.max_tokens == 40_000 and domain.repeat.estimated
    assert 1 < domain.repeat.epochs <= 4  # the plan's estimate; verify counts the real ones
    for draw in body.sweep.draws:
        if draw.fraction == 0:
            assert draw.rows == {"wiki": 0, "math": 0, "domain": 40_000 // CONCAT}
            continue
        planned = at[draw.fraction]
        want = {name: (s.repeat.budget_rows if s.repeat else s.train_rows) for name, s in planned.items()}
        assert draw.rows == want, draw.fraction
        assert draw.rows["domain"] == _exact((1 - Decimal(str(draw.fraction))) * 40_000) // CONCAT
        # a draw of the repeated corpus exceeds the rows it is estimated to hold
        assert draw.rows["domain"] > domain.repeat.budget_rows / domain.repeat.epochs
    text = format_plan(body)
    for draw in body.sweep.draws:
        line = next(line for line in text.splitlines() if line.startswith(f"  replay {draw.fraction:g} "))
        assert all(f"{name} {rows:,}" in line for name, rows in draw.rows.items()), line


def test_a_sweep_needs_a_domain_distinct_fractions_and_a_row_for_every_component_it_trains(
        sample_dir, small_tokenizer_dir, corpus):
    with pytest.raises(UserError, match="--sweep_fractions: .*give --domain"):
        plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(small_tokenizer_dir), out_root="/tmp/x",
                        subsets=["wiki"], total_tokens=40_000, concat_tokens=CONCAT, sweep_fractions=[0.1]))
    with pytest.raises(ValueError, match="duplicate fractions: 0.1"):
        PlanConfig(out_root="-", domain="x", sweep_fractions=[0.1, 0.2, 0.1])
    with pytest.raises(UserError, match="at least one fraction above 0"):
        _plan(sample_dir, small_tokenizer_dir, corpus, sweep_fractions=[0])
    with pytest.raises(UserError) as err:  # wiki's share of 0.01 × 40,000 is less than one row
        _plan(sample_dir, small_tokenizer_dir, corpus, sweep_fractions=[0, 0.01, 0.5])
    share = _plan(sample_dir, small_tokenizer_dir, corpus).mix.proportions["wiki"]
    wiki = _exact(Decimal("0.01") * 40_000 * Decimal(str(share)))
    assert wiki < CONCAT and (f"--sweep_fractions 0.01: subset wiki's train budget at this replay fraction, {wiki} "
                              f"tokens, is smaller than one row of {CONCAT}") in str(err.value), str(err.value)
    assert "leave 0.01 out of --sweep_fractions" in str(err.value)
    smallest = int(str(err.value).split("raise --total_tokens to ")[1].split(" ")[0].replace(",", ""))
    _plan(sample_dir, small_tokenizer_dir, corpus, sweep_fractions=[0, 0.01, 0.5], total_tokens=smallest,
          max_domain_epochs=1000)
    with pytest.raises(UserError):
        _plan(sample_dir, small_tokenizer_dir, corpus, sweep_fractions=[0, 0.01, 0.5], total_tokens=smallest - 1,
              max_domain_epochs=1000)


# --- verification -------------------------------------------------------------------------------------------------

def test_verify_checks_every_draw_against_the_converted_rows(sample_dir, small_tokenizer_dir, corpus, tmp_path):
    body = _plan(sample_dir, small_tokenizer_dir, corpus, tmp_path / "data", sweep_fractions=FRACTIONS)
    location = str(tmp_path / "plan.json")
    write_document(location, body)
    for sub in body.subsets:
        convert(sub.convert, progress_interval=0)
    result = verify(VerifyConfig(plan=location, num_workers=0))
    assert result.ok, [c for s in result.report.subsets for c in s.checks if not c.ok]
    assert result.report.sweep == body.sweep
    for s in result.report.subsets:
        assert [c.check for c in s.checks if c.check.startswith("sweep:")] == ["sweep:0", "sweep:0.1", "sweep:0.5"]
    assert "Replay sweep" in (tmp_path / "verify-report.md").read_text()
    domain = body.subset("domain")
    too_many = int(domain.train_rows * body.max_domain_epochs) + 1

    def overdraw(plan_body):
        draws = {d.fraction: d for d in plan_body.sweep.draws}
        draws[0.1].rows["domain"] = too_many
        draws[0.5].rows["math"] = body.subset("math").train_rows + 1

    edit_plan(location, overdraw)
    proc = call_cli("verify", "--plan", location, "--num_workers", 0)
    assert proc.returncode == 3, proc.stderr
    assert "Verification FAILED" in proc.stdout
    failed = [line for line in proc.stdout.splitlines() if "sweep:" in line and "more than" in line]
    assert len(failed) == 2, proc.stdout
    assert any(line.startswith("| domain") and "sweep:0.1" in line and f"draws {too_many:,} rows" in line
               for line in failed), failed
    assert any(line.startswith("| math") and "sweep:0.5" in line for line in failed), failed


# --- replay_fraction "recommended" --------------------------------------------------------------------------------

def test_recommended_without_a_sweep_exits_2_naming_what_to_run(sample_dir, small_tokenizer_dir, corpus, tmp_path):
    key = _plan(sample_dir, small_tokenizer_dir, corpus).corpus_key
    args = ["plan", "--dataset", sample_dir, "--tokenizer", small_tokenizer_dir, "--out_root", tmp_path / "out",
            "--domain", corpus, "--domain_text_field", "content", "--subsets", "wiki", "math", "--total_tokens",
            40_000, "--concat_tokens", CONCAT, "--val_fraction", 0.01, "--overrides", json.dumps(BASE["overrides"]),
            "--num_workers", 0, "--replay_fraction", "recommended"]
    proc = call_cli(*args, "--sweeps_root", tmp_path / "sweeps")
    assert proc.returncode == 2, proc.stderr
    said = proc.stderr
    assert "no replay sweep exists for this corpus with this mix and tokenizer" in said, said
    assert f"corpus key {key}" in said and "mix dolmino-mix-1124" in said and f"tokenizer {small_tokenizer_dir}" \
        in said, said
    assert f"looked for {tmp_path / 'sweeps' / (key + '.json')}" in said, said
    assert "Run the DAG cpt_replay_sweep with the same domain, mix and tokenizer (locally: make demo-sweep)" in said
    assert "or give --replay_fraction as a number" in said
    proc = call_cli(*args)
    assert proc.returncode == 2 and "give --sweeps_root" in proc.stderr, proc.stderr
    proc = call_cli("plan", "--dataset", sample_dir, "--tokenizer", small_tokenizer_dir, "--out_root",
                    tmp_path / "out", "--replay_fraction", "recommended", "--sweeps_root", tmp_path / "sweeps")
    assert proc.returncode == 2 and "--replay_fraction recommended" in proc.stderr and "give --domain" in proc.stderr


def test_recommended_plans_at_the_sweeps_fraction_and_says_where_it_came_from(sample_dir, small_tokenizer_dir,
                                                                             corpus, tmp_path):
    numeric = _plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction=0.1)
    location = _pointer(tmp_path / "sweeps", numeric.corpus_key)
    args = ["plan", "--dataset", sample_dir, "--tokenizer", small_tokenizer_dir, "--out_root", "/tmp/never-written",
            "--domain", corpus, "--domain_text_field", "content", "--subsets", "wiki", "math", "--total_tokens",
            40_000, "--concat_tokens", CONCAT, "--val_fraction", 0.01, "--overrides", json.dumps(BASE["overrides"]),
            "--num_workers", 0, "--replay_fraction", "recommended", "--sweeps_root", tmp_path / "sweeps"]
    proc = call_cli(*args, check=True)
    body = json.loads(proc.stdout)
    assert body["replay_fraction"] == 0.1 and body["corpus_key"] == numeric.corpus_key
    assert SweepRef(**body["replay_from"]) == SweepRef(pointer=location, report="/sweeps/run-1/sweep-report.json",
                                                       fraction=0.1, sweep_run="run-1")
    assert [(s["name"], s["fingerprint"]) for s in body["subsets"]] == [(s.name, s.fingerprint)
                                                                         for s in numeric.subsets]
    assert "replay fraction 0.1 (recommended by the replay sweep run-1, /sweeps/run-1/sweep-report.json)" \
        in proc.stderr, proc.stderr


def test_a_recommended_fraction_of_0_leaves_the_mix_out(sample_dir, small_tokenizer_dir, corpus, tmp_path):
    key = _plan(sample_dir, small_tokenizer_dir, corpus).corpus_key
    _pointer(tmp_path, key, fraction=0.0, reason="no replay keeps forgetting within 2%")
    body = _plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction="recommended", sweeps_root=str(tmp_path))
    assert body.replay_fraction == 0 and body.replay_from.fraction == 0
    assert [(s.name, s.proportion) for s in body.subsets] == [("domain", 1.0)]
    assert body.subset("domain").repeat.budget_tokens == 40_000 and body.corpus_key == key
    assert "the mix's subsets are left out" in format_plan(body)


@pytest.mark.parametrize("status", ["too_noisy", "none_within_tolerance"])
def test_a_sweep_without_a_recommendation_is_refused_with_its_reason(sample_dir, small_tokenizer_dir, corpus,
                                                                     tmp_path, status):
    key = _plan(sample_dir, small_tokenizer_dir, corpus).corpus_key
    _pointer(tmp_path, key, status=status, fraction=None, reason="the points scatter more than they fall")
    with pytest.raises(UserError) as err:
        _plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction="recommended", sweeps_root=str(tmp_path))
    said = str(err.value)
    assert f"the replay sweep run-1 recommends no replay fraction for this corpus ({status})" in said, said
    assert '"the points scatter more than they fall"' in said and "/sweeps/run-1/sweep-report.json" in said, said


@pytest.mark.s3
def test_the_pointer_is_read_from_object_storage(sample_dir, small_tokenizer_dir, corpus, s3_server):
    key = _plan(sample_dir, small_tokenizer_dir, corpus).corpus_key
    location = _pointer("s3://cpt/sweeps", key, fraction=0.5)
    body = _plan(sample_dir, small_tokenizer_dir, corpus, replay_fraction="recommended", sweeps_root="s3://cpt/sweeps")
    assert body.replay_fraction == 0.5 and body.replay_from.pointer == location == f"s3://cpt/sweeps/{key}.json"
