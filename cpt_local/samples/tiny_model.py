"""A small random Llama made with ``save_pretrained``: the CPU demo's and the tests' pretrained model (nothing
is downloaded), and the GPU benchmark's Llama-3.2-1B-shaped one. Its vocabulary and BOS/EOS ids are its
tokenizer's (Llama 3's 128,256 ids by default, or the small test tokenizer's)."""

from __future__ import annotations

from pathlib import Path

LLAMA3_IDS = dict(vocab_size=128256, bos_token_id=128000, eos_token_id=128001)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=True)
LLAMA_32_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                   num_key_value_heads=8, tie_word_embeddings=True, rope_theta=500000.0,
                   rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                 "original_max_position_embeddings": 8192, "rope_type": "llama3"})


def write_random_llama(out: Path, tokenizer_dir: Path | None = None, *, seed: int = 0, context: int = 8192,
                       dtype: str = "float32", **shape) -> Path:
    """Save a randomly initialised LlamaForCausalLM (``TINY`` unless ``shape`` is given) sized for the tokenizer
    (Llama 3's vocabulary without one), and the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir)) if tokenizer_dir is not None else None
    ids = (dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
           if tokenizer is not None else LLAMA3_IDS)
    torch.manual_seed(seed)
    config = LlamaConfig(**ids, max_position_embeddings=context, torch_dtype=dtype, **(shape or TINY))
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out
