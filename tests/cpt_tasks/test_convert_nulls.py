"""A null text is an empty document: skipped and counted apart from blank ones (the manifest's
``documents.skipped_null`` beside ``skipped_empty``, and the printed summary), in JSON lines (plain, .gz, .zst),
parquet (a column with nulls, a column of nulls only) and ``datasets``; the rows equal those of the same documents
without the null records, and the fingerprint is the one the same input always had. A record without the field
stays an error naming file, record and field."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import call_cli, read_rows
from test_convert_datasets import write_csv
from test_convert_parquet import CONCAT, sample_texts

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert


@pytest.fixture(scope="module")
def documents(sample_dir):
    """The pes2o sample's texts (no blank one) with nulls among them: first, last, runs, across row groups."""
    texts = [t for f in sample_texts(sample_dir, "pes2o") for t in f if t.strip()]
    with_nulls: list[str | None] = [None]
    for number, text in enumerate(texts):
        with_nulls.append(text)
        if number % 9 == 4:
            with_nulls.append(None)
        if number in (20, 60):
            with_nulls += [None] * 8  # a run longer than a row group
    with_nulls.append(None)
    return texts, with_nulls


def convert_all(dataset, out, tokenizer_dir, **extra):
    cfg = ConvertConfig(dataset=str(dataset), out_root=str(out), tokenizer=str(tokenizer_dir), concat_tokens=CONCAT,
                        val_tokens=0, **extra)
    return convert(cfg, progress_interval=0)


def write_jsonl(path, values, blanks=()):
    """``values`` as JSON lines ``{"id", "text"}``, with the ``blanks`` (empty, whitespace) records after the
    first one; compressed by the name's suffix."""
    records = [{"id": 0, "text": values[0]}, *({"id": -1, "text": b} for b in blanks),
               *({"id": i, "text": v} for i, v in enumerate(values[1:], 1))]
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def reference(tmp_path, tokenizer_dir, texts, **extra):
    """The rows of the same documents without the null records (JSON lines)."""
    result = convert_all(write_jsonl(tmp_path / "ref" / "train.jsonl", texts), tmp_path / "ref-out", tokenizer_dir,
                         num_workers=0, **extra)
    assert result.manifest.documents.skipped_null == 0
    return read_rows(tmp_path / "ref-out" / "train")


@pytest.mark.parametrize("name,workers", [("train.jsonl", 0), ("train.jsonl.gz", 2), ("train.jsonl.zst", 0)])
def test_json_lines_null_texts_are_skipped_and_counted(tmp_path, tokenizer_dir, documents, name, workers):
    texts, with_nulls = documents
    path = write_jsonl(tmp_path / "in" / name, with_nulls, blanks=["", "  \n "])
    result = convert_all(path, tmp_path / "out", tokenizer_dir, num_workers=workers)
    counts = result.manifest.documents
    nulls = with_nulls.count(None)
    assert nulls > 20 and (counts.read, counts.skipped_null, counts.skipped_empty) == (len(with_nulls) + 2, nulls, 2)
    rows = read_rows(tmp_path / "out" / "train")
    assert len(rows) > 100 and np.array_equal(rows, reference(tmp_path, tokenizer_dir, texts))


def write_parquet(folder, with_nulls):
    """The documents in two parquet files of row groups of 7 (strings with nulls), and between them a file whose
    text column holds nulls only (Arrow type null)."""
    folder.mkdir()
    half = len(with_nulls) // 2
    for name, values in (("a.parquet", with_nulls[:half]), ("c.parquet", with_nulls[half:])):
        pq.write_table(pa.table({"id": list(range(len(values))), "text": values}), folder / name, row_group_size=7)
    nothing = pa.table({"id": [1, 2, 3], "text": pa.nulls(3)})
    assert nothing.schema.field("text").type == pa.null()
    pq.write_table(nothing, folder / "b.parquet")
    return folder


@pytest.mark.parametrize("workers", [0, 2])
def test_parquet_null_texts_are_skipped_and_counted(tmp_path, tokenizer_dir, documents, workers):
    texts, with_nulls = documents
    folder = write_parquet(tmp_path / "pq", with_nulls)
    result = convert_all(folder, tmp_path / "out", tokenizer_dir, num_workers=workers)
    counts = result.manifest.documents
    nulls = with_nulls.count(None) + 3
    assert (counts.read, counts.skipped_null, counts.skipped_empty) == (len(with_nulls) + 3, nulls, 0)
    assert np.array_equal(read_rows(tmp_path / "out" / "train"), reference(tmp_path, tokenizer_dir, texts))
    again = convert_all(folder, tmp_path / "out", tokenizer_dir, num_workers=workers)
    assert again.already_complete and again.fingerprint == result.fingerprint


def test_shuffled_parquet_with_nulls_gives_the_rows_of_the_same_json_lines(tmp_path, tokenizer_dir, documents):
    """Shuffled, the null records keep their places in the document stream: the same rows as JSON lines."""
    _, with_nulls = documents
    shuffle = dict(shuffle=True, seed=11, shuffle_buffer=30, num_workers=0)
    pq.write_table(pa.table({"text": with_nulls}), tmp_path / "all.parquet", row_group_size=7)
    parquet = convert_all(tmp_path / "all.parquet", tmp_path / "p", tokenizer_dir, **shuffle)
    lines = convert_all(write_jsonl(tmp_path / "all.jsonl", with_nulls), tmp_path / "j", tokenizer_dir, **shuffle)
    assert parquet.manifest.documents == lines.manifest.documents
    assert parquet.manifest.documents.skipped_null == with_nulls.count(None)
    assert np.array_equal(read_rows(tmp_path / "p" / "train"), read_rows(tmp_path / "j" / "train"))


def test_datasets_null_texts_are_skipped_counted_and_summarized(tmp_path, tokenizer_dir, documents):
    """A Hub-style CSV folder through ``datasets``: an empty CSV cell is a null text."""
    texts, with_nulls = documents
    folder = write_csv(tmp_path / "csv", "body", [*with_nulls[:3], "   ", *with_nulls[3:]])
    result = call_cli("convert", "--dataset", folder, "--source_format", "datasets", "--text_field", "body",
                      "--out_root", tmp_path / "out", "--tokenizer", tokenizer_dir, "--concat_tokens", CONCAT,
                      "--val_tokens", 0, "--num_workers", 0)
    assert result.returncode == 0, result.stderr
    nulls = with_nulls.count(None)
    assert f"documents read {len(with_nulls) + 1:,}, empty skipped 1, null skipped {nulls:,};" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["documents"]["skipped_null"] == nulls and manifest["documents"]["skipped_empty"] == 1
    assert np.array_equal(read_rows(tmp_path / "out" / "train"), reference(tmp_path, tokenizer_dir, texts))


@pytest.mark.parametrize("name,data,message", [
    ("gone.jsonl", b'{"text": null}\n{"text": "a b"}\n{"id": 3}\n',
     "gone.jsonl, line 3: record has no 'text' field (fields: id); name the text field with --text_field"),
    ("int.jsonl", b'{"text": null}\n{"text": 7}\n', "int.jsonl, line 2: 'text' is int, expected a string"),
])
def test_a_record_without_the_field_or_with_a_number_stays_an_error(tmp_path, tokenizer_dir, name, data, message):
    (tmp_path / name).write_bytes(data)
    result = call_cli("convert", "--dataset", tmp_path / name, "--out_root", tmp_path / "out", "--tokenizer",
                      tokenizer_dir, "--concat_tokens", 4, "--num_workers", 0)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
