"""A conversion in parts made one dataset: each split's merged ``index.json`` and the merged ``manifest.json``.

Every part writes its shards under ``<out_root>/<split>/part-NNNNN/`` and its own manifest under
``<out_root>/parts/``. Once every part's manifest is there with the plan's fingerprint, ``merge_subset`` writes
each split's ``index.json`` listing the parts' shards in part order, each basename prefixed with its part's
folder (exactly what streaming's ``merge_index`` writes, from the explicit list of parts, never a scan of the
folder: a failed attempt's leftovers are never picked up), then the merged manifest, last: it is the
component's completion marker, so verify and training read a component in parts as they read one in one piece.

Idempotent and safe to run twice at once: the same parts always give the same bytes. Run by the last part to
finish (``convert-subset``) and, if that one was lost, by verify.
"""

from __future__ import annotations

import json
from datetime import datetime

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.documents import write_document
from cpt_tasks.documents.convert_docs import (ConvertManifest, DocumentCounts, PartRecord, SourceInfo, SplitCounts,
                                              SplitTotals, Timings, manifest_location, marker_location)
from cpt_tasks.documents.plan_docs import PlannedSubset
from cpt_tasks.layout import MDS_INDEX_FILE, SPLITS, part_name
from cpt_tasks.runs.completion import find_complete
from cpt_tasks.storage import join, read_bytes, write_bytes_atomic

MDS_VERSION = 2


def read_parts(sub: PlannedSubset) -> list[ConvertManifest | None]:
    """Each planned part's manifest, in part order: None for a part not there with its planned fingerprint."""
    return [find_complete(marker_location(sub.part_config(p.part)), ConvertManifest,
                          lambda m, fp=p.fingerprint: m.fingerprint == fp) for p in sub.parts]


def merge_subset(sub: PlannedSubset, parts: list[ConvertManifest | None] | None = None) -> ConvertManifest | None:
    """The merged manifest of a subset in parts (written now unless already there); None while a part is
    missing. ``parts``: its parts' manifests as :func:`read_parts` gives them (read here when not given)."""
    marker = manifest_location(sub.out_root)
    done = find_complete(marker, ConvertManifest, lambda m: m.fingerprint == sub.fingerprint)
    if done is not None:
        return done
    parts = read_parts(sub) if parts is None else parts
    if any(p is None for p in parts):
        return None
    for split in SPLITS:
        write_bytes_atomic(join(sub.out_root, split, MDS_INDEX_FILE), merged_index(sub.out_root, split, len(parts)))
    merged = merged_manifest(sub.convert, sub.fingerprint, parts)
    write_document(marker, merged)
    return merged


def merged_index(out_root: str, split: str, parts: int) -> bytes:
    """The split's index over every part's shards (part order; basenames under the part's folder)."""
    shards = []
    for part in range(parts):
        folder = join(out_root, split, part_name(part))
        data = read_bytes(join(folder, MDS_INDEX_FILE))
        if data is None:
            raise RuntimeError(f"{folder}/{MDS_INDEX_FILE} is missing although its part's manifest is there")
        for shard in json.loads(data)["shards"]:
            for key in ("raw_data", "zip_data"):
                if shard.get(key):
                    shard[key]["basename"] = f"{part_name(part)}/{shard[key]['basename']}"
            shards.append(shard)
    return json.dumps({"version": MDS_VERSION, "shards": shards}, sort_keys=True).encode()


def merged_manifest(config: ConvertConfig, fingerprint: str, manifests: list[ConvertManifest]) -> ConvertManifest:
    """One manifest for the component: counts summed over the parts, the whole source, each part recorded."""
    first = manifests[0]
    splits = {split: SplitCounts(documents=sum(m.splits[split].documents for m in manifests),
                                 samples=sum(m.splits[split].samples for m in manifests),
                                 tokens=sum(m.splits[split].tokens for m in manifests),
                                 requested_samples=_requested(config, split))
              for split in SPLITS}
    docs = DocumentCounts(read=sum(m.documents.read for m in manifests),
                          skipped_empty=sum(m.documents.skipped_empty for m in manifests),
                          skipped_null=sum(m.documents.skipped_null for m in manifests),
                          used=sum(m.documents.used for m in manifests))
    source = SourceInfo(**{**first.source.model_dump(), "files": [f for m in manifests for f in m.source.files]})
    started = min(m.timings.started_at for m in manifests)
    finished = max(m.timings.finished_at for m in manifests)
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    tokens = sum(splits[s].tokens for s in SPLITS)
    timings = Timings(started_at=started, finished_at=finished, seconds=round(seconds, 3),
                      tokens_per_second=round(tokens / max(seconds, 1e-9)),
                      peak_rss_mb={k: max(m.timings.peak_rss_mb.get(k, 0.0) for m in manifests)
                                   for k in first.timings.peak_rss_mb})
    records = [PartRecord(part=m.config.part, fingerprint=m.fingerprint, manifest=marker_location(m.config),
                          files=[f.path for f in m.source.files],
                          splits={s: SplitTotals(documents=c.documents, samples=c.samples, tokens=c.tokens)
                                  for s, c in m.splits.items()},
                          exhausted=m.exhausted)
               for m in manifests]
    return ConvertManifest(fingerprint=fingerprint, code_version=first.code_version, config=config, source=source,
                           tokenizer=first.tokenizer, concat_tokens=first.concat_tokens, columns=first.columns,
                           splits=splits, documents=docs, exhausted=any(m.exhausted for m in manifests),
                           timings=timings, parts=records)


def _requested(config: ConvertConfig, split: str) -> int | None:
    return config.train_rows if split == "train" else config.val_rows
