"""`cpt-tasks plan`: budgets from one number, validation, and fingerprint-addressed locations."""

import json

import pytest
from conftest import call_cli

from cpt_tasks.cli import build_parser
from cpt_tasks.cli_args import build_config
from cpt_tasks.configs.convert import ConvertConfig
from cpt_tasks.configs.plan import PlanConfig
from cpt_tasks.documents import DocumentError, read_document, write_document
from cpt_tasks.documents.plan import Plan, PlannedMix, PlannedSubset, PlannedTokenizer
from cpt_tasks.documents.plan import load_plan
from cpt_tasks.errors import UserError
from cpt_tasks.plan.run import plan, planned_subset

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
    connect_timeout=3.5, read_timeout=7.5, max_retries=2)


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
    from cpt_tasks.convert.run import convert

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
