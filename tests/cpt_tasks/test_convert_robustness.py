"""Regressions from review: budget-independent reads, dead workers, retryable I/O errors, strict arguments,
object-storage staging, odd inputs, the rank cache and the CPU quota."""

import json
import subprocess
import sys
import textwrap

import orjson
import pytest
from conftest import ROOT, call_cli

from cpt_tasks.configs.convert_config import ConvertConfig, _cgroup_cpu_quota
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.data import sources
from cpt_tasks.data.order import CHUNK_BYTES
from cpt_tasks.errors import UserError

GOOD = b'{"text": "A perfectly fine document about tokenizers and their special tokens."}\n'


def convert_args(src, out, tokenizer_dir, *extra):
    return ["convert", "--dataset", src, "--out_root", out, "--tokenizer", tokenizer_dir, "--concat_tokens", 8,
            *extra]


def test_nothing_past_the_budget_is_read_for_any_worker_count(tmp_path, tokenizer_dir):
    """The first chunk meets the budget; a bad record in the next one is never parsed, whoever tokenizes."""
    src = tmp_path / "late.jsonl"
    first_chunk = CHUNK_BYTES // len(GOOD) + 1_000
    src.write_bytes(GOOD * first_chunk + b'{"text": 42}\n' + b'{"text": ""}\n' * 30_000 + GOOD * 20_000)
    manifests = []
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        call_cli(*convert_args(src, out, tokenizer_dir, "--max_tokens", 800, "--num_workers", workers), check=True)
        manifests.append(json.loads((out / "manifest.json").read_text()))
    assert all(m["documents"] == manifests[0]["documents"] for m in manifests)
    assert all(m["splits"] == manifests[0]["splits"] for m in manifests)


def test_a_dead_worker_fails_the_run_instead_of_hanging(tmp_path, tokenizer_dir):
    src = tmp_path / "d.jsonl"
    src.write_bytes(GOOD * 20_000 + b'{"text": "KILL THE WORKER"}\n' + GOOD * 20_000)
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from cpt_tasks.cli import main
        from cpt_tasks.convert import convert_job
        from cpt_tasks.data import encode

        def killer(payload, *rest):
            if b"KILL THE WORKER" in payload:
                os._exit(9)
            return encode.encode_chunk(payload, *rest)

        convert_job.encode_chunk = killer
        sys.exit(main(["convert", "--dataset", "{src}", "--out_root", "{tmp_path / 'o'}",
                       "--tokenizer", "{tokenizer_dir}", "--concat_tokens", "8", "--num_workers", "2"]))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1 and "a tokenizer worker died" in proc.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_network_errors_stay_retryable(monkeypatch):
    class Broken:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(sources, "_open", lambda url: Broken())
    src = sources.SourceFile("hf://datasets/a/b@c/data/x.json.zst", "data/x.json.zst", 1, "")
    with pytest.raises(ConnectionError):
        list(sources.read_blocks(src))  # exit 1 (retried), never a UserError (exit 2)


@pytest.mark.parametrize("args,message", [
    (["--size_limit", "0"], "--size_limit"), (["--size_limit", "-1mb"], "--size_limit"),
    (["--size_limit", "5gb"], "between 1 byte and 4gb"), (["--size_limit", "lots"], "expected bytes"),
    (["--size_limit", "infb"], "expected bytes"), (["--seed", "-1"], "--seed"),
    (["--compression", "zstd:"], "--compression"),
])
def test_bad_arguments_fail_before_anything_is_touched(tmp_path, tokenizer_dir, args, message):
    (tmp_path / "in.jsonl").write_bytes(GOOD * 50)
    out = tmp_path / "o"
    call_cli(*convert_args(tmp_path / "in.jsonl", out, tokenizer_dir), check=True)
    before = (out / "manifest.json").read_bytes()
    proc = call_cli(*convert_args(tmp_path / "in.jsonl", out, tokenizer_dir, "--overwrite", *args))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert (out / "manifest.json").read_bytes() == before


def test_size_spellings_are_one_value():
    sizes = {ConvertConfig(dataset="d", out_root="o", tokenizer="t", size_limit=v).size_limit
             for v in ("64mb", "64MB", "64MiB", "67108864", 67108864)}
    assert sizes == {1 << 26}


def test_bom_and_json_array_records(tmp_path, tokenizer_dir):
    plain, bom = tmp_path / "plain.jsonl", tmp_path / "bom.jsonl"
    plain.write_bytes(GOOD * 40)
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD * 40)
    for src in (plain, bom):
        convert(ConvertConfig(dataset=str(src), out_root=str(tmp_path / src.stem), tokenizer=str(tokenizer_dir),
                              concat_tokens=8), progress_interval=0)
    assert (tmp_path / "plain/train/shard.00000.mds.zstd").read_bytes() == \
        (tmp_path / "bom/train/shard.00000.mds.zstd").read_bytes()
    array = tmp_path / "a.json"
    array.write_bytes(b"[\n" + b",\n".join([GOOD.strip()] * 3 + [b'{"id": 1}']) + b"\n]")
    for shuffle in ("--no-shuffle", "--shuffle"):
        proc = call_cli(*convert_args(array, tmp_path / "arr", tokenizer_dir, shuffle))
        assert proc.returncode == 2 and "a.json, record 4: record has no 'text' field" in proc.stderr


def test_path_like_dataset_is_never_a_hub_id(tmp_path, tokenizer_dir):
    proc = call_cli(*convert_args("nodir/x.jsonl", tmp_path / "o", tokenizer_dir))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


def test_cpu_quota_caps_default_workers(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(tmp_path) is None


def test_damaged_rank_cache_is_rebuilt(tokenizer_dir, tmp_path, monkeypatch):
    from cpt_tasks.tokenizer import LLAMA3_BOS, LLAMA3_EOS, Encoder

    monkeypatch.setenv("CPT_CACHE_DIR", str(tmp_path))
    texts = ["Rebuilt caches give the same ids."]
    expected = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS).encode(texts)
    ranks = next((tmp_path / "tiktoken").glob("*.ranks"))
    meta = next((tmp_path / "tiktoken").glob("*.json"))
    ranks.write_bytes(ranks.read_bytes()[:1000])  # truncated
    assert Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS).encode(texts) == expected
    edited = orjson.loads(meta.read_bytes())
    edited["added"][LLAMA3_BOS] = 5  # an edited entry must not change the ids
    meta.write_bytes(orjson.dumps(edited))
    encoder = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS)
    assert encoder.bos_id == 128000 and encoder.encode(texts) == expected
    monkeypatch.setenv("CPT_CACHE_DIR", "/proc/not-writable")
    assert Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS).encode(texts) == expected


@pytest.mark.s3
def test_remote_staging_holds_few_shards_and_keys_keep_hashes(s3_server, sample_dir, tokenizer_dir, monkeypatch):
    import boto3

    from cpt_tasks.convert import mds

    seen = []
    real = mds.TokenShardWriter._upload

    def watch(self, name):
        real(self, name)
        seen.append(len(list(self.local.glob("shard.*"))))

    monkeypatch.setattr(mds.TokenShardWriter, "_upload", watch)
    cfg = ConvertConfig(dataset=str(sample_dir), data_subset="flan", tokenizer=str(tokenizer_dir), concat_tokens=256,
                        size_limit="16kb", out_root="s3://cpt/exp#3?/flan")
    result = convert(cfg, progress_interval=0)
    assert len(seen) > 20 and max(seen) <= mds.MAX_PENDING_UPLOADS + 1
    client = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="cpt", Prefix="exp#3?/flan/")["Contents"]]
    assert "exp#3?/flan/manifest.json" in keys and len(keys) == len(seen) + 3
    assert result.manifest.splits["train"].samples > 0


def test_user_error_after_the_loop_cleans_remote_staging(s3_server, tmp_path, tokenizer_dir):
    import glob
    import tempfile

    before = set(glob.glob(f"{tempfile.gettempdir()}/cpt-mds-*"))
    (tmp_path / "blank.jsonl").write_bytes(b'{"text": " "}\n' * 10)
    with pytest.raises(UserError, match="fewer tokens than one row"):
        convert(ConvertConfig(dataset=str(tmp_path / "blank.jsonl"), out_root="s3://cpt/blank",
                              tokenizer=str(tokenizer_dir), concat_tokens=8), progress_interval=0)
    assert set(glob.glob(f"{tempfile.gettempdir()}/cpt-mds-*")) == before


def test_input_hashes_are_cached_by_stat_and_refreshed_on_change(tmp_path, monkeypatch):
    import os

    from cpt_tasks import cache as tokenizer

    monkeypatch.setenv("CPT_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD * 10)
    reads = []
    real = tokenizer.sha256_file
    monkeypatch.setattr(tokenizer, "sha256_file", lambda p: reads.append(p) or real(p))
    first = tokenizer.sha256_file_cached(src)
    assert tokenizer.sha256_file_cached(src) == first and len(reads) == 1  # second call: from the cache
    src.write_bytes(GOOD * 11)  # new size and mtime: hashed again
    os.utime(src, ns=(1, 1))
    second = tokenizer.sha256_file_cached(src)
    assert second == real(src) != first and len(reads) == 2
    stat = src.stat()  # same size, mtime put back (cp -p, touch -r): the ctime still tells
    src.write_bytes(src.read_bytes().replace(b"perfectly", b"PERFECTLY"))
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tokenizer.sha256_file_cached(src) == real(src) != second


def test_cache_writes_are_best_effort(tmp_path):
    from cpt_tasks.cache import write_atomic

    (tmp_path / "file").write_text("not a folder")
    assert write_atomic(tmp_path / "file" / "entry.json", b"{}") is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_object_storage_schemes_are_case_insensitive():
    from cpt_tasks.storage import is_remote, parse_url

    assert is_remote("S3://bucket/p") and parse_url("GS://bucket/a/b") == ("gs", "bucket", "a/b")
