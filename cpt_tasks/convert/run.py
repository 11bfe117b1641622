"""``convert(cfg) -> ConvertResult``: read, tokenize in worker processes, pack, write MDS, then the manifest.

Rerun-safe: the same fingerprint with a manifest in place is a no-op that touches no file; otherwise the
split folders are cleared and rewritten, and the manifest goes last. A run killed at any point leaves no
manifest, and rerunning it gives the same bytes.
"""

from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone

from cpt_tasks.convert.config import ConvertConfig
from cpt_tasks.convert.encode import ChunkResult, encode_chunk, peak_rss_mb, set_encoder, start_pool
from cpt_tasks.convert.manifest import (COLUMN_ENCODING, MANIFEST_FORMAT, MANIFEST_NAME, code_version,
                                        fingerprint, read_manifest)
from cpt_tasks.convert.mds import TokenShardWriter
from cpt_tasks.convert.order import Chunk, iter_blocks, iter_chunks, iter_documents
from cpt_tasks.convert.pack import Packer
from cpt_tasks.convert.sources import Source, open_blocks, resolve_source
from cpt_tasks.errors import UserError
from cpt_tasks.progress import Progress
from cpt_tasks.storage import join, remove_file, remove_tree, write_bytes_atomic
from cpt_tasks.tokenizer import Encoder, describe, resolve_tokenizer_dir

SPLITS = ("train", "val")
SHARD_HASHES = ["sha1"]


@dataclass
class ConvertResult:
    """What a conversion produced (or found already complete)."""

    out_root: str
    fingerprint: str
    up_to_date: bool
    manifest: dict


class _Ready:
    """An already computed result with the Future interface (for --num_workers 0)."""

    def __init__(self, value: ChunkResult) -> None:
        self.value = value

    def result(self) -> ChunkResult:
        return self.value

    def done(self) -> bool:
        return True


def convert(cfg: ConvertConfig, progress_interval: float = 10.0) -> ConvertResult:
    """Convert ``cfg.dataset`` into MDS at ``cfg.out_root`` (see DESIGN.md's data contract)."""
    started = time.time()
    source = resolve_source(cfg.dataset, cfg.data_subset, cfg.splits[0], cfg.revision)
    folder = resolve_tokenizer_dir(cfg.tokenizer, cfg.tokenizer_revision)
    encoder = Encoder(folder, cfg.bos_text, cfg.eos_text, cfg.tokenizer_backend)
    tok = describe(cfg.tokenizer, folder, encoder)
    fp = fingerprint(cfg, source, tok)

    existing = read_manifest(cfg.out_root)
    if existing is not None:
        if existing.get("fingerprint") == fp:
            return ConvertResult(cfg.out_root, fp, True, existing)
        if not cfg.overwrite:
            raise UserError(f"--out_root {cfg.out_root} holds another conversion (fingerprint "
                            f"{existing.get('fingerprint', '?')[:12]}, this one {fp[:12]}); "
                            "choose another --out_root or pass --overwrite")
    remove_file(join(cfg.out_root, MANIFEST_NAME))  # incomplete from here until the new manifest lands
    for split in SPLITS:
        remove_tree(join(cfg.out_root, split))

    stats = _run(cfg, source, encoder, str(folder), progress_interval)
    finished = time.time()
    manifest = {
        "format": MANIFEST_FORMAT,
        "fingerprint": fp,
        "code_version": code_version(encoder.backend),
        "config": cfg.model_dump(exclude={"overwrite"}),
        "source": source.describe(),
        "tokenizer": {"name": tok.name, "sha256": tok.sha256, "files": tok.files, "bos_id": tok.bos_id,
                      "eos_id": tok.eos_id, "vocab_size": tok.vocab_size, "backend": tok.backend},
        "concat_tokens": cfg.concat_tokens,
        "columns": {"tokens": COLUMN_ENCODING},
        "splits": stats["splits"],
        "documents": stats["documents"],
        "exhausted": stats["exhausted"],
        "timings": {
            "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
            "finished_at": datetime.fromtimestamp(finished, timezone.utc).isoformat(),
            "seconds": round(finished - started, 3),
            "tokens_per_second": round(stats["tokens_out"] / max(finished - started, 1e-9)),
            "peak_rss_mb": stats["peak_rss_mb"],
        },
    }
    write_bytes_atomic(join(cfg.out_root, MANIFEST_NAME), json.dumps(manifest, indent=2).encode())
    return ConvertResult(cfg.out_root, fp, False, manifest)


def _open_writers(cfg: ConvertConfig) -> dict[str, TokenShardWriter]:
    return {split: TokenShardWriter(join(cfg.out_root, split), cfg.mds_compression, cfg.size_limit, SHARD_HASHES)
            for split in SPLITS}


def _run(cfg: ConvertConfig, source: Source, encoder: Encoder, folder: str, progress_interval: float) -> dict:
    spec = (folder, cfg.bos_text, cfg.eos_text, cfg.tokenizer_backend)
    set_encoder(encoder)
    # Started before any writer starts upload threads.
    pool = start_pool(cfg.num_workers, encoder, spec) if cfg.num_workers else None
    packer = Packer(cfg.concat_tokens, cfg.train_rows, cfg.val_rows)
    budget = None if cfg.train_rows is None else (cfg.train_rows + cfg.val_rows) * cfg.concat_tokens
    progress = Progress(f"convert {cfg.data_subset or source.dataset}", budget, progress_interval)
    counts = {"read": 0, "skipped_empty": 0}
    counts_peak = {"workers": 0.0}
    writers: dict[str, TokenShardWriter] = {}
    inflight: deque[tuple[Chunk, Future | _Ready]] = deque()
    window = 2 * max(cfg.num_workers, 1) + 2

    def consume() -> None:
        chunk, pending = inflight.popleft()
        try:
            result = pending.result()
        except BrokenProcessPool as exc:
            raise RuntimeError("a tokenizer worker died (killed, or out of memory?); safe to retry") from exc
        if result.error is not None:
            line, message = result.error
            file_index, number = chunk.locate(line)
            src = source.files[file_index]
            unit = "record" if open_blocks(src)[0] else "line"  # a JSON array file numbers its records
            raise UserError(f"{src.rel}, {unit} {number}: {message}")
        counts["read"] += result.records
        counts["skipped_empty"] += result.empty
        counts_peak["workers"] = max(counts_peak["workers"], result.peak_rss_mb)
        written = 0
        for split, rows in packer.feed(result.tokens, result.lengths):
            for row in rows:
                writers[split].write(row)
            written += rows.size
        progress.update(len(result.lengths), written)

    try:
        writers = _open_writers(cfg)
        if cfg.shuffle:
            chunks = iter_chunks(iter_documents(source.files, True, cfg.seed, cfg.shuffle_buffer))
        else:
            chunks = iter_blocks(source.files)
        for chunk in chunks:
            inflight.append((chunk, pool.submit(encode_chunk, chunk.payload) if pool else
                             _Ready(encode_chunk(chunk.payload))))
            # Once the budgets are met nothing more is consumed, whatever the workers still hold.
            while inflight and not packer.done and (len(inflight) >= window or inflight[0][1].done()):
                consume()
            if packer.done:
                break
        while inflight and not packer.done:
            consume()
        if counts["read"] == 0:
            raise UserError(f"--dataset {cfg.dataset}: the input holds no documents")
        if packer.train.stats.samples == 0:
            raise UserError(f"--dataset {cfg.dataset}: {packer.documents} non-empty documents hold fewer "
                            f"tokens than one row of {cfg.concat_tokens}")
        for writer in writers.values():
            writer.finish()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        progress.close()
        if pool is not None:  # running chunks are short; queued ones are cancelled
            pool.shutdown(wait=True, cancel_futures=True)
    splits = {}
    for phase, wanted in ((packer.train, cfg.train_rows), (packer.val, cfg.val_rows)):
        splits[phase.name] = {**vars(phase.stats), "requested_samples": wanted}
    return {
        "splits": splits,
        "documents": {**counts, "used": packer.train.stats.documents + packer.val.stats.documents},
        "exhausted": not packer.done and cfg.train_rows is not None,
        "tokens_out": (packer.train.stats.tokens + packer.val.stats.tokens),
        "peak_rss_mb": {
            "main": peak_rss_mb(),
            "workers": counts_peak["workers"] if pool is not None else 0.0,
        },
    }


def format_summary(result: ConvertResult) -> str:
    """A readable end-of-run table."""
    m = result.manifest
    if result.up_to_date:
        return (f"up to date: {result.out_root} already holds this conversion "
                f"(fingerprint {result.fingerprint[:12]}); no file was touched")
    lines = [f"converted {m['source']['dataset']} [{m['source']['subset'] or '-'}] -> {result.out_root}",
             f"{'split':<6} {'documents':>10} {'samples':>9} {'tokens':>14} {'requested':>10}"]
    for name, s in m["splits"].items():
        wanted = "all" if s["requested_samples"] is None else s["requested_samples"]
        lines.append(f"{name:<6} {s['documents']:>10,} {s['samples']:>9,} {s['tokens']:>14,} {wanted:>10}")
    t = m["timings"]
    lines.append(f"documents read {m['documents']['read']:,}, empty skipped {m['documents']['skipped_empty']:,}; "
                 f"source exhausted: {'YES (fewer rows than requested)' if m['exhausted'] else 'no'}")
    lines.append(f"{t['seconds']:.1f}s, {t['tokens_per_second']:,} tokens/s, tokenizer backend "
                 f"{m['tokenizer']['backend']}, fingerprint {result.fingerprint[:12]}")
    return "\n".join(lines)


def summarize_result(result: ConvertResult) -> dict:
    """The JSON-ready result the DAG keeps (XCom): status, location, source and counts."""
    m = result.manifest
    return {
        "status": "up_to_date" if result.up_to_date else "converted",
        "out_root": result.out_root, "manifest": join(result.out_root, MANIFEST_NAME),
        "fingerprint": result.fingerprint, "source": m.get("source", {}),
        "splits": {split: {k: m["splits"][split][k] for k in ("documents", "samples", "tokens")}
                   for split in SPLITS},
        "exhausted": m.get("exhausted", False),
    }
