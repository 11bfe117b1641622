"""The converter end to end on the sample data: the data contract, LLM-Foundry equivalence, determinism,
idempotency and kill/rerun safety."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import zstandard
from conftest import CPT, ROOT, call_cli, read_rows

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.documents import read_document
from cpt_tasks.documents.convert_docs import ConvertManifest, read_manifest
from cpt_tasks.tokenizer import LLAMA3_BOS, LLAMA3_EOS, Encoder

CONCAT = 512


def records(sample_dir, subset):
    out = []
    for path in sorted((sample_dir / "data" / subset).rglob("*.json.zst")):
        out += [orjson.loads(x) for x in zstandard.ZstdDecompressor().decompress(path.read_bytes()).splitlines()]
    return out


def expected_stream(tokenizer_dir, texts):
    """The framed token stream of the non-blank texts, and each document's start offset."""
    tokens, lengths = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS).encode_framed([t for t in texts if t.strip()])
    return tokens, np.concatenate([[0], np.cumsum(lengths)])


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def flan(tmp_path_factory, sample_dir, tokenizer_dir):
    out = tmp_path_factory.mktemp("flan")
    cfg = ConvertConfig(dataset=str(sample_dir), data_subset="flan", out_root=str(out), tokenizer=str(tokenizer_dir),
                        concat_tokens=CONCAT, max_tokens=40 * CONCAT + 100, val_tokens=5 * CONCAT, num_workers=2)
    return cfg, convert(cfg, progress_interval=0)


def test_manifest_records_the_contract(flan, tokenizer_dir):
    cfg, result = flan
    m = read_document(str(Path(cfg.out_root) / "manifest.json"), ConvertManifest)[0]
    assert m == result.manifest and not result.already_complete
    assert m.fingerprint == result.fingerprint and len(m.fingerprint) == 64
    assert m.concat_tokens == CONCAT and m.exhausted is False
    assert m.splits["train"].samples == 40 and m.splits["train"].tokens == 40 * CONCAT
    assert m.splits["val"].samples == 5 and m.splits["val"].tokens == 5 * CONCAT
    assert m.splits["val"].first_document > m.splits["train"].last_document
    assert m.config == cfg and m.framing.bos_id == 128000 and m.framing.eos_text == "<|end_of_text|>"
    assert m.tokenizer.bos_id == 128000 and m.tokenizer.eos_id == 128001
    assert m.tokenizer.name == str(tokenizer_dir) and len(m.tokenizer.sha256) == 64
    assert m.source.subset == "flan" and [f.path for f in m.source.files] == [
        "0000/flan-0000.json.zst", "0001/flan-0001.json.zst"]
    assert all(len(f.sha256) == 64 and f.size > 0 for f in m.source.files)
    assert m.code_version["converter"] and m.timings.seconds > 0
    assert m.columns == {"tokens": "ndarray:int32"}


def test_rows_follow_budgets_and_val_rule(flan, sample_dir, tokenizer_dir):
    cfg, result = flan
    stream, starts = expected_stream(tokenizer_dir, [r["text"] for r in records(sample_dir, "flan")])
    train, val = read_rows(Path(cfg.out_root) / "train"), read_rows(Path(cfg.out_root) / "val")
    assert train.shape == (40, CONCAT) and val.shape == (5, CONCAT) and train.dtype == np.int32
    assert np.array_equal(train.reshape(-1), stream[: 40 * CONCAT])
    val_start = starts[np.searchsorted(starts, 40 * CONCAT)]  # first document with no token in train
    assert np.array_equal(val.reshape(-1), stream[val_start: val_start + 5 * CONCAT])
    assert int(train.max()) < 128256 and int(val.max()) < 128256


@pytest.mark.llmfoundry
def test_rows_equal_llmfoundry_concat_tokens_dataset(tmp_path, sample_dir, tokenizer_dir):
    from llmfoundry.data.data import ConcatTokensDataset
    from transformers import AutoTokenizer

    docs = [r for s in ("dclm", "wiki", "stackexchange") for r in records(sample_dir, s)]
    docs = [d for d in docs if d["text"].strip() and "<|" not in d["text"]]
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    call_cli("convert", "--dataset", src, "--out_root", tmp_path / "out", "--tokenizer", tokenizer_dir,
            "--concat_tokens", 2048, check=True)
    theirs = ConcatTokensDataset(hf_dataset=docs, tokenizer=AutoTokenizer.from_pretrained(str(tokenizer_dir)),
                                 max_length=2048, bos_text="", eos_text="<|end_of_text|>", no_wrap=False)
    expected = np.stack([s["tokens"] for s in theirs])
    ours = read_rows(tmp_path / "out" / "train")
    assert ours.shape == expected.shape and len(ours) > 150
    assert np.array_equal(ours, expected)


@pytest.mark.llmfoundry
def test_llmfoundry_streaming_text_dataset_reads_output(flan, tokenizer_dir):
    from llmfoundry.data.text_data import StreamingTextDataset
    from streaming.base.util import clean_stale_shared_memory
    from transformers import AutoTokenizer

    cfg, _ = flan
    clean_stale_shared_memory()
    ds = StreamingTextDataset(tokenizer=AutoTokenizer.from_pretrained(str(tokenizer_dir)), max_seq_len=CONCAT,
                              local=cfg.out_root, split="val", shuffle=False, batch_size=1)
    rows = read_rows(Path(cfg.out_root) / "val")
    assert len(ds) == 5
    for i in range(len(ds)):
        sample = ds[i]
        assert tuple(sample.shape) == (CONCAT,) and np.array_equal(sample.numpy(), rows[i])


def test_shuffle_is_deterministic_for_any_worker_count(tmp_path, sample_dir, tokenizer_dir):
    outs = {}
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        cfg = ConvertConfig(dataset=str(sample_dir), data_subset="stackexchange", out_root=str(out),
                            tokenizer=str(tokenizer_dir), concat_tokens=CONCAT, max_tokens=60 * CONCAT,
                            val_tokens=4 * CONCAT, shuffle=True, seed=5, shuffle_buffer=64, num_workers=workers)
        outs[workers] = (convert(cfg, progress_interval=0), tree_bytes(out))
    (r0, t0), (r1, t1), (r2, t2) = outs[0], outs[1], outs[2]
    assert t0 == t1 == t2 and r0.fingerprint == r1.fingerprint == r2.fingerprint
    peaks = [r.manifest.timings.peak_rss_mb["workers"] for r in (r0, r1, r2)]
    assert peaks[0] == 0 and all(20 < p < 1000 for p in peaks[1:])  # measured by the workers themselves
    plain = ConvertConfig(dataset=str(sample_dir), data_subset="stackexchange", out_root=str(tmp_path / "plain"),
                          tokenizer=str(tokenizer_dir), concat_tokens=CONCAT, max_tokens=60 * CONCAT,
                          val_tokens=4 * CONCAT, num_workers=2)
    convert(plain, progress_interval=0)
    other = plain.model_copy(update={"out_root": str(tmp_path / "seed6"), "shuffle": True, "seed": 6})
    convert(ConvertConfig(**other.model_dump()), progress_interval=0)
    assert tree_bytes(tmp_path / "plain") != t0 and tree_bytes(tmp_path / "seed6") != t0


def test_rerun_is_a_noop_that_touches_nothing(tmp_path, sample_dir, tokenizer_dir, monkeypatch):
    args = ["convert", "--dataset", sample_dir, "--data_subset", "math", "--out_root", tmp_path / "o",
            "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT, "--max_tokens", 20 * CONCAT]
    call_cli(*args, check=True)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (tmp_path / "o").rglob("*")}
    monkeypatch.setenv("CPT_RESULT_FILE", str(tmp_path / "result.json"))
    second = call_cli(*args, "--num_workers", 1, check=True)  # worker count does not change the bytes
    assert "already complete" in second.stdout and "no file was touched" in second.stdout
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (tmp_path / "o").rglob("*")} == before
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "already_complete"  # as train's, evaluate's


def test_an_invalid_manifest_is_never_trusted_and_needs_no_overwrite(tmp_path, sample_dir, tokenizer_dir):
    cfg = ConvertConfig(dataset=str(sample_dir), data_subset="math", out_root=str(tmp_path),
                        tokenizer=str(tokenizer_dir), concat_tokens=CONCAT, max_tokens=10 * CONCAT)
    first = convert(cfg, progress_interval=0)
    (tmp_path / "manifest.json").write_text('{"format": "cpt-pipeline/convert-manifest/v1", "fingerprint": "cut')
    again = convert(cfg, progress_interval=0)  # converted again, not refused as another conversion
    assert not again.already_complete and again.fingerprint == first.fingerprint
    assert read_manifest(str(tmp_path)).splits == first.manifest.splits


def test_exhausted_source_writes_fewer_rows_and_says_so(tmp_path, sample_dir, tokenizer_dir):
    cfg = ConvertConfig(dataset=str(sample_dir), data_subset="pes2o", out_root=str(tmp_path), concat_tokens=CONCAT,
                        tokenizer=str(tokenizer_dir), max_tokens="1e9", val_tokens="1e6")
    m = convert(cfg, progress_interval=0).manifest
    assert m.exhausted is True
    assert 0 < m.splits["train"].samples < m.splits["train"].requested_samples
    assert m.splits["val"].samples == 0 and m.splits["val"].requested_samples == 1953


def test_another_conversion_at_the_same_root_needs_overwrite(tmp_path, sample_dir, tokenizer_dir):
    base = ["convert", "--dataset", sample_dir, "--data_subset", "wiki", "--out_root", tmp_path,
            "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT]
    call_cli(*base, "--max_tokens", 10 * CONCAT, check=True)
    refused = call_cli(*base, "--max_tokens", 12 * CONCAT)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert json.loads((tmp_path / "manifest.json").read_text())["splits"]["train"]["samples"] == 10
    call_cli(*base, "--max_tokens", 12 * CONCAT, "--overwrite", check=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["splits"]["train"]["samples"] == 12


def test_every_input_format_gives_the_same_rows(tmp_path, sample_dir, tokenizer_dir):
    docs = records(sample_dir, "math")
    lines = b"".join(orjson.dumps(d) + b"\n" for d in docs)
    half = len(docs) // 2
    variants = {
        "a.jsonl": lines,
        "b.jsonl.gz": gzip.compress(lines),
        "c.json.zst": zstandard.ZstdCompressor().compress(lines),
        "d.json": orjson.dumps(docs),
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
    folder = tmp_path / "tree" / "math"
    (folder / "x").mkdir(parents=True)
    (folder / "x" / "1.jsonl").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs[half:]))
    (folder / "0.jsonl.gz").write_bytes(gzip.compress(b"".join(orjson.dumps(d) + b"\n" for d in docs[:half])))
    (folder / "README.md").write_text("not data")
    results = []
    for dataset, subset in [*((tmp_path / n, None) for n in variants), (tmp_path / "tree", "math")]:
        out = tmp_path / f"out-{Path(dataset).name}"
        cfg = ConvertConfig(dataset=str(dataset), data_subset=subset, out_root=str(out), tokenizer=str(tokenizer_dir),
                            concat_tokens=CONCAT)
        convert(cfg, progress_interval=0)
        train = out / "train"
        results.append((train / "index.json").read_bytes() + (train / "shard.00000.mds.zstd").read_bytes())
    assert all(r == results[0] for r in results)


@pytest.mark.slow
def test_killed_run_leaves_no_manifest_and_rerun_gives_same_bytes(tmp_path, sample_dir, tokenizer_dir):
    docs = [r for s in ("dclm", "flan", "wiki") for r in records(sample_dir, s)]
    big = tmp_path / "big.jsonl"
    with big.open("wb") as fh:
        for copy in range(12):
            for d in docs:
                fh.write(orjson.dumps({**d, "text": f"[{copy}] {d['text']}"}) + b"\n")
    args = [*CPT, "convert", "--dataset", str(big), "--tokenizer", str(tokenizer_dir), "--concat_tokens", "1024",
            "--size_limit", "256kb", "--shuffle", "--num_workers", "2", "--max_tokens", "8e6", "--val_tokens", "2e5"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out_root", str(out)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "train" / "shard.00003.mds.zstd").exists() and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "train" / "shard.00000.mds.zstd").exists(), "the run ended before it could be killed"
    assert not (out / "manifest.json").exists()
    assert subprocess.run([*args, "--out_root", str(out)], cwd=ROOT).returncode == 0
    clean = tmp_path / "clean"
    assert subprocess.run([*args, "--out_root", str(clean), "--num_workers", "1"], cwd=ROOT).returncode == 0
    assert tree_bytes(out) == tree_bytes(clean) and (out / "manifest.json").exists()
    shutil.rmtree(tmp_path)


def test_progress_lines_name_the_component_not_the_source(tmp_path, sample_dir, tokenizer_dir, capsys):
    """A planned component with no subset (the user's corpus) is named by its own folder, as the DAG names it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records(sample_dir, "wiki")[:40]))
    convert(ConvertConfig(dataset=str(corpus), out_root=str(tmp_path / "data" / "python-code"),
                          tokenizer=str(tokenizer_dir), concat_tokens=64, val_tokens=0), progress_interval=0)
    subset = tmp_path / "subset"
    convert(ConvertConfig(dataset=str(sample_dir), data_subset="wiki", out_root=str(subset),
                          tokenizer=str(tokenizer_dir), concat_tokens=64, val_tokens=0, max_tokens=640),
            progress_interval=0)
    said = capsys.readouterr().err
    assert "[convert python-code] " in said and "[convert wiki] " in said, said
    assert f"[convert {corpus}]" not in said, said
