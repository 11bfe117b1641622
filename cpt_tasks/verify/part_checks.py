"""verify's checks of a subset converted in parts (and the train/val disjointness of every subset).

A subset in parts is read as one dataset through its merged index and manifest; verify merges them itself when
the last part's merge was lost (``cpt_tasks.data.merged_parts``). Then: every planned part is there with its
planned fingerprint; each part holds its share of the rows (or its files ran out, which fails unless the plan
allows short subsets: the component would be silently short); no input file is read by two parts and none is
left out; the merged index lists exactly each part's shards, under its folder; and within each part train and
val share no document.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from cpt_tasks.data.merged_parts import merge_subset, read_parts
from cpt_tasks.data.shards import read_index
from cpt_tasks.documents.convert_docs import ConvertManifest, read_manifest
from cpt_tasks.documents.plan_docs import PlannedSubset
from cpt_tasks.layout import SPLITS, TRAIN, VAL, part_name
from cpt_tasks.storage import join

Add = Callable[[str, bool, str], bool]


def read_subset(sub: PlannedSubset) -> tuple[ConvertManifest | None, list[ConvertManifest], str | None]:
    """(the subset's manifest, its parts' manifests that are there with their planned fingerprints ([] in one
    piece), why there is no manifest): a subset in parts is merged here when every part is there but the merge
    is not."""
    if not sub.parts:
        return read_manifest(sub.out_root), [], None
    parts = read_parts(sub)
    merged = merge_subset(sub, parts)
    if merged is None:
        missing = [p.part for p, found in zip(sub.parts, parts) if found is None]
        return None, [], (f"part(s) {', '.join(map(str, missing))} of {sub.part_count} not converted: no manifest "
                          f"with the plan's fingerprint under {join(sub.out_root, 'parts')}; rerun their convert tasks")
    return merged, [p for p in parts if p is not None], None


def check_disjoint(sub: PlannedSubset, manifest: ConvertManifest, parts: list[ConvertManifest], add: Add) -> None:
    """Train and val share no document: within the conversion, or within each part (parts read disjoint files)."""
    problems, shown = [], []
    for piece in parts or [manifest]:
        train, val = piece.splits[TRAIN], piece.splits[VAL]
        where = f"part {piece.config.part}: " if parts else ""
        ok = not val.samples or not train.samples or (
            val.first_document is not None and train.last_document is not None
            and (val.first_document > train.last_document if not piece.config.val_first
                 else train.first_document > val.last_document))
        detail = (f"{where}train documents {train.first_document}..{train.last_document}, "
                  f"val {val.first_document}..{val.last_document}")
        (shown if ok else problems).append(detail)
    add("disjoint", not problems, "; ".join(problems or shown[:3]) + (" …" if len(shown) > 3 and not problems else ""))


def check_parts(sub: PlannedSubset, manifest: ConvertManifest, parts: list[ConvertManifest], allow_short: bool,
                add: Add) -> None:
    """A subset in parts: every part there, its share of the rows, its files its own, its shards in the index."""
    if not sub.parts:
        return
    by_number = {p.config.part: p for p in parts}
    planned = {p.part: p for p in sub.parts}
    wrong = [n for n in planned if n not in by_number]  # read_parts keeps only manifests of the planned parts
    add("parts", not wrong and len(manifest.parts or []) == len(planned),
        f"{len(planned)} parts" + (f"; part(s) {', '.join(map(str, wrong))} missing or of another conversion"
                                   if wrong else ""))
    _check_shares(sub, by_number, allow_short, add)
    _check_files(manifest, parts, add)
    for split in SPLITS:
        _check_index(sub, split, by_number, add)


def _check_shares(sub: PlannedSubset, parts: dict[int, ConvertManifest], allow_short: bool, add: Add) -> None:
    short, off = [], []
    for planned in sub.parts:
        found = parts.get(planned.part)
        if found is None:
            continue
        concat = found.concat_tokens
        for split, tokens in ((TRAIN, planned.max_tokens), (VAL, planned.val_tokens)):
            want, got = tokens // concat, found.splits[split].samples
            if got == want or (split == TRAIN and found.config.val_first and got < want):
                continue  # a corpus converted val-first may hold less train than its budget (it repeats)
            (short if found.exhausted and got < want else off).append(
                f"part {planned.part} {split}: {got:,} of {want:,} rows")
    detail = "; ".join(off + short)
    if short:
        detail += (" (its files ran out before its share: the plan's estimate of this source was too high; plan "
                   "with a larger part_tokens, fewer parts, or allow_short)")
    add("parts:rows", not off and (not short or allow_short), detail or "every part holds its share")


def _check_files(manifest: ConvertManifest, parts: list[ConvertManifest], add: Add) -> None:
    listed = [f.path for f in manifest.source.files]
    read = [f.path for p in parts for f in p.source.files]
    twice = sorted(path for path, n in Counter(read).items() if n > 1)
    left = sorted(set(listed) - set(read))
    add("parts:files", not twice and not left and read == listed,
        (f"in two parts: {', '.join(twice[:3])}; " if twice else "")
        + (f"in no part: {', '.join(left[:3])}; " if left else "")
        + f"{len(read)} files in {len(parts)} parts, each file in one part")


def _check_index(sub: PlannedSubset, split: str, parts: dict[int, ConvertManifest], add: Add) -> None:
    index = read_index(join(sub.out_root, split))
    if index is None:
        return  # the index check of the split has failed already
    listed: Counter = Counter()
    stray = []
    for shard in index["shards"]:
        folder = shard["raw_data"]["basename"].split("/", 1)[0]
        number = int(folder.rsplit("-", 1)[-1]) if folder.startswith("part-") else -1
        if part_name(number) != folder or number not in parts:
            stray.append(shard["raw_data"]["basename"])
        listed[number] += shard["samples"]
    wrong = [f"part {n}: {listed.get(n, 0):,} rows listed, its manifest says {m.splits[split].samples:,}"
             for n, m in sorted(parts.items()) if listed.get(n, 0) != m.splits[split].samples]
    add(f"parts:index:{split}", not stray and not wrong,
        "; ".join(([f"not a planned part's shard: {', '.join(stray[:3])}"] if stray else []) + wrong)
        or f"{sum(listed.values()):,} rows from {len(parts)} parts")
