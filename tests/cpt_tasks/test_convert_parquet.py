"""Parquet input: the same documents in JSON lines and in parquet (and under another --text_field) give
byte-identical MDS rows, with and without shuffle; bad parquet input is a UserError naming file, row and field
(null texts are empty documents: tests/cpt_tasks/test_convert_nulls.py)."""

import json

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import call_cli, read_rows

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert

CONCAT = 256


def sample_texts(sample_dir, subset):
    """Per file of the sample subset, its records' texts (a blank one included where the sample has it)."""
    out = []
    for path in sorted((sample_dir / "data" / subset).rglob("*.json.zst")):
        data = zstandard.ZstdDecompressor().decompress(path.read_bytes())
        out.append([orjson.loads(line)["text"] for line in data.splitlines()])
    return out


def write_corpus(root, files, fmt, field="text", row_group_size=7):
    """The texts as JSON lines or parquet files under ``root`` (same file split, same order)."""
    root.mkdir(parents=True)
    for number, texts in enumerate(files):
        if fmt == "jsonl":
            lines = [json.dumps({"id": f"d{number}-{i}", field: t}) for i, t in enumerate(texts)]
            (root / f"part-{number:02d}.jsonl").write_text("\n".join(lines) + "\n")
        else:
            table = pa.table({"id": [f"d{number}-{i}" for i in range(len(texts))], field: texts})
            pq.write_table(table, root / f"part-{number:02d}.parquet", row_group_size=row_group_size)
    return root


def run(dataset, out, tokenizer_dir, **extra):
    cfg = ConvertConfig(dataset=str(dataset), out_root=str(out), tokenizer=str(tokenizer_dir), concat_tokens=CONCAT,
                        **extra)
    return convert(cfg, progress_interval=0)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, sample_dir):
    root = tmp_path_factory.mktemp("corpora")
    files = sample_texts(sample_dir, "dclm") + sample_texts(sample_dir, "wiki")
    assert any(not t.strip() for f in files for t in f)  # the sample's blank record is among them
    return {"jsonl": write_corpus(root / "jsonl", files, "jsonl"),
            "parquet": write_corpus(root / "parquet", files, "parquet"),
            "content": write_corpus(root / "content", files, "parquet", field="content", row_group_size=1000)}


@pytest.mark.parametrize("shuffle", [False, True])
def test_parquet_rows_equal_json_lines_rows(corpora, tmp_path, tokenizer_dir, shuffle):
    budget = dict(max_tokens=40 * CONCAT, val_tokens=3 * CONCAT, shuffle=shuffle, seed=5, shuffle_buffer=50)
    json_run = run(corpora["jsonl"], tmp_path / "j", tokenizer_dir, num_workers=0, **budget)
    parquet_run = run(corpora["parquet"], tmp_path / "p", tokenizer_dir, num_workers=2, **budget)
    renamed = run(corpora["content"], tmp_path / "c", tokenizer_dir, num_workers=0, text_field="content", **budget)
    for split in ("train", "val"):
        rows = read_rows(tmp_path / "j" / split)
        assert rows.shape[0] == {"train": 40, "val": 3}[split]
        assert np.array_equal(rows, read_rows(tmp_path / "p" / split))
        assert np.array_equal(rows, read_rows(tmp_path / "c" / split))
    assert json_run.manifest.splits == parquet_run.manifest.splits == renamed.manifest.splits
    # documents read past the budget depend on how many fit a chunk (JSON lines are longer); used ones do not
    assert json_run.manifest.documents.used == parquet_run.manifest.documents.used == renamed.manifest.documents.used
    files = parquet_run.manifest.source.files
    assert [f.path for f in files][:2] == ["part-00.parquet", "part-01.parquet"]
    assert all(f.algorithm == "sha256" and len(f.sha256) == 64 for f in files)


def test_whole_parquet_source_and_rerun(corpora, tmp_path, tokenizer_dir):
    first = run(corpora["parquet"], tmp_path / "p", tokenizer_dir, num_workers=0)
    assert not first.manifest.exhausted and first.manifest.documents.skipped_empty == 1
    again = run(corpora["parquet"], tmp_path / "p", tokenizer_dir, num_workers=0)
    assert again.already_complete and again.fingerprint == first.fingerprint


def bad_table(tmp_path, name, table):
    path = tmp_path / name
    pq.write_table(table, path, row_group_size=2)
    return path


@pytest.mark.parametrize("table,field,message,shuffle", [
    (pa.table({"text": [None, 4, 5]}), "text",
     "bad.parquet, row 1: 'text' is int64 (not a string), expected a string", "--no-shuffle"),
    (pa.table({"text": [None, None, 2.5]}), "text",
     "bad.parquet, row 1: 'text' is double (not a string), expected a string", "--shuffle"),
    (pa.table({"text": [1, 2, 3]}), "text", "bad.parquet, row 1: 'text' is int64 (not a string), expected a string",
     "--no-shuffle"),
    (pa.table({"body": ["a", "b"]}), "text",
     "bad.parquet: no 'text' column (columns: body); name the text field with --text_field", "--shuffle"),
    (pa.table({"text": ["a", "b"]}), "content",
     "bad.parquet: no 'content' column (columns: text); name the text field with --text_field", "--no-shuffle"),
])
def test_bad_parquet_is_a_user_error(tmp_path, tokenizer_dir, table, field, message, shuffle):
    path = bad_table(tmp_path, "bad.parquet", table)
    result = call_cli("convert", "--dataset", path, "--out_root", tmp_path / "out", "--tokenizer", tokenizer_dir,
                      "--concat_tokens", 8, "--num_workers", 0, "--text_field", field, shuffle)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_not_parquet_is_a_user_error(tmp_path, tokenizer_dir):
    path = tmp_path / "notreally.parquet"
    path.write_text('{"text": "hello"}\n')
    result = call_cli("convert", "--dataset", path, "--out_root", tmp_path / "out", "--tokenizer", tokenizer_dir,
                      "--concat_tokens", 8, "--num_workers", 0)
    assert result.returncode == 2 and "notreally.parquet: not a readable parquet file" in result.stderr
