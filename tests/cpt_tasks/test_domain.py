"""Continual pretraining on your own corpus: a domain component beside the replay mix, multi-source mix files,
short corpora repeated up to max_domain_epochs, bad domains refused before conversion, and gain/forgetting."""

import json
from decimal import Decimal

import numpy as np
import pytest
from conftest import call_cli, read_rows

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.documents import write_document
from cpt_tasks.documents.evaluate_docs import EvalWorkerOutcome, MetricValue
from cpt_tasks.errors import UserError
from cpt_tasks.evaluate.eval_report import compare, cpt_summary
from cpt_tasks.mix import load_mix
from cpt_tasks.plan.plan_job import plan
from cpt_local.samples.code_corpus import write_domain_sample
from cpt_tasks.train.train_yaml import _data, train_length
from cpt_tasks.verify.verify_job import verify

DOLMINO = load_mix("dolmino-mix-1124").proportions


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    """The demo's domain corpus (stdlib code, text in 'content'), 2,000 documents (~700k tokens)."""
    out = tmp_path_factory.mktemp("code")
    write_domain_sample(out, "python", documents=2000)
    return out


def _plan(sample_dir, tokenizer_dir, **kwargs):
    return plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/never-written",
                           num_workers=0, **kwargs))


def _exact(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5, 0.123])
def test_domain_and_replay_budgets_are_exact(sample_dir, tokenizer_dir, code_dir, fraction):
    body = _plan(sample_dir, tokenizer_dir, domain=str(code_dir), domain_text_field="content",
                 replay_fraction=fraction, total_tokens=400_000, concat_tokens=128, val_fraction=0, shuffle=False)
    got = {s.name: s for s in body.subsets}
    assert list(got) == [*DOLMINO, "domain"]
    domain = got["domain"]
    assert domain.role == "domain" and domain.repeat is None and domain.convert.text_field == "content"
    assert domain.max_tokens == _exact((1 - Decimal(str(fraction))) * 400_000)
    for name, proportion in DOLMINO.items():
        want = _exact(Decimal(str(fraction)) * 400_000 * Decimal(str(proportion)))
        assert (got[name].max_tokens, got[name].role) == (want, "replay"), name
    if fraction == 0.25:
        assert domain.max_tokens == 300_000 and got["dclm"].max_tokens == 47_200
    assert body.replay_fraction == fraction and body.max_domain_epochs == 4


def test_val_tokens_follow_val_fraction_for_every_component(sample_dir, tokenizer_dir, code_dir):
    body = _plan(sample_dir, tokenizer_dir, domain=str(code_dir), domain_text_field="content",
                 total_tokens=40_000_000, concat_tokens=128, val_fraction=0.001, shuffle=False,
                 subsets=["dclm"], domain_name="code", max_domain_epochs=1000)
    for s in body.subsets:
        budget = s.repeat.budget_tokens if s.repeat else s.max_tokens
        assert s.val_tokens == _exact(Decimal(budget) * Decimal("0.001"))
    assert [s.name for s in body.subsets] == ["dclm", "code"]


def test_a_plan_without_domain_is_todays(sample_dir, tokenizer_dir):
    body = _plan(sample_dir, tokenizer_dir, total_tokens=1_000_000, concat_tokens=512, val_fraction=0)
    assert body.replay_fraction is None and body.max_domain_epochs is None
    assert body.corpus_key is None and body.sweep is None and body.replay_from is None
    assert all(s.role == "replay" and s.repeat is None for s in body.subsets)
    dumped = body.model_dump(mode="json", exclude={"fingerprint", "created_at", "code_version", "replay_fraction",
                                                   "max_domain_epochs", "corpus_key", "sweep", "replay_from"})
    for s in dumped["subsets"]:
        del s["role"], s["repeat"]
    import hashlib
    assert body.fingerprint == hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


def test_a_multi_source_mix_file_gives_each_component_its_source_and_exact_budget(sample_dir, tokenizer_dir,
                                                                                     code_dir, tmp_path):
    mix = {"name": "code-and-wiki", "version": 3, "components": {
        "code": {"dataset": str(code_dir), "text_field": "content", "proportion": 0.6, "role": "domain"},
        "wiki": {"dataset": str(sample_dir), "subset": "wiki", "proportion": 0.3},
        "math": {"dataset": str(sample_dir), "subset": "math", "proportion": 0.1}}}
    (tmp_path / "mix.json").write_text(json.dumps(mix))
    body = plan(PlanConfig(tokenizer=str(tokenizer_dir), out_root="/tmp/x", mix=str(tmp_path / "mix.json"),
                           total_tokens=123_457, concat_tokens=128, val_fraction=0, num_workers=0))
    got = {s.name: s for s in body.subsets}
    assert {n: s.max_tokens for n, s in got.items()} == {"code": _exact(Decimal("0.6") * 123_457),
                                                         "wiki": _exact(Decimal("0.3") * 123_457),
                                                         "math": _exact(Decimal("0.1") * 123_457)}
    assert (got["code"].role, got["code"].convert.text_field, got["code"].convert.data_subset) == \
        ("domain", "content", None)
    assert (got["wiki"].convert.dataset, got["wiki"].convert.data_subset, got["wiki"].role) == \
        (str(sample_dir), "wiki", "replay")
    assert body.mix.name == "code-and-wiki" and body.mix.version == 3
    # beside --domain, every component of the mix file is replay and shares replay_fraction
    beside = plan(PlanConfig(tokenizer=str(tokenizer_dir), out_root="/tmp/x", mix=str(tmp_path / "mix.json"),
                             total_tokens=100_000, concat_tokens=128, val_fraction=0, num_workers=0,
                             domain=str(code_dir), domain_text_field="content", domain_name="more-code",
                             replay_fraction=0.5, max_domain_epochs=100))
    assert {s.name: (s.role, s.max_tokens) for s in beside.subsets if s.role == "replay"} == {
        "code": ("replay", 30_000), "wiki": ("replay", 15_000), "math": ("replay", 5_000)}


def test_a_mix_file_domain_without_its_text_field_names_the_mix_files_text_field(sample_dir, tokenizer_dir,
                                                                                    code_dir, tmp_path):
    """A mix file's own domain component gets its text field from the mix file: the hint says so, not
    --domain_text_field (an option that does not apply to it)."""
    mix = {"name": "code-and-wiki", "components": {
        "code": {"dataset": str(code_dir), "proportion": 0.6, "role": "domain"},
        "wiki": {"dataset": str(sample_dir), "subset": "wiki", "proportion": 0.4}}}
    (tmp_path / "mix.json").write_text(json.dumps(mix))
    with pytest.raises(UserError) as err:
        plan(PlanConfig(tokenizer=str(tokenizer_dir), out_root="/tmp/x", mix=str(tmp_path / "mix.json"),
                        total_tokens=50_000, concat_tokens=128, val_fraction=0, num_workers=0))
    said = str(err.value)
    assert "mix code-and-wiki component code" in said and "'text'" in said, said
    assert "the component's text_field in mix code-and-wiki (or --text_field)" in said, said
    assert "--domain_text_field" not in said, said


@pytest.mark.parametrize("component,message", [
    ({"dataset": "/x", "proportion": 1, "role": "main"}, "role 'main' is not one of replay, domain"),
    ({"proportion": 1}, "'dataset' (a local path, object-storage prefix or hub id) is required"),
    ({"dataset": "/x", "proportion": 1, "text": "t"}, "unknown key(s) text"),
])
def test_bad_mix_file_components_are_named(tmp_path, component, message):
    (tmp_path / "mix.json").write_text(json.dumps({"components": {"c": component}}))
    with pytest.raises(UserError, match="component c") as err:
        load_mix(str(tmp_path / "mix.json"))
    assert message in str(err.value)


def test_a_short_corpus_repeats_with_its_epochs_stated_and_is_refused_past_the_limit(sample_dir, tokenizer_dir,
                                                                                       tmp_path):
    small = tmp_path / "small"
    write_domain_sample(small, "python", documents=80)
    body = _plan(sample_dir, tokenizer_dir, domain=str(small), domain_text_field="content", subsets=["wiki"],
                 total_tokens=100_000, concat_tokens=128, val_fraction=0.02, replay_fraction=0.5)
    domain = body.subset("domain")
    repeat = domain.repeat
    assert repeat is not None and repeat.budget_tokens == 50_000 and repeat.budget_rows == 50_000 // 128
    assert domain.val_tokens == 1000 and domain.max_tokens % 128 == 0
    assert repeat.epochs == pytest.approx(repeat.budget_rows / domain.train_rows) and 1 < repeat.epochs <= 4
    # the converted rows plus val fit in the corpus, with room for the document skipped between them
    assert domain.max_tokens + domain.val_rows * 128 < repeat.source_tokens
    with pytest.raises(UserError) as err:
        _plan(sample_dir, tokenizer_dir, domain=str(small), domain_text_field="content", subsets=["wiki"],
              total_tokens=100_000, concat_tokens=128, val_fraction=0.02, replay_fraction=0.5,
              max_domain_epochs=1.2)
    text = str(err.value)
    assert f"--domain {small}: holds {repeat.source_tokens:,} tokens" in text
    assert f"{repeat.epochs:.2f} epochs, more than --max_domain_epochs 1.2" in text


def test_bad_domains_exit_2_naming_the_domain_before_any_conversion(sample_dir, tokenizer_dir, code_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.jsonl").write_text('{"content": "  "}\n')
    cases = [(tmp_path / "missing", "text", "no such file or folder"),
             (tmp_path / "empty", "text", "no .json"),
             (code_dir, "text", "python-0000.jsonl, line 1: record has no 'text' field (fields: content, id, path)"),
             (tmp_path / "blank", "content", "no document with text in field 'content'")]
    for folder, field, message in cases:
        out = tmp_path / "out"
        proc = call_cli("plan", "--dataset", sample_dir, "--tokenizer", tokenizer_dir, "--out_root", out,
                        "--domain", folder, "--domain_text_field", field, "--total_tokens", 100_000,
                        "--concat_tokens", 128, "--val_fraction", 0)
        assert proc.returncode == 2, proc.stderr
        assert f"--domain {folder}" in proc.stderr and message in proc.stderr, proc.stderr
        assert not out.exists()


def _code_records(code_dir, limit=None):
    records = [json.loads(line) for path in sorted(code_dir.glob("*.jsonl")) for line in path.read_text().splitlines()]
    return records[:limit]


def _domain_corpus(folder, records, fmt, nulls=0):
    """The code corpus with its text in column/field ``body`` (beside ``package``), as one parquet or JSON-lines
    file; ``nulls``: a null text after every that many documents."""
    package, body = [], []
    for number, record in enumerate(records, 1):
        package.append(record["path"])
        body.append(record["content"])
        if nulls and number % nulls == 0:
            package.append(record["path"] + "#null")
            body.append(None)
    folder.mkdir(parents=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "corpus.parquet"
        pq.write_table(pa.table({"package": package, "body": body}), path, row_group_size=50)
    else:
        path = folder / "corpus.jsonl"
        path.write_text("".join(json.dumps({"package": p, "body": b}) + "\n" for p, b in zip(package, body)))
    return path


@pytest.mark.parametrize("fmt,problem", [
    ("parquet", "corpus.parquet: no 'text' column (columns: package, body)"),
    ("jsonl", "corpus.jsonl, line 1: record has no 'text' field (fields: body, package)"),
])
def test_a_domain_without_the_text_field_names_the_plans_options(sample_dir, tokenizer_dir, code_dir, tmp_path, fmt,
                                                                  problem):
    corpus = _domain_corpus(tmp_path / "corpus", _code_records(code_dir, 600), fmt)
    args = ["plan", "--dataset", sample_dir, "--tokenizer", tokenizer_dir, "--out_root", tmp_path / "out", "--domain",
            corpus, "--total_tokens", 100_000, "--concat_tokens", 128, "--val_fraction", 0, "--num_workers", 0]
    proc = call_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert (f"--domain {corpus}: {problem}; name the text field with --domain_text_field (the DAG's Param "
            "domain_text_field)") in proc.stderr, proc.stderr
    assert "--text_field" not in proc.stderr.replace("--domain_text_field", "")
    proc = call_cli(*args, "--domain_text_field", "body")
    assert proc.returncode == 0, proc.stderr
    domain = next(s for s in json.loads(proc.stdout)["subsets"] if s["name"] == "domain")
    assert domain["convert"]["text_field"] == "body" and domain["convert"]["dataset"] == str(corpus)
    assert domain["convert"]["max_tokens"] > 0 and domain["source_files"] == 1


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_the_domain_count_skips_null_texts(tokenizer_dir, code_dir, tmp_path, fmt):
    """The plan counts a corpus with null texts as the same corpus without them (read whole: a small one)."""
    from cpt_tasks.data.readers import resolve_input
    from cpt_tasks.plan.domain import count_corpus
    from cpt_tasks.tokenizer import Encoder

    records = _code_records(code_dir, 300)
    counts = []
    for name, nulls in (("plain", 0), ("nulls", 7)):
        corpus = _domain_corpus(tmp_path / name, records, fmt, nulls)
        conv = ConvertConfig(dataset=str(corpus), text_field="body", out_root="-", tokenizer=str(tokenizer_dir),
                             num_workers=0)
        encoder = Encoder(tokenizer_dir, conv.bos_text, conv.eos_text, conv.tokenizer_backend)
        counts.append(count_corpus(resolve_input(conv), conv, encoder, 10**12, f"--domain {corpus}"))
    assert counts[0] == counts[1] and counts[0].complete and counts[0].documents == len(records)


def test_the_planned_domain_converts_like_the_folder_alone_verifies_and_trains_its_epochs(
        sample_dir, small_tokenizer_dir, tmp_path):
    corpus = tmp_path / "code"
    write_domain_sample(corpus, "python", documents=60)
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(small_tokenizer_dir), out_root=str(tmp_path / "d"),
                           num_workers=0, subsets=["wiki", "math"], total_tokens=40_000, concat_tokens=128,
                           val_fraction=0.01, domain=str(corpus), domain_text_field="content", replay_fraction=0.4,
                           overrides={"wiki": {"val_tokens": 128}, "math": {"val_tokens": 128}}))
    write_document(str(tmp_path / "plan.json"), body)
    for sub in body.subsets:
        convert(sub.convert, progress_interval=0)
    domain = body.subset("domain")
    assert domain.repeat is not None
    alone = ConvertConfig(dataset=str(corpus), text_field="content", out_root=str(tmp_path / "alone"),
                          tokenizer=str(small_tokenizer_dir), concat_tokens=128, max_tokens=domain.max_tokens,
                          val_tokens=domain.val_tokens, shuffle=True, seed=17, num_workers=0)
    convert(alone, progress_interval=0)
    for split in ("train", "val"):
        assert np.array_equal(read_rows(f"{domain.out_root}/{split}"), read_rows(tmp_path / "alone" / split))
    result = verify(VerifyConfig(plan=str(tmp_path / "plan.json"), num_workers=0))
    assert result.ok, [c for s in result.report.subsets for c in s.checks if not c.ok]
    reported = {s.name: s for s in result.report.subsets}
    assert reported["domain"].epochs == domain.repeat.epochs and reported["domain"].role == "domain"
    assert reported["domain"].trained_tokens == domain.repeat.budget_rows * 128
    assert next(c for c in reported["domain"].checks if c.check == "epochs").ok
    assert "epochs" in (tmp_path / "verify-report.md").read_text()
    streams = _data(TrainConfig(report="-", model="-", save_root="-", run_id="r"), result.report, tmp_path / "cache",
                    False)["train_loader"]["dataset"]["streams"]
    assert streams["domain"]["choose"] == domain.repeat.budget_rows
    assert streams["wiki"]["choose"] == reported["wiki"].train_tokens // 128
    want = domain.repeat.budget_rows * 128 + reported["wiki"].train_tokens + reported["math"].train_tokens
    assert result.report.trained_tokens == want
    assert train_length(TrainConfig(report="-", model="-", save_root="-", run_id="r"), result.report).max_duration == f"{want}tok"


def test_gain_and_forgetting_equal_an_independent_computation():
    values = {"base": {"metrics/eval/code/LanguageCrossEntropy": 6.0, "metrics/eval/wiki/LanguageCrossEntropy": 5.0,
                       "metrics/eval/math/LanguageCrossEntropy": 4.5, "metrics/eval/code/LanguagePerplexity": 403.4,
                       "metrics/facts/0-shot/InContextLearningLMAccuracy": 0.25},
              "trained": {"metrics/eval/code/LanguageCrossEntropy": 4.75, "metrics/eval/wiki/LanguageCrossEntropy": 5.5,
                          "metrics/eval/math/LanguageCrossEntropy": 4.25, "metrics/eval/code/LanguagePerplexity": 115.6,
                          "metrics/facts/0-shot/InContextLearningLMAccuracy": 0.125}}
    outcome = EvalWorkerOutcome(metrics={role: {k: MetricValue(value=v, n=10) for k, v in found.items()}
                                         for role, found in values.items()}, seconds={})
    summary = cpt_summary(compare(outcome), {"code": "domain", "wiki": "replay", "math": "replay"})
    def key(name):
        return f"metrics/eval/{name}/LanguageCrossEntropy"
    assert [(c.name, c.base, c.trained, c.delta) for c in summary.gain] == [
        ("code", 6.0, 4.75, values["trained"][key("code")] - values["base"][key("code")])]
    assert [(c.name, c.delta, c.verdict) for c in summary.forgetting] == [
        ("wiki", 0.5, "worse"), ("math", -0.25, "better"), ("facts/0-shot", -0.125, "worse")]
    assert summary.gain[0].verdict == "better"
