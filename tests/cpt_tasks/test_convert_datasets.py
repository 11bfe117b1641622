"""The general path through ``datasets.load_dataset(..., streaming=True)`` (``--source_format datasets``), on a
local CSV folder the test writes (``datasets`` infers its builder offline): the same rows as the same texts in
JSON lines, with and without shuffle; a missing or non-string text column is a UserError naming dataset, row,
field (a null text is an empty document: tests/cpt_tasks/test_convert_nulls.py)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import call_cli, read_rows
from test_convert_parquet import CONCAT, sample_texts

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert


@pytest.fixture(scope="module")
def texts(sample_dir):
    # CSV has no empty string (pandas reads "" as a missing value): the sample's blank record stays out
    return [t for f in sample_texts(sample_dir, "pes2o") for t in f if t.strip()]


def write_csv(folder, column, values):
    folder.mkdir(parents=True)
    pd.DataFrame({"id": range(len(values)), column: values}).to_csv(folder / "train.csv", index=False)
    return folder


@pytest.mark.parametrize("shuffle", [False, True])
def test_datasets_path_gives_the_rows_of_the_same_json_lines(tmp_path, tokenizer_dir, texts, shuffle):
    folder = write_csv(tmp_path / "csv", "body", texts)
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    common = dict(tokenizer=str(tokenizer_dir), concat_tokens=CONCAT, max_tokens=20 * CONCAT, val_tokens=CONCAT,
                  shuffle=shuffle, seed=3, shuffle_buffer=40, num_workers=0)
    ds = convert(ConvertConfig(dataset=str(folder), source_format="datasets", text_field="body",
                               out_root=str(tmp_path / "ds"), **common), progress_interval=0)
    js = convert(ConvertConfig(dataset=str(tmp_path / "jsonl"), out_root=str(tmp_path / "js"), **common),
                 progress_interval=0)
    for split in ("train", "val"):
        rows = read_rows(tmp_path / "ds" / split)
        assert len(rows) == {"train": 20, "val": 1}[split]
        assert np.array_equal(rows, read_rows(tmp_path / "js" / split))
    source = ds.manifest.source
    assert source.kind == "datasets" and source.revision is None and [f.path for f in source.files] == ["train.csv"]
    again = convert(ConvertConfig(dataset=str(folder), source_format="datasets", text_field="body",
                                  out_root=str(tmp_path / "ds"), **common), progress_interval=0)
    assert again.already_complete and again.fingerprint == ds.fingerprint != js.fingerprint


def test_datasets_errors_name_dataset_row_and_field(tmp_path, tokenizer_dir):
    folder = write_csv(tmp_path / "holes", "text", ["one two", "three", None, "four"])
    base = ["convert", "--out_root", tmp_path / "out", "--tokenizer", tokenizer_dir, "--concat_tokens", 4,
            "--num_workers", 0]
    result = call_cli(*base, "--dataset", folder, "--source_format", "datasets", "--text_field", "id")
    assert result.returncode == 2 and "row 1: 'id' is int, expected a string" in result.stderr, result.stderr
    result = call_cli(*base, "--dataset", folder, "--source_format", "datasets", "--text_field", "content")
    assert result.returncode == 2, result.stderr
    assert ("row 1: no 'content' field (fields: id, text); name the text field with --text_field"
            in result.stderr), result.stderr
    result = call_cli(*base, "--dataset", folder)  # auto reads files: a CSV folder has none, and it says what to do
    assert result.returncode == 2 and "--source_format datasets" in result.stderr, result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("listed,source_format,kind", [
    (["data/wiki/0000/wiki-0000.parquet", "data/wiki/README.md"], "auto", "hub"),  # Hub parquet: the files path
    (["data/wiki/train.csv"], "auto", "datasets"),  # no JSON/parquet files: datasets, pinned to the commit
    (["data/wiki/0000/wiki-0000.json.zst"], "datasets", "datasets"),  # asked for explicitly
    (["data/wiki/train.csv"], "files", None),  # files only: a UserError that names the other way
])
def test_source_format_chooses_the_reader(endpoint, listed, source_format, kind):
    """Which reader a Hub id gets, asked of a local Hub server through the real client (tests/hub_server.py)."""
    from hub_server import HubRepo, HubServer

    from cpt_tasks.data.readers import resolve_input
    from cpt_tasks.errors import UserError

    repo = HubRepo("org/corpus", {path: b"x" * 10 for path in listed})
    server = HubServer(repo).start()
    try:
        endpoint(server.url)
        cfg = ConvertConfig(dataset="org/corpus", data_subset="wiki", revision="main", source_format=source_format,
                            out_root="-", tokenizer="-", connect_timeout=2, read_timeout=2, max_retries=1)
        if kind is None:
            with pytest.raises(UserError, match="no JSON or parquet files at data/wiki.*--source_format datasets"):
                resolve_input(cfg)
            return
        source = resolve_input(cfg)
    finally:
        server.stop()
    assert (source.kind, source.revision, source.subset) == (kind, repo.commit, "wiki")
    if kind == "hub":
        assert [f.rel for f in source.files] == ["data/wiki/0000/wiki-0000.parquet"]
    else:
        assert source.files == [] and source.dataset == "org/corpus"
    assert server.requests("GET", "/api/datasets/org/corpus/revision/main"), server.log  # pinned by dataset_info
