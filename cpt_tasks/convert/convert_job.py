"""``convert(cfg) -> ConvertResult``: read, tokenize in worker processes, pack, write MDS, then the manifest.

Rerun-safe: a manifest of this very conversion (the same fingerprint; ``cpt_tasks.runs.completion.find_marker``
decides) makes it a no-op that touches no file (``already_complete``); a manifest of another conversion is a
``UserError`` unless ``--overwrite``; otherwise the split folders are cleared and rewritten, and the manifest
goes last. A run killed at any point leaves no manifest, and rerunning it gives the same bytes.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_manifest import code_version
from cpt_tasks.convert.mds import TokenShardWriter
from cpt_tasks.convert.pack import Packer
from cpt_tasks.data.encode import ChunkResult, encode_chunk, peak_rss_mb, set_encoder, start_pool, stop_pool
from cpt_tasks.data.fingerprint import fingerprint
from cpt_tasks.data.readers import iter_input_chunks, record_error, resolve_input
from cpt_tasks.data.order import Chunk
from cpt_tasks.data.parts import part_source
from cpt_tasks.data.shared_slots import SharedSlots
from cpt_tasks.data.sources import OpenFiles, Source
from cpt_tasks.documents import write_document
from cpt_tasks.documents.convert_docs import (ConvertManifest, ConvertSummary, DocumentCounts, SplitCounts, SplitTotals,
                                         Timings, TokenizerRecord, manifest_location, marker_location,
                                         split_location)
from cpt_tasks.errors import UserError
from cpt_tasks.jobs import Outcome
from cpt_tasks.layout import COLUMN_ENCODING, COLUMN_NAME, SPLITS
from cpt_tasks.progress import Progress
from cpt_tasks.runs.completion import ALREADY_COMPLETE, find_marker
from cpt_tasks.storage import join, remove_file, remove_tree
from cpt_tasks.tokenizer import Encoder, TokenizerInfo, describe, resolve_tokenizer_dir

SHARD_HASHES = ["sha1"]


@dataclass
class ConvertResult:
    """What a conversion produced (or found already complete)."""

    out_root: str
    fingerprint: str
    already_complete: bool
    manifest: ConvertManifest


@dataclass
class _Written:
    """What the split writers produced: counts per split and of the documents read, and memory."""

    splits: dict[str, SplitCounts]
    documents: DocumentCounts
    exhausted: bool
    tokens: int
    peak_rss_mb: dict[str, float]


def convert(cfg: ConvertConfig, progress_interval: float = 10.0) -> ConvertResult:
    """Convert ``cfg.dataset`` into MDS at ``cfg.out_root`` (see DESIGN.md's data contract)."""
    started = time.time()
    source = resolve_input(cfg)
    folder = resolve_tokenizer_dir(cfg.tokenizer, cfg.tokenizer_revision)
    encoder = Encoder(folder, cfg.bos_text, cfg.eos_text, cfg.tokenizer_backend)
    tok = describe(cfg.tokenizer, folder, encoder)
    fp = fingerprint(cfg, source, tok)  # a part's: the whole listing, and which part of how many
    source = part_of(source, cfg)

    marker = marker_location(cfg)
    done, other = find_marker(marker, ConvertManifest, lambda found: found.fingerprint == fp)
    if done is not None:
        return ConvertResult(cfg.out_root, fp, True, done)
    if not cfg.overwrite and other is not None:
        raise UserError(f"--out_root {cfg.out_root} holds another conversion (fingerprint "
                        f"{other.fingerprint[:12]}, this one {fp[:12]}); "
                        "choose another --out_root or pass --overwrite")
    remove_file(marker)  # incomplete from here until the new manifest lands
    if cfg.parts > 1:
        remove_file(manifest_location(cfg.out_root))  # the merged manifest no longer holds once a part changes
    for split in SPLITS:
        remove_tree(split_location(cfg, split))

    written = _Conversion(cfg, source, encoder, str(folder), progress_interval).run()
    manifest = _manifest(cfg, fp, source, tok, written, started)
    write_document(marker, manifest)
    return ConvertResult(cfg.out_root, fp, False, manifest)


def part_of(source: Source, cfg: ConvertConfig) -> Source:
    """The files this conversion reads: its part's (``--part`` of ``--parts``), else all; UserError when the
    source cannot be cut into that many parts (a part is at least one file)."""
    if cfg.parts == 1:
        return source
    if source.kind == "datasets" or len(source.files) < cfg.parts:
        what = "is read through datasets.load_dataset" if source.kind == "datasets" else \
            f"holds {len(source.files)} file(s)"
        raise UserError(f"--parts {cfg.parts}: --dataset {cfg.dataset} {what}; a part is at least one file "
                        "(use fewer parts)")
    return part_source(source, cfg.part, cfg.parts)


def _manifest(cfg: ConvertConfig, fp: str, source: Source, tok: TokenizerInfo, written: _Written,
              started: float) -> ConvertManifest:
    finished = time.time()
    seconds = finished - started
    return ConvertManifest(
        fingerprint=fp, code_version=code_version(tok.backend), config=cfg, source=source.describe(),
        tokenizer=TokenizerRecord(name=tok.name, sha256=tok.sha256, files=tok.files, bos_id=tok.bos_id,
                                  eos_id=tok.eos_id, vocab_size=tok.vocab_size, backend=tok.backend),
        concat_tokens=cfg.concat_tokens, columns={COLUMN_NAME: COLUMN_ENCODING}, splits=written.splits,
        documents=written.documents, exhausted=written.exhausted,
        timings=Timings(started_at=datetime.fromtimestamp(started, timezone.utc).isoformat(),
                        finished_at=datetime.fromtimestamp(finished, timezone.utc).isoformat(),
                        seconds=round(seconds, 3), tokens_per_second=round(written.tokens / max(seconds, 1e-9)),
                        peak_rss_mb=written.peak_rss_mb))


class _Ready:
    """An already computed result with the Future interface (for --num_workers 0)."""

    def __init__(self, value: ChunkResult) -> None:
        self.value = value

    def result(self) -> ChunkResult:
        return self.value

    def done(self) -> bool:
        return True


class _Conversion:
    """One conversion's pipeline: chunks of records go to the tokenizer processes (a bounded window in
    flight), their framed tokens come back in order, are packed into rows and written to the split's MDS."""

    def __init__(self, cfg: ConvertConfig, source: Source, encoder: Encoder, folder: str,
                 progress_interval: float) -> None:
        self.cfg, self.source, self.encoder = cfg, source, encoder
        self.spec = (folder, cfg.bos_text, cfg.eos_text, cfg.tokenizer_backend)
        self.packer = Packer(cfg.concat_tokens, cfg.train_rows, cfg.val_rows, cfg.val_first)
        budget = None if cfg.train_rows is None else (cfg.train_rows + cfg.val_rows) * cfg.concat_tokens
        # named as the pipeline names it: the subset, else the output's own folder (a plan's domain component)
        named = cfg.data_subset or cfg.out_root.rstrip("/").rsplit("/", 1)[-1] or source.dataset
        self.progress = Progress(f"convert {named}", budget, progress_interval)
        self.inflight: deque[tuple[Chunk, Future | _Ready]] = deque()
        self.window = 2 * max(cfg.workers, 1) + 2
        self.slots: SharedSlots | None = None  # a chunk's bytes and tokens to and from forked workers
        self.submitted = 0
        self.read = self.skipped_empty = self.skipped_null = 0
        self.worker_peak_mb = 0.0
        self.writers: dict[str, TokenShardWriter] = {}
        self.opened = OpenFiles()  # the input files being read; checked to their end when the budgets are met

    def run(self) -> _Written:
        """Convert everything the budgets need; abort the writers (nothing published) on any error."""
        workers = self.cfg.workers
        set_encoder(self.encoder)  # the in-process path (--num_workers 0) encodes with it too
        # Started before any writer starts upload threads.
        pool, self.slots = start_pool(workers, self.encoder, self.spec, self.window) if workers else (None, None)
        try:
            self.writers = {split: TokenShardWriter(split_location(self.cfg, split), self.cfg.mds_compression,
                                                    self.cfg.size_limit, SHARD_HASHES) for split in SPLITS}
            self._feed(pool)
            self._check_not_empty()
            for writer in self.writers.values():
                writer.finish()
        except BaseException:
            for writer in self.writers.values():
                writer.abort()
            raise
        finally:
            self.progress.close()
            if pool is not None:  # running chunks are short; queued ones are cancelled
                stop_pool(pool)
                self.slots = None
        return self._written(pool is not None)

    def _chunks(self):
        return iter_input_chunks(self.source, self.cfg, self.opened)

    def _feed(self, pool) -> None:
        chunks = self._chunks()
        try:
            self._feed_chunks(pool, chunks)
        finally:
            chunks.close()  # closes the open input files (and their connections)

    def _feed_chunks(self, pool, chunks) -> None:
        packer = self.packer
        for chunk in chunks:
            self.inflight.append((chunk, self._submit(pool, chunk)))
            # Once the budgets are met nothing more is consumed, whatever the workers still hold.
            while self.inflight and not packer.done and (len(self.inflight) >= self.window
                                                         or self.inflight[0][1].done()):
                self._consume()
            if packer.done:
                self.opened.finish()  # the file the budgets cut short is still read to its end and checked
                return
        while self.inflight and not packer.done:
            self._consume()

    def _submit(self, pool, chunk: Chunk) -> Future | _Ready:
        """Hand a chunk to the tokenizer processes, through its shared slot when they have slots (at most `window`
        chunks are in flight, so the slot's previous chunk is consumed already), or encode it here."""
        field = self.cfg.text_field
        if pool is None:
            return _Ready(encode_chunk(chunk.payload, field))
        if self.slots is None:
            return pool.submit(encode_chunk, chunk.payload, field)
        slot = self.slots.slot(self.submitted)
        self.submitted += 1
        return pool.submit(encode_chunk, self.slots.send(slot, chunk.payload), field, slot)

    def _consume(self) -> None:
        chunk, pending = self.inflight.popleft()
        try:
            result = pending.result()
        except BrokenProcessPool as exc:
            raise RuntimeError("a tokenizer worker died (killed, or out of memory?); safe to retry") from exc
        if result.error is not None:
            raise record_error(self.source, chunk, result.error)
        self.read += result.records
        self.skipped_empty += result.empty
        self.skipped_null += result.null
        self.worker_peak_mb = max(self.worker_peak_mb, result.peak_rss_mb)
        written = 0
        for split, rows in self.packer.feed(result.framed_tokens(self.slots), result.lengths):
            self.writers[split].write_rows(rows)
            written += rows.size
        self.progress.update(len(result.lengths), written)

    def _check_not_empty(self) -> None:
        if self.read == 0:
            raise UserError(f"--dataset {self.cfg.dataset}: the input holds no documents")
        if self.packer.train.stats.samples == 0:
            raise UserError(f"--dataset {self.cfg.dataset}: {self.packer.documents} non-empty documents hold "
                            f"fewer tokens than one row of {self.cfg.concat_tokens}")

    def _written(self, pooled: bool) -> _Written:
        packer, cfg = self.packer, self.cfg
        splits = {phase.name: SplitCounts(**vars(phase.stats), requested_samples=wanted)
                  for phase, wanted in ((packer.train, cfg.train_rows), (packer.val, cfg.val_rows))}
        used = packer.train.stats.documents + packer.val.stats.documents
        return _Written(
            splits=splits, documents=DocumentCounts(read=self.read, skipped_empty=self.skipped_empty,
                                                    skipped_null=self.skipped_null, used=used),
            exhausted=not packer.done and cfg.train_rows is not None,
            tokens=packer.train.stats.tokens + packer.val.stats.tokens,
            peak_rss_mb={"main": peak_rss_mb(), "workers": self.worker_peak_mb if pooled else 0.0})


def format_summary(result: ConvertResult) -> str:
    """A readable end-of-run table."""
    m = result.manifest
    if result.already_complete:
        return (f"already complete: {result.out_root} holds this conversion "
                f"(fingerprint {result.fingerprint[:12]}); no file was touched")
    lines = [f"converted {m.source.dataset} [{m.source.subset or '-'}] -> {result.out_root}",
             f"{'split':<6} {'documents':>10} {'samples':>9} {'tokens':>14} {'requested':>10}"]
    for name, s in m.splits.items():
        wanted = "all" if s.requested_samples is None else s.requested_samples
        lines.append(f"{name:<6} {s.documents:>10,} {s.samples:>9,} {s.tokens:>14,} {wanted:>10}")
    t = m.timings
    lines.append(f"documents read {m.documents.read:,}, empty skipped {m.documents.skipped_empty:,}, "
                 f"null skipped {m.documents.skipped_null:,}; "
                 f"source exhausted: {'YES (fewer rows than requested)' if m.exhausted else 'no'}")
    lines.append(f"{t.seconds:.1f}s, {t.tokens_per_second:,} tokens/s, tokenizer backend "
                 f"{m.tokenizer.backend}, fingerprint {result.fingerprint[:12]}")
    return "\n".join(lines)


def summarize_result(result: ConvertResult, subset: str | None = None) -> ConvertSummary:
    """The result the DAG keeps (XCom): status, location, source and counts."""
    m = result.manifest
    return ConvertSummary(
        status=ALREADY_COMPLETE if result.already_complete else "converted", subset=subset,
        out_root=result.out_root, manifest=marker_location(m.config), fingerprint=result.fingerprint,
        source=m.source,
        splits={split: SplitTotals(documents=c.documents, samples=c.samples, tokens=c.tokens)
                for split, c in m.splits.items()},
        exhausted=m.exhausted)


def command(cfg: ConvertConfig) -> Outcome:
    """``cpt-tasks convert``: convert, print the summary."""
    result = convert(cfg)
    print(format_summary(result))
    return Outcome(summarize_result(result))
