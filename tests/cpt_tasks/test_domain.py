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
from cpt_tasks.convert.pack import Packer
from cpt_tasks.documents import read_document, write_document
from cpt_tasks.documents.convert_docs import ConvertManifest
from cpt_tasks.documents.evaluate_docs import EvalWorkerOutcome, MetricValue
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.errors import UserError
from cpt_tasks.evaluate.eval_report import compare, cpt_summary
from cpt_tasks.mix import load_mix
from cpt_tasks.plan.plan_job import format_plan, plan
from cpt_tasks.tokenizer import Encoder
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
        del s["role"], s["repeat"], s["parts"]
        assert (s["convert"].pop("val_first"), s["convert"].pop("parts"), s["convert"].pop("part")) == (False, 1, 0)
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


def _encoder(tokenizer_dir):
    conv = ConvertConfig(dataset="-", out_root="-", tokenizer=str(tokenizer_dir))
    return Encoder(tokenizer_dir, conv.bos_text, conv.eos_text, conv.tokenizer_backend)


def _framed(tokenizer_dir, texts) -> np.ndarray:
    """Each text's framed length (BOS + ids + EOS), counted here independently of the plan; blank and null skipped."""
    return _encoder(tokenizer_dir).encode_framed([t for t in texts if t is not None and t.strip()])[1]


def test_a_short_corpus_converts_val_first_with_estimated_epochs_and_is_refused_when_clearly_past_the_limit(
        sample_dir, tokenizer_dir, tmp_path):
    small = tmp_path / "small"
    write_domain_sample(small, "python", documents=80)
    lengths = _framed(tokenizer_dir, [r["content"] for r in _code_records(small)])
    body = _plan(sample_dir, tokenizer_dir, domain=str(small), domain_text_field="content", subsets=["wiki"],
                 total_tokens=100_000, concat_tokens=128, val_fraction=0.02, replay_fraction=0.5)
    domain = body.subset("domain")
    repeat = domain.repeat
    assert repeat is not None and repeat.estimated and domain.convert.val_first
    assert repeat.budget_tokens == domain.max_tokens == 50_000 and repeat.budget_rows == 50_000 // 128
    assert domain.val_tokens == 1000 and body.subset("wiki").convert.val_first is False
    # a corpus this small is read whole: the plan's number is the exact count
    assert repeat.source_tokens == int(lengths.sum())
    rows = (repeat.source_tokens - domain.val_rows * 128 - int(lengths.max())) // 128
    assert repeat.epochs == pytest.approx(repeat.budget_rows / rows) and 1 < repeat.epochs <= 4
    assert f"~{repeat.epochs:.3g}" in format_plan(body)
    # refused before conversion only when even its whole count (every row it could hold) repeats too often
    most = (repeat.source_tokens - domain.val_rows * 128) // 128
    limit = round(repeat.budget_rows / most * 0.9, 2)
    with pytest.raises(UserError) as err:
        _plan(sample_dir, tokenizer_dir, domain=str(small), domain_text_field="content", subsets=["wiki"],
              total_tokens=100_000, concat_tokens=128, val_fraction=0.02, replay_fraction=0.5,
              max_domain_epochs=limit)
    text = str(err.value)
    assert f"--domain {small}: holds {repeat.source_tokens:,} tokens in {len(lengths):,} documents" in text, text
    assert f"at most {most:,} train rows" in text and f"{repeat.budget_rows / most:.2f} epochs" in text, text
    assert f"more than --max_domain_epochs {limit:g}" in text, text
    # just above that limit it plans (verify counts the real epochs)
    _plan(sample_dir, tokenizer_dir, domain=str(small), domain_text_field="content", subsets=["wiki"],
          total_tokens=100_000, concat_tokens=128, val_fraction=0.02, replay_fraction=0.5,
          max_domain_epochs=round(repeat.budget_rows / most * 1.01, 2))
    with pytest.raises(UserError, match="too few for one train row of 128 beside its val split"):
        _plan(sample_dir, tokenizer_dir, domain=str(small), domain_text_field="content", subsets=["wiki"],
              total_tokens=100_000_000, concat_tokens=128, val_fraction=0.02, replay_fraction=0.5)


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
def test_the_domain_estimate_skips_null_texts(tokenizer_dir, code_dir, tmp_path, fmt):
    """The plan counts a corpus with null texts as the same corpus without them (read whole: a small one)."""
    records = _code_records(code_dir, 300)
    counts = [_estimate(_domain_corpus(tmp_path / name, records, fmt, nulls), tokenizer_dir, "body")
              for name, nulls in (("plain", 0), ("nulls", 7))]
    assert counts[0].complete and counts[1].complete
    assert counts[0].tokens == counts[1].tokens == int(_framed(tokenizer_dir, [r["content"] for r in records]).sum())
    assert counts[0].documents == counts[1].documents == len(records)


def _estimate(corpus, tokenizer_dir, field="content"):
    from cpt_tasks.data.readers import resolve_input
    from cpt_tasks.plan.corpus_estimate import estimate_corpus
    from cpt_tasks.plan.domain import DOMAIN_TEXT_OPTION

    conv = ConvertConfig(dataset=str(corpus), text_field=field, out_root="-", tokenizer=str(tokenizer_dir),
                         num_workers=0)
    return estimate_corpus(resolve_input(conv), field, _encoder(tokenizer_dir), f"--domain {corpus}",
                           DOMAIN_TEXT_OPTION)


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
    assert domain.repeat is not None and domain.convert.val_first and domain.max_tokens == 24_000
    alone = ConvertConfig(dataset=str(corpus), text_field="content", out_root=str(tmp_path / "alone"),
                          tokenizer=str(small_tokenizer_dir), concat_tokens=128, max_tokens=domain.max_tokens,
                          val_tokens=domain.val_tokens, shuffle=True, seed=17, num_workers=0, val_first=True)
    convert(alone, progress_interval=0)
    for split in ("train", "val"):
        assert np.array_equal(read_rows(f"{domain.out_root}/{split}"), read_rows(tmp_path / "alone" / split))
    manifest = read_document(f"{domain.out_root}/manifest.json", ConvertManifest)[0]
    train, val = manifest.splits["train"], manifest.splits["val"]
    assert manifest.exhausted and val.samples == domain.val_rows and 0 < train.samples < domain.train_rows
    assert val.first_document == 0 and train.first_document > val.last_document  # val first, no document in both
    result = verify(VerifyConfig(plan=str(tmp_path / "plan.json"), num_workers=0))
    assert result.ok, [c for s in result.report.subsets for c in s.checks if not c.ok]
    reported = {s.name: s for s in result.report.subsets}
    epochs = domain.repeat.budget_rows / train.samples  # from the rows really converted, not the plan's estimate
    assert reported["domain"].epochs == epochs and reported["domain"].role == "domain"
    assert reported["domain"].status == "ok" and reported["domain"].exhausted
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


# --- the plan's estimate: a bounded sample, close to the true count -------------------------------------------------

def _write_jsonl(path, records, fmt="jsonl"):
    """JSON lines of ``records`` at ``path`` (.jsonl, .jsonl.gz or .jsonl.zst)."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    if fmt == "gz":
        import gzip
        data = gzip.compress(data)
    elif fmt == "zst":
        import zstandard
        data = zstandard.ZstdCompressor().compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def code_records(tmp_path_factory):
    """Every document the code sample makes (~2,900 stdlib functions and classes, ~3 MB of JSON lines)."""
    out = tmp_path_factory.mktemp("allcode") / "code"
    write_domain_sample(out, "python", documents=10_000)
    return _code_records(out)


@pytest.mark.parametrize("layout", ["40 files", "jsonl", "gz", "zst", "parquet"])
def test_the_estimate_is_within_ten_percent_of_the_true_count(tokenizer_dir, code_records, tmp_path, monkeypatch,
                                                                layout):
    from cpt_tasks.plan import corpus_estimate

    truth = int(_framed(tokenizer_dir, [r["content"] for r in code_records]).sum())
    if layout == "40 files":  # 8 of them sampled, each read whole
        for number in range(40):
            _write_jsonl(tmp_path / "c" / f"part-{number:02d}.jsonl", code_records[number::40])
        corpus = tmp_path / "c"
    else:  # one file, larger than the sample: only its start is read
        monkeypatch.setattr(corpus_estimate, "SAMPLE_BYTES", 192 << 10)
        if layout == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            corpus = tmp_path / "c.parquet"
            pq.write_table(pa.table({"path": [r["path"] for r in code_records],
                                     "content": [r["content"] for r in code_records]}), corpus, row_group_size=300)
        else:
            corpus = _write_jsonl(tmp_path / f"c.jsonl{'' if layout == 'jsonl' else '.' + layout}", code_records,
                                  layout)
    estimate = _estimate(corpus, tokenizer_dir)
    assert not estimate.complete and estimate.sample_tokens < truth / 3  # a sample, not the corpus
    assert abs(estimate.tokens - truth) <= 0.10 * truth, (estimate, truth)


def _counting(monkeypatch):
    """Count the bytes read from the corpus's files (whole files through the converter's reader, starts of larger
    ones through the estimate's own opener); the hashing of the listing is not the estimate's reading."""
    from cpt_tasks.data import sources
    from cpt_tasks.plan import corpus_estimate

    read = [0]

    class Counted:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            read[0] += len(data)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def close(self):
            self.fh.close()

    monkeypatch.setattr(sources, "_open", lambda url: Counted(open(url, "rb")))
    monkeypatch.setattr(corpus_estimate, "open_raw", lambda src: Counted(open(src.url, "rb")))
    return read


def test_the_plans_reading_is_bounded_whatever_the_corpus_size(sample_dir, tokenizer_dir, code_records, tmp_path,
                                                                 monkeypatch):
    from cpt_tasks.plan import corpus_estimate

    monkeypatch.setattr(corpus_estimate, "SAMPLE_BYTES", 1 << 20)
    read = _counting(monkeypatch)
    seen = {}
    for times in (1, 4):  # four files; then the same four files four times larger
        corpus = tmp_path / f"x{times}"
        for number in range(4):
            _write_jsonl(corpus / f"part-{number}.jsonl", code_records[number::4] * times)
        read[0] = 0
        body = _plan(sample_dir, tokenizer_dir, domain=str(corpus), domain_text_field="content", subsets=["wiki"],
                     total_tokens=400_000, concat_tokens=128, val_fraction=0, replay_fraction=0.5)
        seen[times] = (read[0], body.subset("domain").source_bytes)
    (small, small_bytes), (large, large_bytes) = seen[1], seen[4]
    assert large_bytes == 4 * small_bytes > 2 * (1 << 20)  # both larger than the sample
    assert 0 < large <= small <= 1 << 20, seen


# --- val first: a corpus that may be short, its epochs counted by verify ------------------------------------------

def test_val_first_packs_val_from_the_first_document_then_train_with_no_document_in_both():
    from test_pack import feed_all

    packer = Packer(4, 3, 2, val_first=True)
    out = feed_all(packer, [3, 6, 2, 4, 6, 3, 7], batch=2)
    assert out["val"] == [[0, 0, 0, 1], [1, 1, 1, 1]]  # document 1 is cut by val's last row: dropped
    assert out["train"] == [[2, 2, 3, 3], [3, 3, 4, 4], [4, 4, 4, 4]]
    assert (packer.val.stats.first_document, packer.val.stats.last_document) == (0, 1)
    assert packer.train.stats.first_document == 2 and packer.done
    short = Packer(4, 100, 1, val_first=True)  # train's budget beyond the source: it takes what is left
    out = feed_all(short, [3, 6, 2, 4], batch=100)
    assert out["val"] == [[0, 0, 0, 1]] and out["train"] == [[2, 2, 3, 3]] and not short.done
    assert feed_all(Packer(4, 2, 0, val_first=True), [3, 6], batch=1) == {"train": [[0, 0, 0, 1], [1, 1, 1, 1]],
                                                                        "val": []}


@pytest.mark.parametrize("seed", range(10))
def test_val_first_random_streams_hold_the_contract(seed):
    from test_pack import feed_all, framed

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 40, size=200).tolist()
    concat, train_rows, val_rows = int(rng.integers(3, 30)), int(rng.integers(1, 400)), int(rng.integers(1, 20))
    packer = Packer(concat, train_rows, val_rows, val_first=True)
    out = feed_all(packer, lengths, batch=int(rng.integers(1, 50)))
    stream = framed(lengths)[0]
    val = np.array(out["val"]).reshape(-1)
    assert len(out["val"]) == val_rows and np.array_equal(val, stream[:val_rows * concat])  # val: the prefix
    first = int(val[-1]) + 1  # the first document with no token in val
    start = int(np.sum(lengths[:first]))
    expect = min(train_rows, (len(stream) - start) // concat)
    train = np.array(out["train"]).reshape(-1)
    assert len(out["train"]) == expect and np.array_equal(train, stream[start:start + expect * concat])
    assert set(train.tolist()).isdisjoint(val.tolist()) and packer.train.stats.first_document == first
    assert packer.done == (expect == train_rows)


def _misleading_corpus(folder, records):
    """20 files: the 8 the plan samples hold code; the other 12 as many bytes of documents with blank text (no
    tokens), so the sample overstates the corpus about 2.5 times."""
    from cpt_tasks.plan.corpus_estimate import spread

    sampled = spread(20)
    size = 0
    for number, index in enumerate(sampled):
        size = max(size, _write_jsonl(folder / f"part-{index:02d}.jsonl", records[number::8]).stat().st_size)
    for index in sorted(set(range(20)) - set(sampled)):
        _write_jsonl(folder / f"part-{index:02d}.jsonl", [{"content": " ", "pad": "x" * 1000}] * (size // 1030))


def test_a_short_corpus_converts_val_first_and_verify_refuses_its_real_epochs_before_training(
        sample_dir, tokenizer_dir, code_records, tmp_path):
    from conftest import edit_plan

    from cpt_tasks.runs.staging import load_report

    records = code_records[:240]
    real = int(_framed(tokenizer_dir, [r["content"] for r in records]).sum())
    _misleading_corpus(tmp_path / "corpus", records)
    total = 6 * real * 20 // 19  # the domain's 95%: six times what the corpus holds (~6 epochs; estimated ~2.4)
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root=str(tmp_path / "data"),
                           domain=str(tmp_path / "corpus"), domain_text_field="content", subsets=["wiki"],
                           replay_fraction=0.05, total_tokens=total, concat_tokens=128, val_fraction=0.005,
                           overrides={"wiki": {"val_tokens": 128}}, num_workers=0))
    location = str(tmp_path / "plan.json")
    write_document(location, body)
    for sub in body.subsets:
        convert(sub.convert, progress_interval=0)
    domain = body.subset("domain")
    assert domain.convert.val_first and domain.repeat.estimated and domain.repeat.epochs < 4
    assert domain.repeat.source_tokens > 2 * real  # the sample overstated it
    proc = call_cli("verify", "--plan", location, "--num_workers", 0)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = read_document(str(tmp_path / "verify-report.json"), VerifyReport)[0]
    got = next(s for s in report.subsets if s.name == "domain")
    manifest = read_document(f"{domain.out_root}/manifest.json", ConvertManifest)[0]
    rows = manifest.splits["train"].samples
    assert got.epochs == domain.repeat.budget_rows / rows > 4 and manifest.splits["val"].samples == domain.val_rows
    failed = [c for c in got.checks if not c.ok]
    assert [c.check for c in failed] == ["epochs"], failed
    assert f"{rows:,} train rows converted" in failed[0].detail and f"{got.epochs:.3f} epochs" in failed[0].detail
    assert "lower total_tokens" in failed[0].detail and "raise max_domain_epochs" in failed[0].detail
    with pytest.raises(UserError, match="verification failed"):  # training does not start
        load_report(str(tmp_path / "verify-report.json"))
    # allowed more epochs, the same data verifies: it was the epochs, counted from the converted rows
    edit_plan(location, lambda plan_body: setattr(plan_body, "max_domain_epochs", 10))
    assert call_cli("verify", "--plan", location, "--num_workers", 0).returncode == 0


def test_a_corpus_the_estimate_finds_long_enough_converts_train_first_as_before(sample_dir, tokenizer_dir,
                                                                              code_records, tmp_path):
    corpus = tmp_path / "corpus"
    for number in range(40):  # a sample, not a count
        _write_jsonl(corpus / f"part-{number:02d}.jsonl", code_records[number::40])
    body = _plan(sample_dir, tokenizer_dir, domain=str(corpus), domain_text_field="content", subsets=["wiki"],
                 replay_fraction=0.5, total_tokens=200_000, concat_tokens=128, val_fraction=0.01)
    domain = body.subset("domain")
    assert domain.repeat is None and not domain.convert.val_first and domain.max_tokens == 100_000
    before = ConvertConfig(dataset=str(corpus), text_field="content", out_root=str(tmp_path / "before"),
                           tokenizer=str(tokenizer_dir), concat_tokens=128, max_tokens=100_000, val_tokens=1000,
                           shuffle=True, seed=17, num_workers=0)
    assert domain.convert.model_copy(update={"out_root": before.out_root, "tokenizer_revision": None,
                                             "revision": None}) == before
    out = domain.convert.model_copy(update={"out_root": str(tmp_path / "planned")})
    for conv in (out, before):
        convert(conv, progress_interval=0)
    for split in ("train", "val"):
        assert np.array_equal(read_rows(tmp_path / "planned" / split), read_rows(tmp_path / "before" / split))
    manifest = read_document(str(tmp_path / "planned" / "manifest.json"), ConvertManifest)[0]
    assert manifest.splits["train"].first_document == 0 and not manifest.exhausted
