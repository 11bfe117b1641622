"""The conversion's fingerprint and manifest: what determines the bytes, and the completion marker.

``manifest.json`` (:class:`~cpt_tasks.documents.convert.ConvertManifest`) is written last, atomically, into
``out_root``: a folder without a valid one is incomplete and never trusted. Its ``fingerprint`` hashes
everything that determines the output bytes, and nothing that does not (worker count, output location, the
local path of the input folder).
"""

from __future__ import annotations

import hashlib
import json

from cpt_tasks import __version__
from cpt_tasks.convert.config import ConvertConfig
from cpt_tasks.convert.mds import MDS_VERSION
from cpt_tasks.convert.sources import Source
from cpt_tasks.documents import find_document
from cpt_tasks.documents.convert import ConvertManifest
from cpt_tasks.layout import COLUMN_ENCODING, MANIFEST_FILE
from cpt_tasks.storage import join
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
    if cfg.text_field != "text":  # the default stays out, so fingerprints from before the option still hold
        payload["text_field"] = cfg.text_field
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _compressor_version() -> str:
    """The zstd library that compresses the shards: another version may give other compressed bytes."""
    import zstd

    return zstd.ZSTD_version()


def manifest_location(out_root: str) -> str:
    """Where a conversion's manifest lies."""
    return join(out_root, MANIFEST_FILE)


def read_manifest(out_root: str) -> ConvertManifest | None:
    """The manifest at ``out_root``, or None when there is none (or it is not a valid one)."""
    return find_document(manifest_location(out_root), ConvertManifest)


def code_version(backend: str) -> dict[str, str]:
    """Versions of the code that produced the bytes."""
    from importlib.metadata import version

    versions = {"cpt-pipeline": __version__, "converter": CONVERTER_VERSION, "mds": str(MDS_VERSION)}
    versions[backend] = version(backend)
    return versions
