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
    """``parts`` contiguous, non-empty ranges of file indices covering every file: the k-th cut at the file
    boundary nearest to k/parts of the bytes (ties to the earlier), leaving each later part at least one file
    (ValueError when there are fewer files than parts)."""
    if not 1 <= parts <= len(sizes):
        raise ValueError(f"cannot cut {len(sizes)} files into {parts} parts")
    weights = sizes if sum(sizes) else [1] * len(sizes)
    total = sum(weights)
    ends = [0]  # ends[i]: bytes of the first i files
    for size in weights:
        ends.append(ends[-1] + size)
    cuts = [0]
    for k in range(1, parts):
        first, last = cuts[-1] + 1, len(sizes) - (parts - k)  # each part so far and each later one: a file
        cuts.append(min(range(first, last + 1), key=lambda i: (abs(ends[i] * parts - k * total), i)))
    cuts.append(len(sizes))
    return [range(a, b) for a, b in zip(cuts, cuts[1:])]


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
