"""Bad input: exit status 2, one clear message naming the file and line (or the argument), no manifest."""

import gzip

import pytest
import zstandard
from conftest import call_cli

GOOD = b'{"id": "a", "text": "A perfectly fine first document about tokenizers."}\n'


def convert_file(tmp_path, tokenizer_dir, name, data, *extra):
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / "out"
    proc = call_cli("convert", "--dataset", src, "--out_root", out, "--tokenizer", tokenizer_dir,
                   "--concat_tokens", 8, *extra)
    assert not (out / "manifest.json").exists()
    return proc


@pytest.mark.parametrize("name,data,message", [
    ("no_text.jsonl", GOOD * 3 + b'{"id": "b", "body": "x"}\n', "no_text.jsonl, line 4: record has no 'text' field"),
    ("int_text.jsonl", GOOD + b'{"text": 42}\n', "int_text.jsonl, line 2: 'text' is int, expected a string"),
    ("bad_json.jsonl", GOOD * 2 + b'{"text": "unterminated\n' + GOOD, "bad_json.jsonl, line 3: invalid JSON"),
    ("list.jsonl", GOOD + b'["text"]\n', "list.jsonl, line 2: expected a JSON object"),
    ("cut.jsonl.gz", gzip.compress(GOOD * 500)[:-40], "cut.jsonl.gz: unreadable or truncated"),
    ("cut.jsonl.zst", zstandard.ZstdCompressor().compress(GOOD * 500)[:-20], "cut.jsonl.zst: unreadable or truncated"),
    ("garbage.jsonl.zst", b"not zstd at all" * 10, "garbage.jsonl.zst"),
    ("empty.jsonl", b"", "holds no documents"),
    ("blank.jsonl", b'{"text": "   "}\n{"text": ""}\n', "fewer tokens than one row"),
])
def test_bad_input_is_a_user_error(tmp_path, tokenizer_dir, name, data, message):
    proc = convert_file(tmp_path, tokenizer_dir, name, data)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--concat_tokens", "0"], "--concat_tokens: Input should be greater than 0"),
    (["--concat_tokens", "-5"], "--concat_tokens"),
    (["--max_tokens", "4"], "max_tokens (4) is smaller than one row"),
    (["--max_tokens", "2.5e1x"], "--max_tokens"),
    (["--val_tokens", "16"], "val_tokens needs max_tokens"),
    (["--tokenizer", "/nonexistent/tok"], "--tokenizer /nonexistent/tok: no such tokenizer folder"),
    (["--compression", "lz4"], "--compression"),
    (["--splits", "train", "validation"], "--splits"),
])
def test_bad_arguments_are_user_errors(tmp_path, tokenizer_dir, args, message):
    proc = convert_file(tmp_path, tokenizer_dir, "ok.jsonl", GOOD * 20, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_missing_dataset_and_subset(tmp_path, tokenizer_dir):
    (tmp_path / "data" / "flan").mkdir(parents=True)
    proc = call_cli("convert", "--dataset", tmp_path, "--data_subset", "dclm", "--out_root", tmp_path / "o",
                   "--tokenizer", tokenizer_dir)
    assert proc.returncode == 2 and f"{tmp_path}/data/dclm" in proc.stderr
    proc = call_cli("convert", "--dataset", tmp_path, "--data_subset", "flan", "--out_root", tmp_path / "o",
                   "--tokenizer", tokenizer_dir)
    assert proc.returncode == 2 and "no .json" in proc.stderr
    proc = call_cli("convert", "--dataset", tmp_path / "nope.jsonl", "--out_root", tmp_path / "o",
                   "--tokenizer", tokenizer_dir)
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


@pytest.mark.parametrize("shuffle", ["--no-shuffle", "--shuffle"])
def test_line_numbers_are_exact_in_large_files(tmp_path, tokenizer_dir, shuffle):
    body = b"".join(b'{"text": "document %d with a few words of text to make the file large enough"}\n' % i
                    + (b"\n" if i % 7 == 0 else b"") for i in range(40_000))  # blank lines count as lines
    line = body.count(b"\n") + 1
    data = zstandard.ZstdCompressor().compress(body + b'{"txt": "the bad one"}\n' + GOOD)
    proc = convert_file(tmp_path, tokenizer_dir, "big.jsonl.zst", data, shuffle, "--shuffle_buffer", "100")
    assert proc.returncode == 2 and f"big.jsonl.zst, line {line}: record has no 'text' field" in proc.stderr


def test_a_record_without_the_named_text_field_names_that_field(tmp_path, tokenizer_dir):
    proc = convert_file(tmp_path, tokenizer_dir, "body.jsonl", GOOD * 3, "--text_field", "body")
    assert proc.returncode == 2, proc.stderr
    assert "body.jsonl, line 1: record has no 'body' field (fields: id, text)" in proc.stderr
