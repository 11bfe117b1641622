"""Object storage: convert to s3:// on a real S3-compatible server on 127.0.0.1 and read it back."""

import json

import boto3
import numpy as np
import pytest
from conftest import call_cli, read_rows

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert

pytestmark = pytest.mark.s3


def keys(env, prefix):
    client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"])
    return {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket="cpt", Prefix=prefix).get("Contents", [])}


def test_s3_output_matches_local_and_rerun_is_noop(s3_server, tmp_path, sample_dir, tokenizer_dir):
    common = dict(dataset=str(sample_dir), data_subset="wiki", tokenizer=str(tokenizer_dir), concat_tokens=1024,
                  max_tokens=30 * 1024, val_tokens=3 * 1024, shuffle=True, size_limit="64kb")
    remote = convert(ConvertConfig(out_root="s3://cpt/runs/wiki", **common), progress_interval=0)
    local = convert(ConvertConfig(out_root=str(tmp_path / "wiki"), **common), progress_interval=0)
    assert remote.fingerprint == local.fingerprint
    stored = keys(s3_server, "runs/wiki/")
    assert "runs/wiki/manifest.json" in stored and "runs/wiki/train/index.json" in stored
    assert len([k for k in stored if k.startswith("runs/wiki/train/shard.")]) > 1
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    for path in sorted((tmp_path / "wiki").rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            key = "runs/wiki/" + str(path.relative_to(tmp_path / "wiki"))
            assert client.get_object(Bucket="cpt", Key=key)["Body"].read() == path.read_bytes(), key
    manifest = json.loads(client.get_object(Bucket="cpt", Key="runs/wiki/manifest.json")["Body"].read())
    assert manifest["splits"] == local.manifest.model_dump(mode="json")["splits"]

    rerun = call_cli("convert", "--dataset", sample_dir, "--data_subset", "wiki", "--out_root", "s3://cpt/runs/wiki",
                    "--tokenizer", tokenizer_dir, "--concat_tokens", 1024, "--max_tokens", 30 * 1024,
                    "--val_tokens", 3 * 1024, "--shuffle", "--size_limit", "64kb", check=True)
    assert "already complete" in rerun.stdout and keys(s3_server, "runs/wiki/") == stored


@pytest.mark.llmfoundry
def test_streaming_reads_back_from_s3(s3_server, tmp_path, sample_dir, tokenizer_dir):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    cfg = ConvertConfig(dataset=str(sample_dir), data_subset="math", tokenizer=str(tokenizer_dir),
                        concat_tokens=256, max_tokens=20 * 256, out_root="s3://cpt/math")
    convert(cfg, progress_interval=0)
    convert(cfg.model_copy(update={"out_root": str(tmp_path / "local")}), progress_interval=0)
    clean_stale_shared_memory()
    ds = StreamingDataset(remote="s3://cpt/math/train", local=str(tmp_path / "cache"), shuffle=False, batch_size=1)
    rows = np.stack([ds[i]["tokens"] for i in range(ds.num_samples)])
    assert rows.shape == (20, 256) and np.array_equal(rows, read_rows(tmp_path / "local" / "train"))


def test_killed_remote_output_is_replaced(s3_server, sample_dir, tokenizer_dir):
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    client.put_object(Bucket="cpt", Key="half/train/shard.00007.mds.zstd", Body=b"left by a killed attempt")
    cfg = ConvertConfig(dataset=str(sample_dir), data_subset="pes2o", tokenizer=str(tokenizer_dir),
                        concat_tokens=256, max_tokens=10 * 256, out_root="s3://cpt/half")
    convert(cfg, progress_interval=0)
    assert "half/train/shard.00007.mds.zstd" not in keys(s3_server, "half/")
