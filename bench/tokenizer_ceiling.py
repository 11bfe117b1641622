"""The limits the converter benchmark compares against: tiktoken alone on the machine's processes (the ceiling),
and what the rest of any conversion to this output must also spend per token (the format floor).

The floor times, on one core and on the benchmark's own corpus and output, the work no converter of JSON lines
into zstd MDS with sha1 shard hashes can skip: parsing each record's text, compressing the shards at level 3,
hashing them, and writing them to this machine's disk. With both cores always busy, a converter that did
nothing else would reach ``ceiling core-seconds / (ceiling core-seconds + floor core-seconds)`` of the
ceiling, start-up excluded: the bound its ratio is read against.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

_TEXTS: list[str] = []  # inherited by the forked ceiling workers
_ENCODE = None


def load_encoder(tokenizer: str):
    """tiktoken's ``encode_ordinary`` for the tokenizer folder, built as the converter builds it."""
    from cpt_tasks.tokenizer import Encoder

    return Encoder(Path(tokenizer), "<|begin_of_text|>", "<|end_of_text|>")._tt.encode_ordinary


def _encode_range(bounds: tuple[int, int]) -> int:
    return sum(len(_ENCODE(t)) for t in _TEXTS[bounds[0]:bounds[1]])


def ceiling(texts: list[str], encode, processes: int) -> dict:
    """tiktoken alone over in-memory texts cut in ``processes`` parts of equal characters (encoding timed)."""
    global _TEXTS, _ENCODE
    _TEXTS, _ENCODE = texts, encode
    cuts, size, part = [0], 0, sum(map(len, texts)) / processes
    for index, text in enumerate(texts):
        size += len(text)
        if len(cuts) < processes and size >= part * len(cuts):
            cuts.append(index + 1)
    parts = list(zip(cuts, cuts[1:] + [len(texts)]))
    if processes == 1:
        start = time.perf_counter()
        tokens = _encode_range(parts[0])
        seconds = time.perf_counter() - start
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.map(_encode_range, [(0, 1)] * processes, chunksize=1)  # workers up before timing
            start = time.perf_counter()
            tokens = sum(pool.map(_encode_range, parts, chunksize=1))
            seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds)}


def format_floor(corpus: Path, split: Path, work: Path) -> dict:
    """One core's seconds for the unskippable non-tokenizer work of converting ``corpus`` into the MDS split
    folder ``split`` (its shards are decompressed first, untimed): parse, compress (zstd 3, one thread), sha1 of
    the raw and compressed shards, and writing the compressed ones under ``work``. Each step timed alone."""
    import orjson
    import zstd

    data = corpus.read_bytes()
    raw = [zstd.decompress(p.read_bytes()) for p in sorted(split.glob("shard.*.mds.zstd"))]
    out: dict[str, float] = {}
    start = time.process_time()
    for line in data.split(b"\n"):
        if line:
            orjson.loads(line)["text"]  # noqa: B018 -- the parse is what is timed
    out["parse"] = time.process_time() - start
    start = time.process_time()
    packed = [zstd.compress(shard, 3, 1) for shard in raw]
    out["compress"] = time.process_time() - start
    start = time.process_time()
    for blob in (*raw, *packed):
        hashlib.sha1(blob).hexdigest()
    out["hash"] = time.process_time() - start
    start = time.perf_counter()  # the kernel's copy into the page cache, as the converter's write pays it
    for number, blob in enumerate(packed):
        (work / f"floor-{number}.zstd").write_bytes(blob)
    out["write"] = time.perf_counter() - start
    for path in work.glob("floor-*.zstd"):
        path.unlink()
    return {key: round(value, 4) for key, value in out.items()} | {"total": round(sum(out.values()), 4)}
