"""Google Cloud Storage through the storage layer, against a real GCS JSON-API emulator on 127.0.0.1
(gcp-storage-emulator), as the S3 tests run against moto: the output operations, a conversion reading a gs://
dataset and writing to gs://, and the faults (a corrupt or replaced or deleted object is bad data, a cut transfer
resumes by byte range, too many cuts fail as transient, a missing prefix or bucket is a user error).

The emulator ignores ``ifGenerationMatch`` (it serves whatever is stored now), so the 412 a real GCS sends for a
replaced object comes from :class:`GcsFaults`, a proxy that checks the generation against the emulator's own
metadata; a replaced object is also caught by its MD5 once read to the end, which the test without the proxy shows.
"""

import base64
import hashlib
import http.client
import json
import threading
from urllib.parse import parse_qs, quote, urlparse

import numpy as np
import pytest
from conftest import call_cli, read_rows
from faulty_proxy import FaultyProxy
from test_convert_parquet import CONCAT, sample_texts, write_corpus

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.data.objstore import resolve_objects
from cpt_tasks.errors import BadDataError
from cpt_tasks.storage import (GCSStore, Network, download_file, exists, gcs, list_files, object_store, read_bytes,
                               remove_file, remove_tree, upload_file, write_bytes_atomic)


def bucket():
    from google.cloud import storage

    return storage.Client().bucket("cpt")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    from cpt_tasks.storage import network

    monkeypatch.setattr(network, "BACKOFF_BASE", 0.01)


@pytest.fixture(scope="module")
def uploaded(gcs_server, tmp_path_factory, sample_dir):
    """The same corpus as local files and as objects under gs://cpt/gin/data/<fmt>/ (plus a non-input)."""
    root = tmp_path_factory.mktemp("gcs-inputs")
    files = sample_texts(sample_dir, "wiki") + sample_texts(sample_dir, "math")
    local = {fmt: write_corpus(root / fmt, files, fmt) for fmt in ("jsonl", "parquet")}
    for fmt, folder in local.items():
        for path in sorted(folder.iterdir()):
            bucket().blob(f"gin/data/{fmt}/{path.name}").upload_from_filename(str(path))
    bucket().blob("gin/data/jsonl/README.md").upload_from_string(b"not an input")
    return local


class GcsFaults(FaultyProxy):
    """The fault proxy in front of the emulator, with two more behaviours: ``later_blocks_only`` spares the GETs of
    a file's first block (so a resume is seen to start from the byte reached, not from 0), mode "stall" holds the
    next ``cuts`` matching GETs without a byte of answer for ``stall_seconds``; and it answers 412 where a real
    GCS would: a media GET whose ``ifGenerationMatch`` is not the object's generation now."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.later_blocks_only = False
        self.stall_seconds = 5.0
        self.released = threading.Event()
        self.server.handle_error = lambda *args: None  # writes to a client that gave up are expected

    def close(self) -> None:
        self.released.set()
        super().close()

    def _fault(self, method, path, rng):
        spared = self.later_blocks_only and (rng or "").startswith("bytes=0-")
        if spared or self.mode == "stall":
            with self.lock:
                if method != "GET" or not self.match or self.match not in path:
                    return None
                self.gets.append((path, rng))
                stall = not spared and self.mode == "stall" and self.cuts > 0
                self.cuts -= stall
            if stall:
                self.released.wait(self.stall_seconds)
            return None
        return super()._fault(method, path, rng)

    def _handler(self):
        base, proxy = super()._handler(), self

        class Handler(base):
            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                if "ifGenerationMatch" in query and proxy.generation(self.path) != query["ifGenerationMatch"][0]:
                    body = json.dumps({"error": {"code": 412, "message": "Precondition Failed"}}).encode()
                    self.send_response(412)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                base.do_GET(self)

        return Handler

    def generation(self, media_path: str) -> str | None:
        meta = urlparse(media_path).path.replace("/download/storage/v1/", "/storage/v1/", 1)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("GET", meta)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return json.loads(data)["generation"] if resp.status == 200 else None


@pytest.fixture
def proxy(gcs_server, monkeypatch):
    faulty = GcsFaults(gcs_server["STORAGE_EMULATOR_HOST"])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", faulty.url)
    yield faulty
    faulty.close()


MEDIA_PART_00 = "/o/" + quote("gin/data/jsonl/part-00.jsonl", safe="")  # its downloads, not a listing


def config(dataset, out, tokenizer_dir, **extra):
    values = dict(concat_tokens=CONCAT, max_tokens=30 * CONCAT, val_tokens=2 * CONCAT, num_workers=0)
    return ConvertConfig(dataset=dataset, out_root=str(out), tokenizer=str(tokenizer_dir), **{**values, **extra})


def test_output_operations(gcs_server, tmp_path):
    root = "gs://cpt/ops"
    assert read_bytes(f"{root}/a.json") is None and not exists(f"{root}/a.json")
    write_bytes_atomic(f"{root}/a.json", b'{"a": 1}')
    write_bytes_atomic("gs://cpt//ops/sub/b.bin", b"b")  # the leading slash of the key is dropped
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (9 << 12))  # 9 MiB: past the client's one-request upload size
    upload_file(str(big), f"{root}/sub/big.bin")
    assert read_bytes(f"{root}/a.json") == b'{"a": 1}' and exists(f"{root}/a.json")
    assert list_files(root) == ["a.json", "sub/b.bin", "sub/big.bin"] == list_files(f"{root}/")
    download_file(f"{root}/sub/big.bin", str(tmp_path / "back" / "big.bin"))
    assert (tmp_path / "back" / "big.bin").read_bytes() == big.read_bytes()
    blob = bucket().get_blob("ops/sub/big.bin")
    assert base64.b64decode(blob.md5_hash).hex() == hashlib.md5(big.read_bytes()).hexdigest()
    remove_file(f"{root}/a.json")
    remove_file(f"{root}/a.json")  # a missing one is fine
    assert list_files(root) == ["sub/b.bin", "sub/big.bin"]
    remove_tree(f"{root}/sub")
    remove_tree(f"{root}/sub")
    assert list_files(root) == [] and bucket().get_blob("ops/sub/b.bin") is None


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_gs_dataset_converts_to_gs_like_local_files(uploaded, tmp_path, tokenizer_dir, fmt):
    remote = convert(config("gs://cpt/gin/", "gs://cpt/out/" + fmt, tokenizer_dir, data_subset=fmt, shuffle=True,
                            size_limit="16kb"), progress_interval=0)
    local = convert(config(str(uploaded[fmt]), tmp_path / "local", tokenizer_dir, shuffle=True, size_limit="16kb"),
                    progress_interval=0)
    names = list_files(f"gs://cpt/out/{fmt}")
    assert "manifest.json" in names and len([n for n in names if n.startswith("train/shard.")]) > 1
    for name in names:
        download_file(f"gs://cpt/out/{fmt}/{name}", str(tmp_path / "remote" / name))
    for split in ("train", "val"):
        assert np.array_equal(read_rows(tmp_path / "remote" / split), read_rows(tmp_path / "local" / split))
    source = remote.manifest.source
    assert source.kind == "gs" and source.dataset == "gs://cpt/gin/" and source.revision is None
    for f in source.files:  # GCS keeps every object's MD5: each file is checked by content
        data = (uploaded[fmt] / f.path).read_bytes()
        assert f.size == len(data) and f.algorithm == "md5" and f.sha256 == hashlib.md5(data).hexdigest()
    again = call_cli("convert", "--dataset", "gs://cpt/gin/", "--data_subset", fmt, "--out_root",
                     f"gs://cpt/out/{fmt}", "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--max_tokens",
                     30 * CONCAT, "--val_tokens", 2 * CONCAT, "--shuffle", "--size_limit", "16kb", check=True)
    assert "already complete" in again.stdout


def test_corrupt_object_is_bad_data_and_leaves_no_manifest(uploaded, proxy, tmp_path, tokenizer_dir):
    proxy.mode, proxy.match = "flip", quote("gin/data/jsonl/part-01", safe="")
    result = call_cli("convert", "--dataset", "gs://cpt/gin", "--data_subset", "jsonl", "--out_root",
                      tmp_path / "out", "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--num_workers", 0)
    assert result.returncode == 3, result.stderr
    assert "gs://cpt/gin/data/jsonl/part-01.jsonl: md5 " in result.stderr and "does not match" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def replace_after_listing(tmp_path, key: str, change):
    """Upload and list gs://cpt/<key>, then change the object (``change(blob)``); (the listed file, the generation
    listed)."""
    folder, name = key.rsplit("/", 1)
    bucket().blob(key).upload_from_filename(str(tmp_path / name))
    generation = bucket().get_blob(key).generation
    [listed] = [f for f in resolve_objects(f"gs://cpt/{folder}/", None, "train", Network(2, 5, 1)).files
                if f.rel == name]
    change(bucket().blob(key))
    return listed, generation


def test_object_replaced_since_listing_is_bad_data(gcs_server, proxy, tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "listed"}\n')
    listed, generation = replace_after_listing(tmp_path, "chg/a.jsonl",
                                               lambda b: b.upload_from_string(b'{"text": "newer"}\n'))
    proxy.match = quote("chg/a.jsonl", safe="")
    with pytest.raises(BadDataError, match=rf"gs://cpt/chg/a.jsonl: changed or deleted since it was listed "
                                           rf"\(generation {generation}\): 412"):
        listed.opener().read(100)
    assert bucket().get_blob("chg/a.jsonl").generation != generation


def test_object_replaced_since_listing_is_bad_data_by_its_md5_on_the_emulator(gcs_server, tmp_path):
    """Without the proxy the emulator serves the new bytes despite ``ifGenerationMatch``; their MD5 gives it away."""
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "listed"}\n')
    listed, _ = replace_after_listing(tmp_path, "chg/b.jsonl",
                                      lambda b: b.upload_from_string(b'{"text": "lister"}\n'))
    with pytest.raises(BadDataError, match="gs://cpt/chg/b.jsonl: md5 .* does not match"):
        with listed.opener() as stream:
            stream.drain()


def test_object_deleted_since_listing_is_bad_data(gcs_server, tmp_path):
    (tmp_path / "c.jsonl").write_bytes(b'{"text": "listed"}\n')
    listed, _ = replace_after_listing(tmp_path, "chg/c.jsonl", lambda b: b.delete())
    with pytest.raises(BadDataError, match="gs://cpt/chg/c.jsonl: changed or deleted since it was listed"):
        listed.opener().read(100)


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_cut_or_stalled_transfer_resumes_from_the_byte_reached(uploaded, proxy, tmp_path, tokenizer_dir,
                                                                monkeypatch, mode):
    monkeypatch.setattr(gcs, "BLOCK", 64 << 10)  # four ranged requests for the file's 213 KiB
    cfg = config("gs://cpt/gin/data/jsonl/part-00.jsonl", tmp_path / "resumed", tokenizer_dir, max_tokens=None,
                 val_tokens=0, read_timeout=0.5)
    proxy.later_blocks_only, proxy.mode, proxy.match, proxy.cuts = True, mode, MEDIA_PART_00, 2
    resumed = convert(cfg, progress_interval=0)
    proxy.mode = None
    clean = convert(cfg.model_copy(update={"out_root": str(tmp_path / "clean")}), progress_interval=0)
    assert proxy.cuts == 0
    ranges = [rng for _, rng in proxy.gets]
    assert ranges[:2] == [f"bytes=0-{(64 << 10) - 1}", f"bytes={64 << 10}-{(128 << 10) - 1}"]
    assert ranges[1] == ranges[2] == ranges[3]  # the cut (or stalled) block asked for again from its first byte
    assert all("ifGenerationMatch=" in path for path, _ in proxy.gets)  # every request pinned to the listing
    assert np.array_equal(read_rows(tmp_path / "resumed" / "train"), read_rows(tmp_path / "clean" / "train"))
    assert resumed.fingerprint == clean.fingerprint


def test_transfer_cut_more_often_than_retries_fails_as_transient(uploaded, proxy, tmp_path, tokenizer_dir):
    proxy.mode, proxy.match, proxy.cuts = "cut", MEDIA_PART_00, 100
    result = call_cli("convert", "--dataset", "gs://cpt/gin/data/jsonl/", "--out_root", tmp_path / "out",
                      "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--num_workers", 0, "--max_retries", 1)
    assert result.returncode == 1, result.stderr
    assert "failed: 127.0.0.1:" in result.stderr and "1 retries exhausted" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("dataset,subset,message", [
    ("gs://cpt/nothing/here/", None, "--dataset gs://cpt/nothing/here/: no .json"),
    ("gs://cpt/gin", "nosuch", "objects at gs://cpt/gin/data/nosuch/ or gs://cpt/gin/nosuch/"),
    ("gs://no-such-bucket/x", None, "--dataset gs://no-such-bucket/x/: 404 GET"),
])
def test_missing_prefix_or_bucket_is_a_user_error(uploaded, tmp_path, tokenizer_dir, dataset, subset, message):
    args = ["--data_subset", subset] if subset else []
    result = call_cli("convert", "--dataset", dataset, *args, "--out_root", tmp_path / "out",
                      "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--num_workers", 0)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_every_call_carries_the_network_options(gcs_server):
    store = object_store("gs://cpt/x", Network(2.5, 4.5, 3))
    assert isinstance(store, GCSStore) and store.options == {"timeout": (2.5, 4.5), "retry": None}
    assert store.host == urlparse(gcs_server["STORAGE_EMULATOR_HOST"]).netloc
    assert object_store("gs://cpt/x").network == Network()  # outputs: the defaults


def test_a_write_to_a_missing_bucket_is_the_library_error_not_a_transient_one(gcs_server):
    from google.api_core.exceptions import NotFound

    with pytest.raises(NotFound):
        write_bytes_atomic("gs://no-such-bucket/x.json", b"{}", Network(2, 5, 3))
