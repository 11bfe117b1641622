"""`cpt-tasks verify`: passes on a good conversion and fails, naming the problem, on each kind of damage —
locally and on the S3-compatible server."""

import json
import shutil
from pathlib import Path

import boto3
import pytest
from conftest import call_cli, copy_run, edit_plan
from test_train_config import finished_manifest  # noqa: F401 (a fixture)

from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.documents import read_document, write_document
from cpt_tasks.documents.convert_docs import ConvertManifest
from cpt_tasks.documents.plan_docs import load_plan
from cpt_tasks.documents.train_docs import FinishedRun
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.plan.plan_job import plan
from cpt_tasks.runs.status import run_paths
from cpt_tasks.verify.verify_job import verify

SMALL = dict(total_tokens=350_000, concat_tokens=256, val_fraction=0.03)


def plan_and_convert(root: str, plan_path: str, sample_dir, tokenizer_dir, **overrides):
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root=root,
                           **{**SMALL, **overrides}))
    write_document(plan_path, body)
    for sub in body.subsets:
        convert(sub.convert, progress_interval=0)
    return body


@pytest.fixture(scope="module")
def good(tmp_path_factory, sample_dir, tokenizer_dir):
    root = tmp_path_factory.mktemp("good")
    plan_and_convert(str(root / "data"), str(root / "plan.json"), sample_dir, tokenizer_dir)
    return root


@pytest.fixture
def copy(good, tmp_path):
    """A private copy of the good run (plan rewritten to point at it)."""
    copy_run(str(good), str(tmp_path / "run"))
    return tmp_path / "run"


def subset_dir(root: Path, name: str) -> Path:
    return Path(load_plan(str(root / "plan.json"))[0].subset(name).out_root)


def report_at(location: str) -> VerifyReport:
    return read_document(location, VerifyReport)[0]


def failed_checks(report: VerifyReport) -> dict[str, list[str]]:
    return {s.name: [c.check for c in s.checks if not c.ok] for s in report.subsets
            if any(not c.ok for c in s.checks)}


def test_good_run_passes_and_writes_the_report(copy):
    proc = call_cli("verify", "--plan", copy / "plan.json", check=True)
    assert "Verification PASSED" in proc.stdout
    report = report_at(str(copy / "verify-report.json"))
    assert report.ok and [s.status for s in report.subsets] == ["ok"] * 6
    for s in report.subsets:
        manifest = read_document(s.manifest, ConvertManifest)[0]
        assert s.train_tokens == manifest.splits["train"].tokens == s.planned_train_tokens
        assert s.val_tokens == manifest.splits["val"].tokens
        assert {c.check for c in s.checks} >= {"framing:ids", "framing:first_row", "decode", "disjoint", "mix"}
    md = (copy / "verify-report.md").read_text()
    assert table_rows(md)[0] == ["subset", "role", "planned", "unique", "epochs", "trained", "share",
                                 "planned share", "val", "status"]
    assert f"{report.realized_train_tokens:,} of {report.total_tokens:,} planned train tokens." in md
    assert report.trained_tokens is None and all(s.trained_tokens is None and s.epochs == 1 for s in report.subsets)
    assert (copy / "verify-mix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.plan.fingerprint == load_plan(str(copy / "plan.json"))[0].fingerprint


def table_rows(md: str) -> list[list[str]]:
    """The first Markdown table's rows (header first), cells stripped."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    end = next((i for i, r in enumerate(rows) if i > 1 and r[0] == "subset"), len(rows))  # the failed checks'
    return [rows[0], *rows[2:end]]


LONG = "debian-changelog-entries-2024"


def test_a_repeated_domain_shows_unique_tokens_epochs_and_trained_tokens_whose_share_is_the_plans(
        tmp_path, sample_dir, tokenizer_dir):
    from cpt_local.samples.code_corpus import write_domain_sample

    corpus = tmp_path / "corpus"
    write_domain_sample(corpus, "python", documents=60)
    body = plan_and_convert(str(tmp_path / "d"), str(tmp_path / "plan.json"), sample_dir, tokenizer_dir,
                            subsets=["wiki", "math"], total_tokens=18_000, val_fraction=0, domain=str(corpus),
                            domain_text_field="content", domain_name=LONG, replay_fraction=0.25)
    planned = body.subset(LONG)
    assert planned.repeat is not None and planned.repeat.epochs > 1.2  # the corpus is well short of its budget
    report = verify(VerifyConfig(plan=str(tmp_path / "plan.json"), num_workers=0)).report
    assert report.ok, failed_checks(report)
    got = {s.name: s for s in report.subsets}
    domain, concat = got[LONG], report.concat_tokens
    converted = read_document(domain.manifest, ConvertManifest)[0].splits["train"]
    assert domain.train_tokens == converted.tokens < planned.train_rows * concat == domain.trained
    assert domain.epochs == planned.repeat.budget_rows / converted.samples  # counted, not the plan's estimate
    assert domain.trained == domain.trained_tokens == round(domain.train_tokens * domain.epochs)
    assert domain.planned_trained == planned.repeat.budget_rows * concat == domain.trained
    assert report.trained_tokens == sum(s.trained for s in report.subsets)
    # the unique tokens' share is far from the plan (what the report used to show); the trained tokens' is it
    assert abs(domain.train_tokens / report.realized_train_tokens - domain.proportion) > 0.05
    for s in report.subsets:
        assert abs(s.share * report.trained_tokens - s.proportion * report.trained_tokens) <= concat, s.name
        assert s.share == pytest.approx(s.trained / report.trained_tokens)
    md = (tmp_path / "verify-report.md").read_text()
    assert (f"{report.trained_tokens:,} of {report.total_tokens:,} planned train tokens trained "
            f"({report.realized_train_tokens:,} unique; {LONG} repeated {domain.epochs:.2f} epochs)") in md
    header, *rows = table_rows(md)
    cells = {r[0]: dict(zip(header, r)) for r in rows}
    assert cells[LONG] == {"subset": LONG, "role": "domain", "planned": f"{domain.planned_trained:,}",
                           "unique": f"{domain.train_tokens:,}", "epochs": f"{domain.epochs:.2f}",
                           "trained": f"{domain.trained:,}", "share": f"{domain.share:.2%}",
                           "planned share": f"{domain.proportion:.2%}", "val": "0", "status": "ok"}
    for name, row in cells.items():  # the share column, read back, is the planned share within a row
        share, plan_share = (float(row[k].rstrip("%")) / 100 for k in ("share", "planned share"))
        assert abs(share - plan_share) * report.trained_tokens <= concat + 0.0001 * report.trained_tokens, name
        assert row["epochs"] == ("1" if name != LONG else f"{domain.epochs:.2f}")
    table = [line for line in md.splitlines() if line.startswith("|")][:len(rows) + 2]
    assert len({len(line) for line in table}) == 1  # columns padded to the long name: aligned as plain text


def test_the_step_result_names_the_plans_finished_run_for_the_train_gate(copy, tmp_path, monkeypatch,
                                                                       finished_manifest):
    fingerprint = load_plan(str(copy / "plan.json"))[0].fingerprint
    save_root = str(tmp_path / "checkpoints")
    result_file = tmp_path / "result.json"
    monkeypatch.setenv("CPT_RESULT_FILE", str(result_file))
    call_cli("verify", "--plan", copy / "plan.json", "--save_root", save_root, check=True)
    assert json.loads(result_file.read_text())["finished_training"] is None  # nothing trained yet
    paths = run_paths(save_root, fingerprint, "r")
    write_document(paths.manifest, finished_manifest.model_copy(update={
        "plan": finished_manifest.plan.model_copy(update={"fingerprint": fingerprint})}))
    write_document(paths.finished_pointer(fingerprint), FinishedRun(
        run_name=paths.run_name, run_folder=paths.folder, run_manifest=paths.manifest, plan_fingerprint=fingerprint,
        final_step=7, train_tokens=70, checkpoint=None, hf_export=paths.hf, finished_at="now"))
    call_cli("verify", "--plan", copy / "plan.json", "--save_root", save_root, check=True)
    assert json.loads(result_file.read_text())["finished_training"]["run_folder"] == paths.folder
    assert report_at(str(copy / "verify-report.json")).finished_training is None  # verification's own report


def test_deleted_shard(copy):
    (subset_dir(copy, "flan") / "train" / "shard.00000.mds.zstd").unlink()
    proc = call_cli("verify", "--plan", copy / "plan.json")
    assert proc.returncode == 3 and "Verification FAILED" in proc.stdout
    assert "shard.00000.mds.zstd: missing" in proc.stdout
    assert failed_checks(report_at(str(copy / "verify-report.json"))) == {"flan": ["shards:train"]}


def test_corrupted_shard_bytes(copy):
    shard = subset_dir(copy, "wiki") / "train" / "shard.00000.mds.zstd"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify(VerifyConfig(plan=str(copy / "plan.json"), num_workers=0)).report
    assert failed_checks(report) == {"wiki": ["shards:train"]}
    assert "sha1 differs" in report.model_dump_json()


def test_damaged_decompressed_copy_that_streaming_would_read(copy):
    import zstd

    train = subset_dir(copy, "wiki") / "train"
    raw = bytearray(zstd.decompress((train / "shard.00000.mds.zstd").read_bytes()))
    (train / "shard.00000.mds").write_bytes(bytes(raw))  # what streaming leaves after reading a local dataset
    assert verify(VerifyConfig(plan=str(copy / "plan.json"), num_workers=0)).ok
    raw[len(raw) // 2] ^= 0xFF
    (train / "shard.00000.mds").write_bytes(bytes(raw))
    report = verify(VerifyConfig(plan=str(copy / "plan.json"), num_workers=0)).report
    assert failed_checks(report) == {"wiki": ["shards:train"]}
    assert "the decompressed copy that streaming reads" in report.model_dump_json()


def test_tampered_index(copy):
    index = subset_dir(copy, "math") / "val" / "index.json"
    data = json.loads(index.read_text())
    data["shards"][0]["samples"] += 1
    index.write_text(json.dumps(data))
    report = verify(VerifyConfig(plan=str(copy / "plan.json"))).report
    assert failed_checks(report) == {"math": ["count:val", "shards:val"]}


def test_manifest_with_another_fingerprint(copy):
    path = subset_dir(copy, "pes2o") / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["fingerprint"] = "0" * 64
    path.write_text(json.dumps(manifest))
    proc = call_cli("verify", "--plan", copy / "plan.json")
    assert proc.returncode == 3
    assert failed_checks(report_at(str(copy / "verify-report.json"))) == {"pes2o": ["fingerprint"]}


def test_missing_manifest(copy):
    (subset_dir(copy, "dclm") / "manifest.json").unlink()
    report = verify(VerifyConfig(plan=str(copy / "plan.json"))).report
    assert failed_checks(report) == {"dclm": ["manifest"]} and not report.ok


def set_proportions(proportions: dict[str, float]):
    def edit(body) -> None:
        for s in body.subsets:
            s.proportion = proportions.get(s.name, s.proportion)
    return edit


def test_wrong_proportion(copy):
    edit_plan(str(copy / "plan.json"), set_proportions({"dclm": 0.40, "flan": 0.238}))
    report = verify(VerifyConfig(plan=str(copy / "plan.json"))).report
    assert failed_checks(report) == {"dclm": ["mix"], "flan": ["mix"]}


def test_framing_other_than_the_recorded_tokens(copy):
    """The data's framing ids are checked against the tokenizer's ids for the texts the conversion recorded."""
    location = str(subset_dir(copy, "flan") / "manifest.json")
    manifest = read_document(location, ConvertManifest)[0]
    manifest.tokenizer.bos_id = 128002
    write_document(location, manifest)
    report = verify(VerifyConfig(plan=str(copy / "plan.json"), num_workers=0)).report
    assert failed_checks(report) == {"flan": ["framing:ids", "framing:first_row"]}
    assert "recorded BOS id is 128002" in report.model_dump_json()


def test_short_subset_fails_unless_allowed(tmp_path, sample_dir, tokenizer_dir):
    overrides = {"overrides": {"pes2o": {"max_tokens": 1e6}}}
    plan_and_convert(str(tmp_path / "a"), str(tmp_path / "a.json"), sample_dir, tokenizer_dir, **overrides)
    report = verify(VerifyConfig(plan=str(tmp_path / "a.json"))).report
    assert failed_checks(report) == {"pes2o": ["budget:train", "budget:val", "mix"]}
    plan_and_convert(str(tmp_path / "b"), str(tmp_path / "b.json"), sample_dir, tokenizer_dir, allow_short=True,
                     **overrides)
    report = verify(VerifyConfig(plan=str(tmp_path / "b.json"))).report
    assert report.ok and {s.name: s.status for s in report.subsets}["pes2o"] == "short"


def test_missing_plan_is_a_user_error(tmp_path):
    proc = call_cli("verify", "--plan", tmp_path / "nope.json")
    assert proc.returncode == 2 and "no such file" in proc.stderr


def s3_json(client, key):
    return json.loads(client.get_object(Bucket="cpt", Key=key)["Body"].read())


@pytest.fixture(scope="module")
def s3_good(s3_server, sample_dir, tokenizer_dir) -> str:
    """Two subsets planned and converted once on the S3 server; the passing case and each damage case work on a
    copy."""
    plan_and_convert("s3://cpt/damage-good", "s3://cpt/damage-good/plan.json", sample_dir, tokenizer_dir,
                     subsets=["flan", "math"], total_tokens=100_000)
    return "s3://cpt/damage-good"


@pytest.mark.s3
@pytest.mark.parametrize("damage", ["index", "fingerprint", "short", "proportion"])  # a deleted shard: below
def test_each_damage_on_object_storage(s3_server, s3_good, sample_dir, tokenizer_dir, damage):
    root, prefix = f"s3://cpt/damage-{damage}", f"damage-{damage}/"
    if damage == "short":  # a source that runs out: its own conversion
        plan_and_convert(root, f"{root}/plan.json", sample_dir, tokenizer_dir, subsets=["math"],
                         total_tokens=100_000, overrides={"math": {"max_tokens": 1e6}})
    else:
        copy_run(s3_good, root)
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix=prefix)["Contents"]]
    if damage == "index":
        key = next(k for k in keys if k.endswith("/flan/train/index.json"))
        index = s3_json(client, key)
        index["shards"][0]["zip_data"]["bytes"] += 1
        client.put_object(Bucket="cpt", Key=key, Body=json.dumps(index).encode())
        expected = {"flan": ["shards:train"]}
    elif damage == "fingerprint":
        key = next(k for k in keys if k.endswith("/math/manifest.json"))
        manifest = s3_json(client, key)
        manifest["fingerprint"] = "f" * 64
        client.put_object(Bucket="cpt", Key=key, Body=json.dumps(manifest).encode())
        expected = {"math": ["fingerprint"]}
    elif damage == "short":
        expected = {"math": ["budget:train", "budget:val", "mix"]}
    else:
        edit_plan(f"{root}/plan.json", set_proportions({"flan": 0.5, "math": 0.5}))
        expected = {"flan": ["mix"], "math": ["mix"]}
    proc = call_cli("verify", "--plan", f"{root}/plan.json")
    assert proc.returncode == 3 and "Verification FAILED" in proc.stdout
    assert failed_checks(report_at(f"{root}/verify-report.json")) == expected


@pytest.mark.s3
def test_on_object_storage(s3_server, s3_good):
    """The good conversion on S3 passes, its report written beside the plan; a deleted shard then fails it (the
    shard damage of the cases above, on this copy)."""
    copy_run(s3_good, "s3://cpt/verify")
    report = verify(VerifyConfig(plan="s3://cpt/verify/plan.json")).report
    assert report.ok and [s.status for s in report.subsets] == ["ok", "ok"]
    assert report_at("s3://cpt/verify/verify-report.json").ok
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    key = next(o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix="verify/")["Contents"]
               if "/flan/train/shard." in o["Key"])
    client.delete_object(Bucket="cpt", Key=key)
    proc = call_cli("verify", "--plan", "s3://cpt/verify/plan.json")
    assert proc.returncode == 3 and "Verification FAILED" in proc.stdout
    assert f"{key.rsplit('/', 1)[1]}: missing" in proc.stdout, proc.stdout
    assert failed_checks(report_at("s3://cpt/verify/verify-report.json")) == {"flan": ["shards:train"]}


def rewrite_train(root: Path, name: str, token: int) -> None:
    """Replace a subset's train split with as many rows of one repeated id: a consistent index, odd rows."""
    import numpy as np

    from cpt_tasks.configs.config_base import parse_size
    from cpt_tasks.convert.mds import TokenShardWriter

    train = subset_dir(root, name) / "train"
    rows = read_document(str(subset_dir(root, name) / "manifest.json"), ConvertManifest)[0].splits["train"].samples
    shutil.rmtree(train)
    writer = TokenShardWriter(str(train), "zstd", parse_size("64mb"), ["sha1"])
    for _ in range(rows):
        writer.write(np.full(256, token, dtype=np.int32))
    writer.finish()


def test_rows_that_do_not_decode_to_text(copy):
    rewrite_train(copy, "math", 128001)  # valid ids, but no text at all (and no BOS first)
    report = verify(VerifyConfig(plan=str(copy / "plan.json"))).report
    assert failed_checks(report) == {"math": ["decode", "framing:first_row"]}


def test_out_of_range_ids_fail_the_check_without_crashing(copy):
    rewrite_train(copy, "wiki", 200_000)
    proc = call_cli("verify", "--plan", copy / "plan.json")
    assert proc.returncode == 3 and "ids outside [0, 128256)" in proc.stdout
    assert failed_checks(report_at(str(copy / "verify-report.json"))) == {"wiki": ["shards:train"]}


def test_overridden_subsets_pass_the_mix_check(tmp_path, sample_dir, tokenizer_dir):
    plan_and_convert(str(tmp_path / "d"), str(tmp_path / "p.json"), sample_dir, tokenizer_dir,
                     subsets=["math", "wiki"], total_tokens=100_000, val_fraction=0,
                     overrides={"math": {"max_tokens": 5120}})
    report = verify(VerifyConfig(plan=str(tmp_path / "p.json"))).report
    assert report.ok, failed_checks(report)


def test_a_conversion_framed_with_other_tokens_is_verified_with_its_own(tmp_path, sample_dir, tokenizer_dir):
    framing = {"bos_text": "<|reserved_special_token_0|>", "eos_text": "<|reserved_special_token_1|>"}
    plan_and_convert(str(tmp_path / "d"), str(tmp_path / "p.json"), sample_dir, tokenizer_dir, subsets=["wiki"],
                     total_tokens=20_000, val_fraction=0, convert_options=framing)
    report = verify(VerifyConfig(plan=str(tmp_path / "p.json"), num_workers=0)).report
    assert report.ok, failed_checks(report)
    manifest = read_document(report.subsets[0].manifest, ConvertManifest)[0]
    assert (manifest.framing.bos_id, manifest.framing.eos_id) == (128002, 128003)
    first_row = next(c for c in report.subsets[0].checks if c.check == "framing:first_row")
    assert first_row.ok and "recorded BOS id is 128002" in first_row.detail
