"""Tokenizer: the exported Llama 3 folder, and tiktoken/HF ids being identical on real text."""

import json

import orjson
import pytest
from conftest import ROOT

from cpt_tasks.errors import UserError
from cpt_tasks.tokenizer import LLAMA3_BOS, LLAMA3_EOS, Encoder, resolve_tokenizer_dir


def sample_texts(sample_dir, limit=400):
    import zstandard

    texts = []
    for path in sorted((sample_dir / "data").rglob("*.json.zst")):
        for line in zstandard.ZstdDecompressor().decompress(path.read_bytes()).splitlines():
            texts.append(orjson.loads(line)["text"])
    return texts[:: max(1, len(texts) // limit)]


def test_exported_tokenizer_matches_llama31(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert len(tok) == 128256
    assert (tok.bos_token_id, tok.eos_token_id) == (128000, 128001)
    assert tok("Hello world").input_ids == [128000, 9906, 1917]


def test_backends_give_identical_ids_on_sample(tokenizer_dir, sample_dir):
    fast = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS)
    slow = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS, backend="tokenizers")
    assert (fast.backend, slow.backend) == ("tiktoken", "tokenizers")
    texts = sample_texts(sample_dir) + ["", " ", "naïve café — 東京 🚀", "a\r\n\r\nb\t\tc   ", "x" * 5000]
    assert fast.encode(texts) == slow.encode(texts)


def test_special_token_strings_are_plain_text(tokenizer_dir):
    for backend in ("tiktoken", "tokenizers"):
        enc = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS, backend=backend)
        ids = enc.encode(["end <|end_of_text|> <|begin_of_text|>"])[0]
        assert 128000 not in ids and 128001 not in ids
        tokens, lengths = enc.encode_framed(["a <|end_of_text|>", "b"])
        assert tokens.tolist().count(128001) == 2 and tokens[0] == 128000 and lengths.sum() == len(tokens)


def test_non_tiktoken_tokenizer_falls_back(tokenizer_dir, tmp_path):
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFC"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    assert Encoder(tmp_path, LLAMA3_BOS, LLAMA3_EOS).backend == "tokenizers"
    with pytest.raises(UserError, match="not a tiktoken-compatible"):
        Encoder(tmp_path, LLAMA3_BOS, LLAMA3_EOS, backend="tiktoken")


def test_unknown_special_and_missing_folder_are_user_errors(tokenizer_dir, tmp_path):
    with pytest.raises(UserError, match="--eos_text"):
        Encoder(tokenizer_dir, LLAMA3_BOS, "<|eot|>")
    with pytest.raises(UserError, match="no such tokenizer folder"):
        resolve_tokenizer_dir(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no tokenizer.json"):
        resolve_tokenizer_dir(str(ROOT / "tests"))


def test_rank_cache_is_keyed_by_the_file_and_gives_the_same_ids(tokenizer_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_CACHE_DIR", str(tmp_path / "cache"))
    texts = ["Caching must not change a single id.", "naïve 東京 <|end_of_text|>"]
    cold = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS)
    cached = sorted(p.name for p in (tmp_path / "cache" / "tiktoken").iterdir())
    assert len(cached) == 2 and cached[0].endswith(".json") and cached[1].endswith(".ranks")
    warm = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS)
    assert warm.backend == "tiktoken" and warm.encode(texts) == cold.encode(texts)
    assert (warm.bos_id, warm.eos_id, warm.vocab_size) == (128000, 128001, 128256)
    # an edited tokenizer.json is a different key: it is validated afresh, never served from the cache
    other = tmp_path / "other"
    other.mkdir()
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFC"}
    (other / "tokenizer.json").write_text(json.dumps(spec))
    assert Encoder(other, LLAMA3_BOS, LLAMA3_EOS).backend == "tokenizers"
