"""A component in parts: which input files each part reads, and each part's exact share of the budgets.

The plan and every part's conversion compute the same slices from the same listing, so a part needs only its
number: ``slices(sizes, parts)`` cuts the files, in listing order, into contiguous groups of about equal bytes
(as LLM-Foundry's text converter groups files, and datatrove gives each rank its files); ``shares(total,
weights)`` splits a row count among them in proportion to their bytes, by largest remainders, so the parts' rows
always add up to exactly the component's. A part reads only its own files: no document is in two parts.
"""

from __future__ import annotations

from dataclasses import replace

from cpt_tasks.data.sources import Source


def slices(sizes: list[int], parts: int) -> list[range]:
    """``parts`` contiguous, non-empty ranges of file indices covering every file, each ending where the bytes
    so far first reach its even share (ValueError when there are fewer files than parts)."""
    if not 1 <= parts <= len(sizes):
        raise ValueError(f"cannot cut {len(sizes)} files into {parts} parts")
    total = sum(sizes) or len(sizes)
    weights = sizes if sum(sizes) else [1] * len(sizes)
    cuts, running, start = [], 0, 0
    for index, size in enumerate(weights):
        running += size
        left = parts - len(cuts) - 1  # parts still to start after this one
        if left == 0:
            break
        # end the current part here once it holds its share, or when each later part needs one of the files left
        if running * parts >= (len(cuts) + 1) * total or len(sizes) - (index + 1) == left:
            cuts.append(range(start, index + 1))
            start = index + 1
    cuts.append(range(start, len(sizes)))
    return cuts


def shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders, ties to the earlier part): the shares
    add up to exactly ``total``."""
    if not weights:
        return []
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    base = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:total - sum(base)]:
        base[i] += 1
    return base


def part_source(source: Source, part: int, parts: int) -> Source:
    """The files part ``part`` of ``parts`` reads (the source itself when there is one part)."""
    if parts == 1:
        return source
    chosen = slices([f.size for f in source.files], parts)[part]
    return replace(source, files=[source.files[i] for i in chosen])


def part_bytes(source: Source, parts: int) -> list[int]:
    """Each part's input bytes."""
    return [sum(source.files[i].size for i in chosen) for chosen in slices([f.size for f in source.files], parts)]
