"""Cutting a planned component into parts: how many, which files each reads, each one's exact share of the
budgets, and the fingerprints that name them.

A component whose train + val budget exceeds ``part_tokens`` gets ``ceil(budget / part_tokens)`` parts, at most
one per input file (a part is a contiguous run of whole files: every byte it reads is checked against the
listing) and at most one per train row. The shares follow the parts' bytes (``cpt_tasks.data.parts``) and add
up to the component's rows exactly. The component's fingerprint is the parts' (N = 1: the one conversion's own,
so a component in one piece keeps today's location and bytes).
"""

from __future__ import annotations

import math

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.data.fingerprint import fingerprint, parts_fingerprint
from cpt_tasks.data.parts import part_bytes, shares, slices
from cpt_tasks.data.sources import Source
from cpt_tasks.documents.plan_docs import PlannedPart, part_conversion
from cpt_tasks.tokenizer import TokenizerInfo


def part_count(conv: ConvertConfig, source: Source, part_tokens: int) -> int:
    """Parts for this conversion: enough for at most ``part_tokens`` each, within the files and train rows."""
    if source.kind == "datasets" or conv.train_rows is None:
        return 1
    wanted = math.ceil((conv.max_tokens + conv.val_tokens) / part_tokens)
    return max(1, min(wanted, len(source.files), conv.train_rows))


def in_parts(conv: ConvertConfig, source: Source, tok: TokenizerInfo,
             part_tokens: int) -> tuple[str, ConvertConfig, list[PlannedPart] | None]:
    """(the component's fingerprint, its conversion with ``parts`` set, its parts or None for one piece)."""
    count = part_count(conv, source, part_tokens)
    if count == 1:
        return fingerprint(conv, source, tok), conv, None
    conv = conv.model_copy(update={"parts": count, "part": 0})
    weights = part_bytes(source, count)
    train = shares(conv.train_rows, weights)
    val = shares(conv.val_rows, weights)
    concat = conv.concat_tokens
    configs = [part_conversion(conv, i, count, rows * concat, held * concat)
               for i, (rows, held) in enumerate(zip(train, val))]
    prints = [fingerprint(c, source, tok) for c in configs]
    files = [len(r) for r in slices([f.size for f in source.files], count)]
    planned = [PlannedPart(part=c.part, fingerprint=fp, max_tokens=c.max_tokens, val_tokens=c.val_tokens,
                           files=n, bytes=b)
               for c, fp, n, b in zip(configs, prints, files, weights)]
    return parts_fingerprint(prints), conv, planned
