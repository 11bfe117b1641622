"""A tiny random Llama (Llama 3 vocabulary, two layers) saved as a Hugging Face folder with the tokenizer:
the base model of the embedded demo and the training tests, trainable on the CPU in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def write_tiny_llama(out: Path, tokenizer_dir: Path, seed: int = 0, max_positions: int = 2048) -> Path:
    """Write config + safetensors + tokenizer files to ``out`` (replaced atomically); return ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=True)
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    LlamaForCausalLM(config).save_pretrained(staging, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).exists():
            shutil.copy2(Path(tokenizer_dir) / name, staging / name)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out
