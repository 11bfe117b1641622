"""The converter's fast framing (tiktoken's buffer encoder) gives exactly the ids of ``encode_ordinary``."""

import random

import numpy as np
import pytest

from cpt_tasks.tokenizer import _SENTINEL, LLAMA3_BOS, LLAMA3_EOS, Encoder


def framed_reference(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """BOS + encode_ordinary(text) + EOS per text, concatenated (the plain, list-based path)."""
    ids = [[encoder.bos_id, *doc, encoder.eos_id] for doc in encoder.encode(texts)]
    return np.array([i for doc in ids for i in doc], dtype=np.int32)


def test_buffer_framing_equals_encode_ordinary(tokenizer_dir):
    encoder = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS)
    assert encoder.backend == "tiktoken"
    rng = random.Random(7)
    alphabet = ["a", "Z", " ", "  ", "\n", "\r\n", "\t", "é", "東京", "🚀", "'s", "123456", "<|", "|>", "<",
                "\u00a0"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(300)]
    texts += ["end <|end_of_text|> <|begin_of_text|> <|reserved_special_token_3|>", _SENTINEL,
              f"x{_SENTINEL}y{_SENTINEL}", "lone \udc80 surrogate \ud800", "x" * 20_000, " " * 1000 + "y"]
    tokens, lengths = encoder.encode_framed(texts)
    assert tokens.dtype == np.int32 and lengths.dtype == np.int64
    np.testing.assert_array_equal(tokens, framed_reference(encoder, texts))
    assert lengths.tolist() == [len(doc) + 2 for doc in encoder.encode(texts)]
    assert encoder.vocab_size not in set(tokens.tolist())  # the sentinel's id never comes out


def test_buffer_framing_of_no_text(tokenizer_dir):
    tokens, lengths = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS).encode_framed([])
    assert len(tokens) == 0 and len(lengths) == 0 and tokens.dtype == np.int32


def test_the_sentinel_id_decodes_as_no_token(tokenizer_dir):
    encoder = Encoder(tokenizer_dir, LLAMA3_BOS, LLAMA3_EOS)
    assert encoder.decode([9906, 1917]) == "Hello world"
    for bad in (encoder.vocab_size, encoder.vocab_size + 1):
        with pytest.raises(KeyError):
            encoder.decode([9906, bad])
