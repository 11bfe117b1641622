"""The conversion's fingerprint: a hash of everything that determines a conversion's output bytes.

The converter names its output folder by it and the plan computes it ahead for every subset, so both read it
from here. It hashes nothing that does not determine the bytes (worker count, output location, the local path
of the input folder).
"""

from __future__ import annotations

import hashlib
import json

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.data.sources import Source
from cpt_tasks.layout import COLUMN_ENCODING
from cpt_tasks.tokenizer import TokenizerInfo

CONVERTER_VERSION = "1"  # bump whenever the same inputs would give different output bytes


def fingerprint(cfg: ConvertConfig, source: Source, tok: TokenizerInfo) -> str:
    """sha256 over the inputs that determine the output bytes."""
    described = source.describe().model_dump()
    if source.revision is None:  # local, object storage: content-addressed by the files' digests, not by where
        described["dataset"] = None  # they lie (a hub source is pinned by its dataset id and commit)
    for info in described["files"]:
        if info["algorithm"] == "sha256":  # the default stays out, so earlier fingerprints still hold
            del info["algorithm"]
    payload = {
        "converter": CONVERTER_VERSION,
        "source": described,
        "tokenizer": {"sha256": tok.sha256, "bos_id": tok.bos_id, "eos_id": tok.eos_id},
        "concat_tokens": cfg.concat_tokens,
        "max_tokens": cfg.max_tokens,
        "val_tokens": cfg.val_tokens,
        "shuffle": {"seed": cfg.seed, "buffer": cfg.shuffle_buffer} if cfg.shuffle else None,
        "compression": cfg.compression,
        "compressor": _compressor_version() if cfg.mds_compression else None,
        "size_limit": cfg.size_limit,
        "encoding": COLUMN_ENCODING,
    }
    if cfg.val_first:  # defaults stay out, so a one-part, train-first conversion keeps its fingerprint
        payload["val_first"] = True
    if cfg.parts > 1:
        payload["part"] = {"index": cfg.part, "of": cfg.parts}
    if cfg.text_field != "text":  # the default stays out, so fingerprints from before the option still hold
        payload["text_field"] = cfg.text_field
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _compressor_version() -> str:
    """The zstd library that compresses the shards: another version may give other compressed bytes."""
    import zstd

    return zstd.ZSTD_version()


def parts_fingerprint(parts: list[str]) -> str:
    """A conversion in parts: one fingerprint over its parts' (in order); one part's own when there is one."""
    if len(parts) == 1:
        return parts[0]
    return hashlib.sha256(json.dumps({"converter": CONVERTER_VERSION, "parts": parts}).encode()).hexdigest()
