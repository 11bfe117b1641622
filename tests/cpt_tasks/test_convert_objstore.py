"""Object-storage inputs on a real S3-compatible server (moto) on 127.0.0.1: JSON lines and parquet under a
prefix convert like the same files on disk; a corrupt object fails with exit 3 and no manifest; a cut stream
resumes by byte range to the same bytes; a missing prefix is a UserError naming the URL."""

import base64
import hashlib

import boto3
import numpy as np
import pytest
from conftest import call_cli, read_rows
from faulty_proxy import FaultyProxy
from test_convert_parquet import CONCAT, sample_texts, write_corpus

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def uploaded(s3_server, tmp_path_factory, sample_dir):
    """The same corpus as local files and as objects: s3://cpt/in/data/<fmt>/… (the parquet objects carry a
    SHA-256 checksum, the JSON lines ones only their MD5 ETag)."""
    root = tmp_path_factory.mktemp("inputs")
    files = sample_texts(sample_dir, "wiki") + sample_texts(sample_dir, "math")
    local = {fmt: write_corpus(root / fmt, files, fmt) for fmt in ("jsonl", "parquet")}
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    for fmt, folder in local.items():
        for path in sorted(folder.iterdir()):
            extra = {"ChecksumAlgorithm": "SHA256"} if fmt == "parquet" else {}
            client.put_object(Bucket="cpt", Key=f"in/data/{fmt}/{path.name}", Body=path.read_bytes(), **extra)
    client.put_object(Bucket="cpt", Key="in/data/jsonl/README.md", Body=b"not an input")
    return local


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Retries wait milliseconds, not seconds (the storage layer's backoff is read when each retry sleeps)."""
    from cpt_tasks.storage import network

    monkeypatch.setattr(network, "BACKOFF_BASE", 0.01)


@pytest.fixture
def proxy(s3_server, monkeypatch):
    faulty = FaultyProxy(s3_server["S3_ENDPOINT_URL"])
    monkeypatch.setenv("S3_ENDPOINT_URL", faulty.url)
    yield faulty
    faulty.close()


def config(dataset, out, tokenizer_dir, **extra):
    values = dict(concat_tokens=CONCAT, max_tokens=30 * CONCAT, val_tokens=2 * CONCAT, num_workers=0)
    return ConvertConfig(dataset=dataset, out_root=str(out), tokenizer=str(tokenizer_dir), **{**values, **extra})


@pytest.mark.parametrize("fmt,algorithm", [("jsonl", "md5"), ("parquet", "sha256")])
@pytest.mark.parametrize("shuffle", [False, True])
def test_objects_convert_like_local_files(uploaded, tmp_path, tokenizer_dir, fmt, algorithm, shuffle):
    remote = convert(config("s3://cpt/in/", tmp_path / "remote", tokenizer_dir, data_subset=fmt, shuffle=shuffle),
                     progress_interval=0)
    local = convert(config(str(uploaded[fmt]), tmp_path / "local", tokenizer_dir, shuffle=shuffle),
                    progress_interval=0)
    for split in ("train", "val"):
        assert np.array_equal(read_rows(tmp_path / "remote" / split), read_rows(tmp_path / "local" / split))
    source = remote.manifest.source
    assert source.kind == "s3" and source.dataset == "s3://cpt/in/" and source.revision is None
    local_files = {f.path: f for f in local.manifest.source.files}
    assert [f.path for f in source.files] == sorted(local_files)  # keys relative to <prefix>/data/<fmt>/
    for f in source.files:
        data = (uploaded[fmt] / f.path).read_bytes()
        assert f.size == len(data) and f.algorithm == algorithm
        assert f.sha256 == hashlib.new(algorithm, data).hexdigest()


def test_fingerprint_is_content_addressed(uploaded, s3_server, tmp_path, tokenizer_dir):
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    for path in sorted(uploaded["jsonl"].iterdir()):
        client.put_object(Bucket="cpt", Key=f"copy/elsewhere/{path.name}", Body=path.read_bytes())
    first = convert(config("s3://cpt/in/data/jsonl", tmp_path / "a", tokenizer_dir), progress_interval=0)
    moved = convert(config("s3://cpt/copy/elsewhere/", tmp_path / "a", tokenizer_dir), progress_interval=0)
    assert moved.already_complete and moved.fingerprint == first.fingerprint


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_corrupt_object_is_bad_data_and_leaves_no_manifest(uploaded, proxy, tmp_path, tokenizer_dir, fmt):
    proxy.mode, proxy.match = "flip", f"/in/data/{fmt}/part-01"
    result = call_cli("convert", "--dataset", "s3://cpt/in", "--data_subset", fmt, "--out_root", tmp_path / "out",
                      "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--num_workers", 0)
    assert result.returncode == 3, result.stderr
    algorithm = "md5" if fmt == "jsonl" else "sha256"
    assert f"s3://cpt/in/data/{fmt}/part-01.{fmt}: {algorithm} " in result.stderr and "does not match" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_cut_stream_resumes_by_range_to_the_same_bytes(uploaded, proxy, tmp_path, tokenizer_dir, fmt, capfd):
    cfg = config("s3://cpt/in", tmp_path / "resumed", tokenizer_dir, data_subset=fmt, max_tokens=None, val_tokens=0)
    proxy.mode, proxy.match, proxy.cuts = "cut", f"/in/data/{fmt}/part-00", 2
    resumed = convert(cfg, progress_interval=0)
    proxy.mode = None
    clean = convert(cfg.model_copy(update={"out_root": str(tmp_path / "clean")}), progress_interval=0)
    assert proxy.cuts == 0 and "resuming from there" in capfd.readouterr().err
    ranges = [rng for _, rng in proxy.gets]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[2].startswith("bytes=")
    assert 0 < int(ranges[1][6:-1]) < int(ranges[2][6:-1])  # each resume starts at the byte reached
    assert np.array_equal(read_rows(tmp_path / "resumed" / "train"), read_rows(tmp_path / "clean" / "train"))
    assert resumed.fingerprint == clean.fingerprint


def test_stream_cut_more_often_than_retries_fails_as_transient(uploaded, proxy, tmp_path, tokenizer_dir):
    proxy.mode, proxy.match, proxy.cuts = "cut", "/in/data/jsonl/part-00", 100
    result = call_cli("convert", "--dataset", "s3://cpt/in/data/jsonl/", "--out_root", tmp_path / "out",
                      "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--num_workers", 0, "--max_retries", 1)
    assert result.returncode == 1, result.stderr
    assert "1 retries exhausted" in result.stderr and not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("dataset,subset,message", [
    ("s3://cpt/nothing/here/", None, "--dataset s3://cpt/nothing/here/: no .json"),
    ("s3://cpt/in", "nosuch", "objects at s3://cpt/in/data/nosuch/ or s3://cpt/in/nosuch/"),
    ("s3://no-such-bucket/x", None, "--dataset s3://no-such-bucket/x/: NoSuchBucket"),
])
def test_missing_prefix_is_a_user_error(uploaded, tmp_path, tokenizer_dir, dataset, subset, message):
    args = ["--data_subset", subset] if subset else []
    result = call_cli("convert", "--dataset", dataset, *args, "--out_root", tmp_path / "out",
                      "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--num_workers", 0)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_checksum_is_read_from_the_store(uploaded, s3_server):
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    head = client.head_object(Bucket="cpt", Key="in/data/parquet/part-00.parquet", ChecksumMode="ENABLED")
    data = (uploaded["parquet"] / "part-00.parquet").read_bytes()
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == hashlib.sha256(data).hexdigest()


def test_multipart_object_is_checked_by_size_and_calls_carry_the_network_options(s3_server):
    """A multipart ETag ("<md5 of md5s>-<parts>") is no hash of the bytes: recorded, and the size alone checked."""
    from cpt_tasks.data.objstore import resolve_objects
    from cpt_tasks.storage import Network, object_store

    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    line = b'{"text": "a line of text"}\n'
    body = line * ((5 << 20) // len(line) + 1) + line * 10
    upload = client.create_multipart_upload(Bucket="cpt", Key="multi/big.jsonl")["UploadId"]
    parts = []
    for number, start in enumerate((0, 5 << 20), start=1):
        part = client.upload_part(Bucket="cpt", Key="multi/big.jsonl", UploadId=upload, PartNumber=number,
                                  Body=body[start:start + (5 << 20)] if number == 1 else body[start:])
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    client.complete_multipart_upload(Bucket="cpt", Key="multi/big.jsonl", UploadId=upload,
                                     MultipartUpload={"Parts": parts})
    source = resolve_objects("s3://cpt/multi/", None, "train", Network(2.5, 4.5, 3))
    [listed] = source.files
    assert (listed.rel, listed.size, listed.algorithm) == ("big.jsonl", len(body), None)
    assert listed.sha256.endswith("-2")
    with listed.opener() as stream:
        assert b"".join(iter(lambda: stream.read(1 << 20), b"")) == body
    store = object_store("s3://cpt/multi/", Network(2.5, 4.5, 3))
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.5, 4.5) and store.network.max_retries == 3
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}  # the layer retries, not botocore
