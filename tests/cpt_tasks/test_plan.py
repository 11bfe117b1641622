"""`cpt-tasks plan`: budgets from one number, validation, and fingerprint-addressed locations."""

import json
import re

import pytest
from conftest import call_cli

from cpt_tasks.cli import build_parser
from cpt_tasks.cli_args import build_config
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.documents import DocumentError, read_document, write_document
from cpt_tasks.documents.plan_docs import Plan, PlannedMix, PlannedSubset, PlannedTokenizer
from cpt_tasks.documents.plan_docs import load_plan
from cpt_tasks.errors import UserError
from cpt_tasks.convert.subset_job import planned_subset
from cpt_tasks.plan.plan_job import plan

REFERENCE = {  # the reference notes' table: max_tokens, val_tokens
    "dclm": (23_600_000_000, 4_720_000), "flan": (8_300_000_000, 1_660_000), "pes2o": (2_925_000_000, 585_000),
    "wiki": (3_555_000_000, 711_000), "stackexchange": (1_225_000_000, 245_000),
    "math": (10_400_000_000, 2_080_000),
}


@pytest.fixture(scope="module")
def default_plan(sample_dir, tokenizer_dir):
    return plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="s3://bucket/cpt"))


def test_default_plan_reproduces_the_reference_table(default_plan):
    got = {s.name: (s.max_tokens, s.val_tokens) for s in default_plan.subsets}
    assert got == REFERENCE
    assert default_plan.total_tokens == 50_000_000_000 and default_plan.concat_tokens == 8192
    for s in default_plan.subsets:
        assert s.out_root == f"s3://bucket/cpt/dolmino-mix-1124/{s.fingerprint[:16]}/{s.name}"
        assert s.train_rows == s.max_tokens // 8192


def test_the_plan_carries_each_conversion_and_its_command_says_the_same(default_plan, sample_dir):
    parser = build_parser()
    for s in default_plan.subsets:
        cfg = s.convert
        assert (cfg.max_tokens, cfg.val_tokens, cfg.out_root) == (REFERENCE[s.name] + (s.out_root,))
        assert cfg.data_subset == s.name and cfg.shuffle and cfg.seed == 17 and cfg.dataset == str(sample_dir)
        command = s.command()
        assert command[:2] == ["cpt-tasks", "convert"]
        assert build_config(ConvertConfig, parser.parse_args(command[1:])) == cfg


def test_same_inputs_same_locations_and_a_change_moves_them(default_plan, sample_dir, tokenizer_dir):
    again = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="s3://bucket/cpt"))
    assert [s.out_root for s in again.subsets] == [s.out_root for s in default_plan.subsets]
    assert again.fingerprint == default_plan.fingerprint == again.content_fingerprint()
    reseeded = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="s3://bucket/cpt",
                               seed=18))
    assert not {s.fingerprint for s in reseeded.subsets} & {s.fingerprint for s in default_plan.subsets}
    assert reseeded.fingerprint != default_plan.fingerprint


def test_subsets_overrides_and_custom_proportions(sample_dir, tokenizer_dir):
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                           total_tokens=1_000_000, concat_tokens=1024, val_fraction=0.01,
                           subsets=["dclm", "math"], overrides={"math": {"max_tokens": "2e5"}}))
    by_name = {s.name: s for s in body.subsets}
    assert list(by_name) == ["dclm", "math"] and body.mix.renormalized
    assert by_name["dclm"].max_tokens == round(1_000_000 * 0.472 / 0.68)
    assert by_name["math"].max_tokens == 200_000 and by_name["math"].val_tokens == 2000
    assert by_name["math"].overridden and not by_name["dclm"].overridden
    custom = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                             total_tokens=100_000, concat_tokens=512, val_fraction=0,
                             proportions={"wiki": 0.25, "flan": 0.75}))
    assert [(s.name, s.max_tokens, s.val_tokens) for s in custom.subsets] == [("wiki", 25_000, 0), ("flan", 75_000, 0)]


# Every ConvertConfig field at a value other than its default (the tokenizer's reserved special tokens as the
# framing): a plan must hand each of them to convert-subset unchanged.
EVERY_FIELD = dict(
    dataset="/data/dolmino", data_subset="wiki", revision="r" * 40, splits=["other"], out_root="s3://b/wiki",
    tokenizer="meta-llama/Llama-3.1-8B-Instruct", tokenizer_revision="c" * 40, num_workers=3, concat_tokens=1024,
    max_tokens=10240, val_tokens=2048, shuffle=True, seed=5, shuffle_buffer=77, compression="zstd:7",
    size_limit=1 << 20, bos_text="<|reserved_special_token_0|>", eos_text="<|reserved_special_token_1|>",
    tokenizer_backend="tokenizers", overwrite=True, text_field="content", source_format="datasets",
    connect_timeout=3.5, read_timeout=7.5, max_retries=2, val_first=True, parts=3, part=1)


def test_every_convert_field_survives_plan_to_convert_subset(tmp_path):
    assert set(EVERY_FIELD) == set(ConvertConfig.model_fields), "a new ConvertConfig field needs a value here"
    conv = ConvertConfig(**EVERY_FIELD)
    for name, field in ConvertConfig.model_fields.items():
        assert getattr(conv, name) != field.get_default(call_default_factory=True), name
    body = Plan(fingerprint="-", created_at="now", code_version="0", dataset="/data/dolmino", revision=None,
                mix=PlannedMix(name="m", version=1, proportions={"wiki": 1.0}, renormalized=False),
                tokenizer=PlannedTokenizer(name="t", revision=None, sha256="s"), total_tokens=10240,
                val_fraction=0.2, concat_tokens=1024, seed=5, shuffle=True, allow_short=False, root="s3://b",
                subsets=[PlannedSubset(name="wiki", proportion=1.0, overridden=False, fingerprint="f" * 64,
                                       source_files=1, source_bytes=1, convert=conv)])
    body.fingerprint = body.content_fingerprint()
    write_document(str(tmp_path / "plan.json"), body)
    assert planned_subset(str(tmp_path / "plan.json"), "wiki") == conv
    proc = call_cli("convert-subset", "--plan", tmp_path / "plan.json", "--subset", "wiki", "--dry-run", check=True)
    assert ConvertConfig.model_validate_json(proc.stdout) == conv
    assert build_config(ConvertConfig, build_parser().parse_args(body.subsets[0].command()[1:])) == conv


def test_convert_options_reach_every_planned_conversion(sample_dir, tokenizer_dir):
    options = {k: EVERY_FIELD[k] for k in ("shuffle_buffer", "compression", "size_limit", "bos_text", "eos_text",
                                           "tokenizer_backend", "overwrite")}
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                           total_tokens=100_000, concat_tokens=512, val_fraction=0, convert_options=options))
    default = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                              total_tokens=100_000, concat_tokens=512, val_fraction=0))
    for s, d in zip(body.subsets, default.subsets):
        assert s.convert.model_dump(include=set(options)) == options
        assert s.fingerprint != d.fingerprint  # the framing ids and the shard format are part of the bytes


@pytest.mark.parametrize("options,message", [
    ({"max_tokens": 5}, "max_tokens is set by the plan itself"),
    ({"compresion": "none"}, "compresion is not a `cpt-tasks convert` option"),
])
def test_convert_options_the_plan_owns_or_that_do_not_exist_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        PlanConfig(out_root="/tmp/x", convert_options=options)


def test_bad_convert_option_values_are_user_errors_naming_them(sample_dir, tokenizer_dir):
    with pytest.raises(UserError, match="--convert_options: compression: Value error, expected zstd"):
        plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                        total_tokens=100_000, concat_tokens=512, val_fraction=0,
                        convert_options={"compression": "gzip"}))


def test_a_plan_edited_by_hand_or_of_another_version_is_refused(default_plan, tmp_path):
    path = tmp_path / "plan.json"
    write_document(str(path), default_plan)
    assert load_plan(str(path))[0] == default_plan
    body = json.loads(path.read_text())
    body["subsets"][0]["convert"]["max_tokens"] *= 2
    path.write_text(json.dumps(body))
    with pytest.raises(UserError, match="does not match its fingerprint"):
        load_plan(str(path))
    body["format"] = "cpt-pipeline/plan/v1"
    path.write_text(json.dumps(body))
    with pytest.raises(DocumentError, match=r"--plan .*plan.json: a cpt-pipeline plan of version v1, this code "
                                            r"reads v2"):
        load_plan(str(path))
    body["format"], body["surprise"] = "cpt-pipeline/plan/v2", 1
    path.write_text(json.dumps(body))
    with pytest.raises(DocumentError, match="surprise: Extra inputs are not permitted"):
        read_document(str(path), Plan, "--plan")


@pytest.mark.parametrize("kwargs,message", [
    ({"subsets": ["dclm", "nope"]}, "unknown subset(s) nope"),
    ({"proportions": {"dclm": 0.5, "flan": 0.4}}, "sum to 0.9"),
    ({"total_tokens": 10_000}, "subset dclm: train budget 4,720 tokens is smaller than one row"),
    ({"total_tokens": 5e8}, "subset pes2o: val budget 5,850 tokens is smaller than one row"),
    ({"overrides": {"dlcm": {"max_tokens": 1}}}, "--overrides: unknown subset(s) dlcm"),
    ({"mix": "nonexistent-mix"}, "no such mix file or shipped mix"),
])
def test_impossible_plans_are_user_errors(sample_dir, tokenizer_dir, kwargs, message):
    with pytest.raises(UserError) as err:
        plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x", **kwargs))
    assert message in str(err.value)


@pytest.mark.parametrize("args,message", [
    (["--subsets", "dclm", "flan", "dclm"], "duplicate subsets: dclm"),
    (["--proportions", '{"dclm": 0.5, "dclm": 0.5}'], "duplicate subsets: dclm"),
    (["--concat_tokens", "200000"], "larger than the model's context (131072)"),
    (["--val_fraction", "1.5"], "--val_fraction"),
    (["--total_tokens", "0"], "--total_tokens"),
])
def test_invalid_plan_arguments_exit_2(sample_dir, tokenizer_dir, tmp_path, args, message):
    proc = call_cli("plan", "--dataset", sample_dir, "--tokenizer", tokenizer_dir, "--out_root", tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_cli_prints_and_writes_the_plan(sample_dir, tokenizer_dir, tmp_path):
    proc = call_cli("plan", "--dataset", sample_dir, "--tokenizer", tokenizer_dir, "--out_root", tmp_path / "d",
                   "--total_tokens", "350e3", "--concat_tokens", 256, "--val_fraction", 0.03,
                   "--output", tmp_path / "plan.json", check=True)
    printed = json.loads(proc.stdout)
    assert printed == json.loads((tmp_path / "plan.json").read_text())
    assert "cpt-tasks convert --dataset" in proc.stderr and len(printed["subsets"]) == 6
    assert load_plan(str(tmp_path / "plan.json"))[0].subset("wiki").convert.val_tokens == printed["subsets"][3][
        "convert"]["val_tokens"]


def test_refresh_with_unchanged_sources_converts_nothing(sample_dir, tokenizer_dir, tmp_path):
    from cpt_tasks.convert.convert_job import convert

    def run_plan():
        body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root=str(tmp_path),
                               total_tokens=350_000, concat_tokens=256, val_fraction=0.03))
        write_document(str(tmp_path / "plan.json"), body)
        return [convert(s.convert, progress_interval=0) for s in body.subsets]

    first, second = run_plan(), run_plan()
    assert not any(r.already_complete for r in first) and all(r.already_complete for r in second)
    assert [r.fingerprint for r in first] == [r.fingerprint for r in second]
    subset = ["convert-subset", "--plan", tmp_path / "plan.json", "--subset", "wiki"]
    skipped = call_cli(*subset, "--already_complete_exit", 99)  # what the DAG passes: the task is skipped
    assert skipped.returncode == 99 and skipped.stdout.startswith("already complete:")
    assert call_cli(*subset).returncode == 0  # unasked, already complete is done
    assert call_cli(*subset, "--up_to_date_exit", 99).returncode == 2  # the old name is gone, no alias


def test_hub_tokenizer_is_pinned_to_the_planned_commit(sample_dir, tokenizer_dir, tmp_path, monkeypatch):
    """No hub here: snapshot_download is stood in for by a snapshot folder laid out as the HF cache does."""
    import shutil

    import huggingface_hub

    commit = "a" * 40
    snapshot = tmp_path / "hub" / "snapshots" / commit
    shutil.copytree(tokenizer_dir, snapshot)
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer="meta-llama/Llama-3.1-8B-Instruct", out_root="/tmp/x",
                           subsets=["wiki"]))
    assert body.tokenizer.revision == commit and calls == [("meta-llama/Llama-3.1-8B-Instruct", None)]
    command = body.subsets[0].command()
    assert command[command.index("--tokenizer_revision") + 1] == commit
    cfg = body.subsets[0].convert
    assert (cfg.tokenizer, cfg.tokenizer_revision) == ("meta-llama/Llama-3.1-8B-Instruct", commit)


# --- what a plan too small for its rows says: the smallest total first, then what fits the total given ---------

def _plan_error(sample_dir, tokenizer_dir, **kwargs) -> str:
    with pytest.raises(UserError) as err:
        plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x", **kwargs))
    return str(err.value)


def _named(pattern: str, message: str) -> str:
    found = re.search(pattern, message)
    assert found, f"{pattern!r} not in: {message}"
    return found.group(1).replace(",", "")


def test_a_budget_too_small_names_the_smallest_total_first_and_it_fits(sample_dir, tokenizer_dir):
    small = dict(concat_tokens=256, val_fraction=0.03)
    message = _plan_error(sample_dir, tokenizer_dir, total_tokens=1000, **small)
    assert message.startswith("subset dclm: val budget 14 tokens is smaller than one row of 256; raise "
                              "--total_tokens to 347,613 or more"), message
    assert "--val_fraction" not in message  # raising it alone cannot fit 1,000 tokens: not offered
    total = int(_named(r"--total_tokens to ([\d,]+) or more", message))
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                           total_tokens=total, **small))
    assert min(s.val_tokens for s in body.subsets) >= 256 and min(s.max_tokens for s in body.subsets) >= 256
    assert "smaller than one row" in _plan_error(sample_dir, tokenizer_dir, total_tokens=total - 1, **small)
    train = _plan_error(sample_dir, tokenizer_dir, total_tokens=1000)  # the default 8,192-token rows
    assert train.startswith("subset dclm: train budget 472 tokens is smaller than one row of 8192; raise "
                            "--total_tokens to 1,671,734,674 or more"), train


@pytest.mark.parametrize("total,concat_offered", [(200_000, True), (100_000, False)])
def test_each_way_out_offered_at_the_given_total_fits_it(sample_dir, tokenizer_dir, total, concat_offered):
    """Every alternative offered fits this total, and one step short of it does not; shorter rows are offered only
    when they are shorter than today's (at 100,000 tokens every train budget already holds a 256-token row, so
    --val_fraction 0 alone is the way, and no --concat_tokens is)."""
    given = dict(total_tokens=total, concat_tokens=256, val_fraction=0.03)
    message = _plan_error(sample_dir, tokenizer_dir, **given)
    assert re.match(r"subset \w+: val budget \d+ tokens is smaller than one row of 256; raise --total_tokens to "
                    r"347,613 or more", message), message
    options = ("total_tokens", "val_fraction", "concat_tokens") if concat_offered else ("total_tokens", "val_fraction")
    positions = [message.index(f"--{o}") for o in options]
    assert positions == sorted(positions), message  # more tokens first, then the alternatives
    assert ("--concat_tokens" in message) == concat_offered, message
    fraction = float(_named(r"--val_fraction to ([\d.]+) or more", message))
    changes = [{"val_fraction": fraction}, {"val_fraction": 0}]
    short_of = [{"val_fraction": float(f"{fraction - 0.01:.2f}")}]
    if concat_offered:
        concat = int(_named(r"--concat_tokens to ([\d,]+) or less", message))
        assert concat < 256, message  # lower than today's
        changes.append({"concat_tokens": concat})
        short_of.append({"concat_tokens": concat + 1})
    for change in changes:
        plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                        **{**given, **change}))
    for change in short_of:
        assert "smaller than one row" in _plan_error(sample_dir, tokenizer_dir, **{**given, **change}), change


def test_the_old_domain_recipe_is_told_the_total_that_fits_and_the_rows_that_fit_its_own(sample_dir, tokenizer_dir,
                                                                                           code_dir):
    from cpt_tasks.plan.plan_components import mix_components
    from cpt_tasks.plan.plan_job import check_budgets, effective_mix

    recipe = dict(domain=str(code_dir), domain_text_field="content", replay_fraction=0.25, total_tokens=400_000)
    message = _plan_error(sample_dir, tokenizer_dir, **recipe)
    assert message.startswith("subset domain: val budget 60 tokens is smaller than one row of 8192; raise "
                              "--total_tokens to 6,686,938,694 or more"), message
    total = int(_named(r"--total_tokens to ([\d,]+) or more", message))
    for at, fits in ((total, True), (total - 1, False)):  # the plan would go on to read the corpus: budgets only
        cfg = PlanConfig(out_root="/tmp/x", **{**recipe, "total_tokens": at})
        mix, proportions, _ = effective_mix(cfg)
        if fits:
            check_budgets(cfg, mix, proportions, mix_components(cfg, mix, proportions))
        else:
            with pytest.raises(UserError, match="smaller than one row"):
                check_budgets(cfg, mix, proportions, mix_components(cfg, mix, proportions))
    concat = int(_named(r"--concat_tokens to ([\d,]+) or less with --val_fraction 0", message))
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x", num_workers=0,
                           **recipe, concat_tokens=concat, val_fraction=0))
    assert body.subset("domain").max_tokens == 300_000 and body.concat_tokens == concat


def test_overrides_too_small_at_any_total_are_named(sample_dir, tokenizer_dir):
    given = dict(concat_tokens=256, val_fraction=0.02)
    own = _plan_error(sample_dir, tokenizer_dir, total_tokens=2_000_000, overrides={"math": {"max_tokens": 100}},
                        **given)
    assert own == ("subset math: train budget 100 tokens is smaller than one row of 256; set its train budget in "
                   "--overrides to at least 256, or lower --concat_tokens")
    other = _plan_error(sample_dir, tokenizer_dir, total_tokens=200_000, overrides={"math": {"max_tokens": 100}},
                          **given)
    assert other.startswith("subset pes2o: val budget 234 tokens") and "while --overrides keep math under one " \
                                                                      "row of 256" in other, other


# --- your corpus in another layout: the plan takes the source format its own message suggests ------------------

@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    """The domain demo's corpus (stdlib code, text in 'content'), 2,000 documents."""
    from cpt_local.samples.code_corpus import write_domain_sample

    out = tmp_path_factory.mktemp("code")
    write_domain_sample(out, "python", documents=2000)
    return out


@pytest.fixture(scope="module")
def csv_corpus(tmp_path_factory, code_dir):
    """The same code as a folder of CSV (column 'body'): no JSON lines, no parquet; datasets reads it."""
    import pandas as pd

    texts = [json.loads(line)["content"] for f in sorted(code_dir.glob("*.jsonl")) for line in f.open()]
    out = tmp_path_factory.mktemp("csv")
    pd.DataFrame({"id": range(len(texts)), "body": texts}).to_csv(out / "train.csv", index=False)
    return out


def test_the_domain_source_format_hint_is_a_plan_option_and_following_it_works(sample_dir, tokenizer_dir,
                                                                               code_dir, csv_corpus, tmp_path):
    args = ["plan", "--dataset", sample_dir, "--tokenizer", tokenizer_dir, "--out_root", tmp_path / "data",
            "--domain", csv_corpus, "--domain_text_field", "body", "--total_tokens", "1.4e6", "--concat_tokens", 256,
            "--val_fraction", 0.03, "--num_workers", 0]
    refused = call_cli(*args)
    assert refused.returncode == 2 and "(--domain_source_format datasets reads other layouts" in refused.stderr, \
        refused.stderr
    hint = re.search(r"\((--\w+) (\w+) reads other layouts", refused.stderr)
    followed = call_cli(*args, hint.group(1), hint.group(2), "--output", tmp_path / "plan.json")
    assert followed.returncode == 0, followed.stderr
    body = load_plan(str(tmp_path / "plan.json"))[0]
    domain = body.subset("domain")
    assert domain.convert.source_format == "datasets" and domain.source_files == 1
    assert {s.convert.source_format for s in body.subsets if s.name != "domain"} == {"auto"}  # the mix's: unchanged
    as_json_lines = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x",
                                    domain=str(code_dir), domain_text_field="content", total_tokens=1_400_000,
                                    concat_tokens=256, val_fraction=0.03, num_workers=0)).subset("domain")
    # a corpus read through datasets has no files to sample: it may be short, with no estimate; as JSON lines
    # (read whole: counted) it is short too; both convert val first and verify counts their epochs
    assert domain.repeat.estimated and domain.repeat.source_tokens is None and domain.repeat.epochs is None
    assert as_json_lines.repeat.estimated and as_json_lines.repeat.epochs > 1
    assert domain.convert.val_first and as_json_lines.convert.val_first
    assert (domain.max_tokens, domain.val_tokens, domain.repeat.budget_rows) == \
        (as_json_lines.max_tokens, as_json_lines.val_tokens, as_json_lines.repeat.budget_rows)
    assert call_cli("convert-subset", "--plan", tmp_path / "plan.json", "--subset", "domain",
                    "--num_workers", 0).returncode == 0


def test_domain_source_format_wins_over_convert_options_for_the_domain_alone(sample_dir, tokenizer_dir, code_dir,
                                                                             csv_corpus):
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root="/tmp/x", num_workers=0,
                           domain=str(code_dir), domain_text_field="content", total_tokens=400_000, concat_tokens=256,
                           val_fraction=0, domain_source_format="files", convert_options={"source_format": "files"}))
    assert {s.convert.source_format for s in body.subsets} == {"files"}
    with pytest.raises(ValueError, match="domain_source_format"):
        PlanConfig(out_root="/tmp/x", domain_source_format="csv")
    files_only = _plan_error(sample_dir, tokenizer_dir, domain=str(csv_corpus), domain_source_format="files",
                             total_tokens=1e6, concat_tokens=256, val_fraction=0)
    assert "--domain_source_format datasets" in files_only and "--source_format" not in \
        files_only.replace("--domain_source_format", ""), files_only


def test_the_mix_components_hint_names_convert_options(sample_dir, tokenizer_dir, csv_corpus, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"name": "csv", "version": 1, "components": {
        "code": {"dataset": str(csv_corpus), "text_field": "body", "proportion": 1.0}}}))
    message = _plan_error(sample_dir, tokenizer_dir, mix=str(mix), total_tokens=10_000, concat_tokens=256,
                            val_fraction=0)
    assert f"mix csv component code ({csv_corpus}): " in message and \
        """(--convert_options '{"source_format": "datasets"}' reads other layouts""" in message, message
    plan(PlanConfig(tokenizer=str(tokenizer_dir), out_root="/tmp/x", mix=str(mix), total_tokens=10_000,
                    concat_tokens=256, val_fraction=0, convert_options={"source_format": "datasets"}))


# --- the printed table --------------------------------------------------------------------------------------------

def test_the_printed_table_fits_long_component_names(sample_dir, tokenizer_dir, tmp_path):
    from cpt_tasks.plan.plan_job import format_plan

    long_name = "a-component-with-a-rather-long-name-indeed"
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"name": "long", "version": 1, "components": {
        long_name: {"dataset": str(sample_dir), "subset": "wiki", "proportion": 0.5},
        "w": {"dataset": str(sample_dir), "subset": "math", "proportion": 0.5}}}))
    body = plan(PlanConfig(tokenizer=str(tokenizer_dir), out_root="/tmp/x", mix=str(mix),
                           total_tokens=123_456_789_000, concat_tokens=256, val_fraction=0.25))
    lines = format_plan(body).splitlines()
    header = next(line for line in lines if line.startswith("subset "))
    rows = [line for line in lines if line.split(" ", 1)[0] in (long_name, "w")]
    assert len(rows) == 2
    for title in ("proportion", "max_tokens", "val_tokens", "epochs"):
        end = header.index(title) + len(title)
        for row in rows:  # each value ends where its title ends, with a space before it
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (title, header, row)
    for row, s in zip(rows, body.subsets):
        assert row.index(s.out_root) == header.index("out_root") and row.startswith(s.name + "  ")
        fields = row[len(s.name):].split()
        assert fields[1:3] == [f"{s.max_tokens:,}", f"{s.val_tokens:,}"]

