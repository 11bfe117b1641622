"""`cpt-tasks verify`: passes on a good conversion and fails, naming the problem, on each kind of damage —
locally and on the S3-compatible server."""

import json
import shutil
from pathlib import Path

import boto3
import pytest
from conftest import run_cli

from cpt_tasks.convert.run import convert
from cpt_tasks.plan.config import PlanConfig
from cpt_tasks.plan.run import plan, planned_config
from cpt_tasks.storage import write_bytes_atomic
from cpt_tasks.verify.config import VerifyConfig
from cpt_tasks.verify.run import verify

SMALL = dict(total_tokens=350_000, concat_tokens=256, val_fraction=0.03)


def plan_and_convert(root: str, plan_path: str, sample_dir, tokenizer_dir, **overrides) -> dict:
    body = plan(PlanConfig(dataset=str(sample_dir), tokenizer=str(tokenizer_dir), out_root=root,
                           **{**SMALL, **overrides}))
    write_bytes_atomic(plan_path, json.dumps(body).encode())
    for sub in body["subsets"]:
        convert(planned_config(sub), progress_interval=0)
    return body


@pytest.fixture(scope="module")
def good(tmp_path_factory, sample_dir, tokenizer_dir):
    root = tmp_path_factory.mktemp("good")
    plan_and_convert(str(root / "data"), str(root / "plan.json"), sample_dir, tokenizer_dir)
    return root


@pytest.fixture
def copy(good, tmp_path):
    """A private copy of the good run (plan rewritten to point at it)."""
    target = tmp_path / "run"
    shutil.copytree(good, target)
    plan_file = target / "plan.json"
    plan_file.write_text(plan_file.read_text().replace(str(good), str(target)))
    return target


def subset_dir(root: Path, name: str) -> Path:
    body = json.loads((root / "plan.json").read_text())
    return Path(next(s["out_root"] for s in body["subsets"] if s["name"] == name))


def failed_checks(report: dict) -> dict[str, list[str]]:
    return {s["name"]: [c["check"] for c in s["checks"] if not c["ok"]] for s in report["subsets"]
            if any(not c["ok"] for c in s["checks"])}


def test_good_run_passes_and_writes_the_report(copy):
    proc = run_cli("verify", "--plan", copy / "plan.json", check=True)
    assert "Verification PASSED" in proc.stdout
    report = json.loads((copy / "verify-report.json").read_text())
    assert report["ok"] and [s["status"] for s in report["subsets"]] == ["ok"] * 6
    for s in report["subsets"]:
        manifest = json.loads(Path(s["manifest"]).read_text())
        assert s["train_tokens"] == manifest["splits"]["train"]["tokens"] == s["planned_train_tokens"]
        assert s["val_tokens"] == manifest["splits"]["val"]["tokens"]
    md = (copy / "verify-report.md").read_text()
    assert "| subset | planned | realized | share | planned share | val | status |" in md
    assert (copy / "verify-mix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["plan"]["fingerprint"] == json.loads((copy / "plan.json").read_text())["fingerprint"]


def test_deleted_shard(copy):
    (subset_dir(copy, "flan") / "train" / "shard.00000.mds.zstd").unlink()
    proc = run_cli("verify", "--plan", copy / "plan.json")
    assert proc.returncode == 3 and "Verification FAILED" in proc.stdout
    assert "shard.00000.mds.zstd: missing" in proc.stdout
    assert failed_checks(json.loads((copy / "verify-report.json").read_text())) == {"flan": ["shards:train"]}


def test_corrupted_shard_bytes(copy):
    shard = subset_dir(copy, "wiki") / "train" / "shard.00000.mds.zstd"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify(VerifyConfig(plan=str(copy / "plan.json"), num_workers=0)).report
    assert failed_checks(report) == {"wiki": ["shards:train"]}
    assert "sha1 differs" in json.dumps(report)


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
    assert "the decompressed copy that streaming reads" in json.dumps(report)


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
    proc = run_cli("verify", "--plan", copy / "plan.json")
    assert proc.returncode == 3
    assert failed_checks(json.loads((copy / "verify-report.json").read_text())) == {"pes2o": ["fingerprint"]}


def test_missing_manifest(copy):
    (subset_dir(copy, "dclm") / "manifest.json").unlink()
    report = verify(VerifyConfig(plan=str(copy / "plan.json"))).report
    assert failed_checks(report) == {"dclm": ["manifest"]} and not report["ok"]


def test_wrong_proportion(copy):
    plan_file = copy / "plan.json"
    body = json.loads(plan_file.read_text())
    for s in body["subsets"]:
        s["proportion"] = {"dclm": 0.40, "flan": 0.238}.get(s["name"], s["proportion"])
    plan_file.write_text(json.dumps(body))
    report = verify(VerifyConfig(plan=str(plan_file))).report
    assert failed_checks(report) == {"dclm": ["mix"], "flan": ["mix"]}


def test_short_subset_fails_unless_allowed(tmp_path, sample_dir, tokenizer_dir):
    overrides = {"overrides": {"pes2o": {"max_tokens": 1e6}}}
    plan_and_convert(str(tmp_path / "a"), str(tmp_path / "a.json"), sample_dir, tokenizer_dir, **overrides)
    report = verify(VerifyConfig(plan=str(tmp_path / "a.json"))).report
    assert failed_checks(report) == {"pes2o": ["budget:train", "budget:val", "mix"]}
    plan_and_convert(str(tmp_path / "b"), str(tmp_path / "b.json"), sample_dir, tokenizer_dir, allow_short=True,
                     **overrides)
    report = verify(VerifyConfig(plan=str(tmp_path / "b.json"))).report
    assert report["ok"] and {s["name"]: s["status"] for s in report["subsets"]}["pes2o"] == "short"


def test_missing_plan_is_a_user_error(tmp_path):
    proc = run_cli("verify", "--plan", tmp_path / "nope.json")
    assert proc.returncode == 2 and "no such file" in proc.stderr


def s3_json(client, key):
    return json.loads(client.get_object(Bucket="cpt", Key=key)["Body"].read())


@pytest.mark.s3
@pytest.mark.parametrize("damage", ["shard", "index", "fingerprint", "short", "proportion"])
def test_each_damage_on_object_storage(s3_server, sample_dir, tokenizer_dir, damage):
    root, prefix = f"s3://cpt/damage-{damage}", f"damage-{damage}/"
    overrides = {"overrides": {"math": {"max_tokens": 1e6}}} if damage == "short" else {}
    plan_and_convert(root, f"{root}/plan.json", sample_dir, tokenizer_dir, subsets=["flan", "math"],
                     total_tokens=100_000, **overrides)
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix=prefix)["Contents"]]
    if damage == "shard":
        client.delete_object(Bucket="cpt", Key=next(k for k in keys if "/flan/train/shard." in k))
        expected = {"flan": ["shards:train"]}
    elif damage == "index":
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
        body = s3_json(client, prefix + "plan.json")
        for sub in body["subsets"]:
            sub["proportion"] = {"flan": 0.5, "math": 0.5}[sub["name"]]
        client.put_object(Bucket="cpt", Key=prefix + "plan.json", Body=json.dumps(body).encode())
        expected = {"flan": ["mix"], "math": ["mix"]}
    proc = run_cli("verify", "--plan", f"{root}/plan.json", env=s3_server)
    assert proc.returncode == 3 and "Verification FAILED" in proc.stdout
    assert failed_checks(s3_json(client, prefix + "verify-report.json")) == expected


@pytest.mark.s3
def test_on_object_storage(s3_server, tmp_path, sample_dir, tokenizer_dir):
    plan_and_convert("s3://cpt/verify", "s3://cpt/verify/plan.json", sample_dir, tokenizer_dir)
    report = verify(VerifyConfig(plan="s3://cpt/verify/plan.json")).report
    assert report["ok"]
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    assert json.loads(client.get_object(Bucket="cpt", Key="verify/verify-report.json")["Body"].read())["ok"]
    key = next(o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix="verify/")["Contents"]
               if "/stackexchange/train/shard." in o["Key"])
    client.delete_object(Bucket="cpt", Key=key)
    proc = run_cli("verify", "--plan", "s3://cpt/verify/plan.json", env=s3_server)
    assert proc.returncode == 3 and "missing" in proc.stdout
    failed = failed_checks(json.loads(client.get_object(Bucket="cpt", Key="verify/verify-report.json")["Body"].read()))
    assert failed == {"stackexchange": ["shards:train"]}


def rewrite_train(root: Path, name: str, token: int) -> None:
    """Replace a subset's train split with as many rows of one repeated id: a consistent index, odd rows."""
    import numpy as np

    from cpt_tasks.convert.mds import TokenShardWriter, parse_size

    train = subset_dir(root, name) / "train"
    rows = json.loads((subset_dir(root, name) / "manifest.json").read_text())["splits"]["train"]["samples"]
    shutil.rmtree(train)
    writer = TokenShardWriter(str(train), "zstd", parse_size("64mb"), ["sha1"])
    for _ in range(rows):
        writer.write(np.full(256, token, dtype=np.int32))
    writer.finish()


def test_rows_that_do_not_decode_to_text(copy):
    rewrite_train(copy, "math", 128001)  # valid ids, but no text at all
    report = verify(VerifyConfig(plan=str(copy / "plan.json"))).report
    assert failed_checks(report) == {"math": ["decode"]}


def test_out_of_range_ids_fail_the_check_without_crashing(copy):
    rewrite_train(copy, "wiki", 200_000)
    proc = run_cli("verify", "--plan", copy / "plan.json")
    assert proc.returncode == 3 and "ids outside [0, 128256)" in proc.stdout
    assert failed_checks(json.loads((copy / "verify-report.json").read_text())) == {"wiki": ["shards:train"]}


def test_overridden_subsets_pass_the_mix_check(tmp_path, sample_dir, tokenizer_dir):
    plan_and_convert(str(tmp_path / "d"), str(tmp_path / "p.json"), sample_dir, tokenizer_dir,
                     subsets=["math", "wiki"], total_tokens=100_000, val_fraction=0,
                     overrides={"math": {"max_tokens": 5120}})
    report = verify(VerifyConfig(plan=str(tmp_path / "p.json"))).report
    assert report["ok"], failed_checks(report)
