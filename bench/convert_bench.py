"""Converter benchmark: ``cpt-tasks convert`` against LLM-Foundry's converter and the tokenizer's own ceiling.

Builds a Dolmino-style JSONL corpus of >= ``--tokens`` Llama 3 tokens of real English text (stdlib docstrings
and ``pydoc_data`` topics from ``cpt_local.samples.sample_mix``, reshuffled deterministically) and a ``--scale``x copy.
On the same file it times, end to end, our converter, LLM-Foundry 0.22's ``convert_dataset_json`` and
tiktoken alone (1 and 2 processes, encoding only); then a ``--shuffle`` run and peak memory at 1x vs the
scaled corpus; the same documents as one parquet file (text and id columns), interleaved with the JSON-lines
runs, and with ``--baseline-code DIR`` the JSON-lines conversion of another checkout of ``cpt_tasks`` (e.g. the
commit before a change, ``git archive``d to DIR) in the same loop. Writes ``bench/RESULTS.md`` and
``bench/results/convert.json``. Run by ``make bench``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tokenizer_ceiling import ceiling, format_floor, load_encoder

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONCAT = 8192
LLMFOUNDRY = """
import sys
from llmfoundry.command_utils import convert_dataset_json_from_args
convert_dataset_json_from_args(path=sys.argv[1], out_root=sys.argv[2], compression='zstd', concat_tokens={concat},
    split='train', tokenizer=sys.argv[3], bos_text='', eos_text='<|end_of_text|>', no_wrap=False, num_workers=2)
"""
ALSO = ("The other benchmarks' results: the plan's time against the corpus's size in "
        "[results/plan.md](results/plan.md) (`make bench`, after this one), one component converted in parts and "
        "the projection to a cluster in [results/scale.md](results/scale.md) (`make bench-scale`); all of them "
        "summed up in [docs/performance.md](../docs/performance.md).")
LOAD_AT_START = round(os.getloadavg()[0], 2)  # other work on the machine skews every number


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="Llama 3 tokenizer folder (cpt-tasks tokenizer)")
    parser.add_argument("--tokens", type=int, default=10_000_000, help="Tokens in the 1x corpus (at least)")
    parser.add_argument("--scale", type=int, default=10, help="Growth of the input in the memory check")
    parser.add_argument("--memory-base", type=int, default=2,
                        help="Memory check runs at BASE x and BASE*SCALE x the corpus (BASE x fills a 64 MB shard)")
    parser.add_argument("--work", type=Path, default=HERE / "results" / "tmp", help="Work folder (data, outputs)")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of the fast measurements (median reported)")
    parser.add_argument("--repeat-scaled", type=int, default=3,
                        help="Runs of the scaled conversion, each between two ceiling measurements (median ratio)")
    parser.add_argument("--skip-llmfoundry", action="store_true", help="Skip LLM-Foundry's converter (slow)")
    parser.add_argument("--baseline-code", type=Path, default=None,
                        help="A folder holding another cpt_tasks/ (e.g. the previous commit's) to time on the JSON "
                        "lines in the same loop")
    return parser.parse_args()


def machine() -> dict:
    """CPU model, usable cores, RAM, date and Python of this machine."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    kb = int(next(ln.split()[1] for ln in meminfo if ln.startswith("MemTotal")))
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "ram_gb": round(kb / 2**20, 1),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "load_1min_at_start": LOAD_AT_START}


def code_version() -> str:
    """The commit measured, marked when the working tree differs from it."""
    git = ["git", "-C", str(HERE.parent)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "cpt_tasks"], capture_output=True, text=True).stdout
    return f"{commit or 'unknown'}{' + uncommitted changes in cpt_tasks/' if dirty.strip() else ''}"


def build_corpus(path: Path, target: int, encode) -> tuple[list[str], int]:
    """Write >= ``target`` tokens of reshuffled real text to ``path``; returns (texts in file order, tokens)."""
    from cpt_local.samples.sample_mix import SUBSETS, _collect, _records

    modules = _collect()
    unique = [t for subset in SUBSETS for t in _records(subset, modules) if t.strip()]
    counts = {t: len(encode(t)) for t in unique}
    texts: list[str] = []
    total, rounds = 0, 0
    while total < target:
        batch = unique[:]
        random.Random(rounds).shuffle(batch)
        for text in batch:
            texts.append(text)
            total += counts[text]
            if total >= target:
                break
        rounds += 1
    with open(path, "w", encoding="utf-8") as fh:
        for number, text in enumerate(texts):
            fh.write(json.dumps({"id": f"bench-{number:08d}", "text": text}, ensure_ascii=False) + "\n")
    return texts, total


def write_parquet(path: Path, texts: list[str], times: int = 1) -> None:
    """The corpus's documents (``times`` times over) as one parquet file (``id``, ``text``; snappy), one batch of
    row groups per copy, as pyarrow writes a table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [f"bench-{n:08d}" for n in range(len(texts))], "text": texts})
    with pq.ParquetWriter(path, table.schema) as writer:
        for _ in range(times):
            writer.write_table(table)


def scale_corpus(src: Path, dst: Path, times: int) -> None:
    """``dst`` = ``src`` repeated ``times`` times (byte copies: quick); nothing to do when they are one file
    (``--memory-base 1``: opening it for writing would empty it)."""
    if dst == src:
        return
    with open(dst, "wb") as fh:
        fh.writelines([src.read_bytes()] * times)


def run_timed(cmd: list[str], env: dict | None = None) -> float:
    """Wall seconds of a subprocess (its output is shown only if it fails)."""
    start = time.perf_counter()
    try:
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        print(exc.stdout, exc.stderr, sep="\n", file=sys.stderr)
        raise
    return time.perf_counter() - start


def ours(dataset: Path, out: Path, tokenizer: str, *extra: str, code: Path | None = None) -> dict:
    """One end-to-end ``cpt-tasks convert`` into a fresh ``out``; tokens from its manifest. ``code``: run the
    ``cpt_tasks`` found in that folder instead."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(BIN / "cpt-tasks"), "convert", "--dataset", str(dataset), "--out_root", str(out),
           "--tokenizer", tokenizer, "--concat_tokens", str(CONCAT), "--num_workers", "2", *extra]
    seconds = run_timed(cmd, {**os.environ, "PYTHONPATH": str(code)} if code else None)
    manifest = json.loads((out / "manifest.json").read_text())
    tokens = manifest["splits"]["train"]["tokens"]
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds),
            "convert_seconds": manifest["timings"]["seconds"], "peak_rss_mb": manifest["timings"]["peak_rss_mb"],
            "command": shlex.join(cmd)}


def llmfoundry(dataset: Path, out: Path, tokenizer: str, work: Path) -> dict:
    """LLM-Foundry's JSON converter, end to end in a fresh process; tokens = MDS samples x concat."""
    cache = work / "hf-datasets-cache"
    for path in (out, cache):
        shutil.rmtree(path, ignore_errors=True)
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", LLMFOUNDRY.format(concat=CONCAT), str(dataset), str(out), tokenizer]
    seconds = run_timed(cmd, env)
    index = json.loads((out / "index.json").read_text())
    tokens = sum(shard["samples"] for shard in index["shards"]) * CONCAT
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds)}


def rows_digest(folder: Path) -> str:
    """sha256 over every row of an MDS split, in order, read with mosaicml-streaming's own reader."""
    import hashlib

    import numpy as np
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    dataset = StreamingDataset(local=str(folder), shuffle=False, batch_size=1)
    digest = hashlib.sha256()
    for i in range(dataset.num_samples):
        digest.update(np.asarray(dataset[i]["tokens"], dtype=np.int32).tobytes())
    return digest.hexdigest()


def scaled_runs(scaled: Path, work: Path, tokenizer: str, texts: list[str], encode, tokens: int,
                repeat: int) -> tuple[dict, dict]:
    """The scaled conversion ``repeat`` times, the 2-process ceiling measured before, between and after them
    (this machine's speed drifts over minutes); each run is compared with the mean of the ceilings either side
    of it. Returns the run of median ratio (with every run's seconds and ratio) and its ceiling (per 1x)."""
    near, done = [ceiling(texts, encode, 2)], []
    for _ in range(repeat):
        run = ours(scaled, work / "out-scaled", tokenizer)
        near.append(ceiling(texts, encode, 2))
        run["ceiling_seconds"] = round((near[-2]["seconds"] + near[-1]["seconds"]) / 2, 3)
        run["ratio"] = round(run["tokens_per_s"] / (tokens / run["ceiling_seconds"]), 3)
        done.append(run)
    middle = sorted(done, key=lambda r: r["ratio"])[len(done) // 2]
    median = {**middle, "all_seconds": [r["seconds"] for r in done], "all_ratios": [r["ratio"] for r in done]}
    ceiling_run = {"seconds": middle["ceiling_seconds"], "tokens": tokens,
                   "tokens_per_s": round(tokens / middle["ceiling_seconds"]),
                   "all_seconds": [r["seconds"] for r in near]}
    return median, ceiling_run


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time, with every run's seconds."""
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**best, "all_seconds": [r["seconds"] for r in runs]}


LABELS = {"ours": "cpt-tasks convert, 2 workers (1x)", "ours_parquet": "cpt-tasks convert, same documents in parquet",
          "ours_baseline": "cpt-tasks convert, baseline code (JSON lines)",
          "llmfoundry": "LLM-Foundry convert_dataset_json",
          "tiktoken_1p": "tiktoken encode_ordinary, 1 process", "tiktoken_2p": "tiktoken encode_ordinary, 2 processes",
          "tiktoken_2p_near_scaled": "tiktoken, 2 processes, either side of the SCALEx run below (mean)",
          "ours_shuffle": "cpt-tasks convert --shuffle (1x)", "ours_base": "cpt-tasks convert (BASEx)",
          "ours_scaled": "cpt-tasks convert (SCALEx)",
          "ours_scaled_parquet": "cpt-tasks convert, same documents in parquet (SCALEx)"}


def table(results: dict) -> str:
    """The readable results table (markdown)."""
    rows = ["| run | wall s | tokens | M tokens/s | peak RSS MB main / workers |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for key in (k for k in LABELS if k in results["runs"]):
        x = results["runs"][key]
        label = LABELS[key].replace("SCALE", str(results["scale"] * results["memory_base"]))
        label = label.replace("BASE", str(results["memory_base"]))
        rss = x.get("peak_rss_mb")
        rss_text = f"{rss['main']:.0f} / {rss['workers']:.0f}" if rss else "-"
        rows.append(f"| {label} | {x['seconds']:.2f} | {x['tokens']:,} | {x['tokens_per_s'] / 1e6:.2f} | {rss_text} |")
    rows += ["", "| ratio | value | target | met |", "| --- | ---: | ---: | --- |"]
    rows += [f"| {name} | {value:.2f} | {target} | {'-' if ok is None else 'yes' if ok else 'NO'} |"
             for name, (value, target, ok) in results["ratios"].items()]
    return "\n".join(rows)


def ratios(r: dict, scale: int, base: int, floor: dict) -> dict:
    """Named ratios as (value, target text, met or None)."""
    out = {}
    if "llmfoundry" in r:
        value = r["ours"]["tokens_per_s"] / r["llmfoundry"]["tokens_per_s"]
        out["ours / LLM-Foundry tokens/s"] = (value, ">= 5", value >= 5)
        same = r["llmfoundry"]["rows_identical_to_ours"]
        out["rows identical to LLM-Foundry's (1 = yes)"] = (float(same), "1", same)
    value = r["ours_parquet"]["tokens_per_s"] / r["ours"]["tokens_per_s"]
    out["parquet / JSON lines tokens/s (1x: start-up, pyarrow's import included)"] = (value, "info", None)
    if "ours_scaled_parquet" in r:  # per token: start-up amortized over 20x the corpus
        value = r["ours_scaled_parquet"]["tokens_per_s"] / r["ours_scaled"]["tokens_per_s"]
        out[f"parquet / JSON lines tokens/s at {scale * base}x"] = (value, ">= 1.00", value >= 1.0)
    same = r["ours_parquet"]["rows_identical_to_ours"]
    out["parquet rows identical to JSON lines' (1 = yes)"] = (float(same), "1", same)
    if "ours_baseline" in r:
        value = r["ours"]["tokens_per_s"] / r["ours_baseline"]["tokens_per_s"]
        out["JSON lines tokens/s, this code / baseline"] = (value, "~1.00 (unchanged)", None)
    value = r["ours"]["tokens_per_s"] / r["tiktoken_2p"]["tokens_per_s"]
    out["ours / 2-process tiktoken ceiling"] = (value, ">= 0.75", value >= 0.75)
    if r["ours"].get("convert_seconds"):  # the same run timed from inside: no interpreter start-up or imports
        value = r["ours"]["tokens"] / r["ours"]["convert_seconds"] / r["tiktoken_2p"]["tokens_per_s"]
        out["ours at 1x without interpreter start-up and imports (manifest timings.seconds) / ceiling"] = (
            value, "info", None)
    value = r["ours_scaled"]["tokens_per_s"] / r["tiktoken_2p_near_scaled"]["tokens_per_s"]
    out[f"ours at {scale * base}x (start-up amortized) / the ceiling measured either side of it"] = (
        value, ">= 0.85", value >= 0.85)
    core_seconds = 2 * r["tiktoken_2p"]["seconds"]  # the ceiling's, at 1x
    value = core_seconds / (core_seconds + floor["total"])
    out["format floor: the most any converter to this output reaches (parse, zstd, sha1, write; start-up "
        "excluded)"] = (value, "info", None)
    for proc in ("main", "workers"):
        value = r["ours_scaled"]["peak_rss_mb"][proc] / r["ours_base"]["peak_rss_mb"][proc]
        out[f"peak RSS {proc}, {scale * base}x / {base}x input"] = (value, "< 1.2 (flat; runs vary ±10%)", value < 1.2)
    return out


def write_results(results: dict, text: str) -> None:
    """bench/RESULTS.md (machine, commands, table) and bench/results/convert.json."""
    m, c, runs = results["machine"], results["corpus"], results["runs"]
    md = [
        "# Converter benchmark", "",
        f"Written by `bench/convert_bench.py` on {m['date']}; rerun with `make bench`.", "",
        f"- Machine: {m['cpu']}, {m['cores']} usable cores, {m['ram_gb']} GB RAM, Python {m['python']}; "
        f"1-min load average at start {m['load_1min_at_start']} (other processes skew these numbers)",
        f"- Command: `{results['command']}`; code: {results['code']}",
        f"- Corpus: {c['documents']:,} documents, {c['tokens']:,} Llama 3 tokens (text only), {c['mb']:.1f} MB "
        f"of JSONL, {c['parquet_mb']:.1f} MB as one parquet file (stdlib docstrings and pydoc topics, reshuffled "
        "passes); the memory check repeats it "
        f"{results['memory_base']}x and {results['memory_base'] * results['scale']}x",
        f"- Ours: `{runs['ours']['command']}`, end to end (process start included), median of "
        f"{len(runs['ours']['all_seconds'])} runs; tokens = manifest `splits.train.tokens` (BOS/EOS included, "
        "last partial row dropped); peak RSS from the manifest's `timings.peak_rss_mb`",
        *([f"- Baseline: `--baseline-code {results['baseline_code']}` (JSON lines, same command, that code on "
            "PYTHONPATH), interleaved with ours and parquet in each round"] if results.get("baseline_code") else []),
        "- Parquet: the same documents in one parquet file (`id`, `text`), same command, interleaved",
        "- LLM-Foundry 0.22: `convert_dataset_json_from_args(concat_tokens=8192, compression='zstd', bos_text='', "
        "eos_text='<|end_of_text|>')` in a fresh process, empty HF_DATASETS_CACHE; tokens = MDS samples x 8192",
        "- Ceiling: tiktoken `encode_ordinary` over the texts already in memory (encoding only, no framing or "
        "packing), median of runs; 2 processes = fork pool, texts cut in two halves of equal characters; the "
        f"{results['memory_base'] * results['scale']}x conversion runs {len(runs['ours_scaled']['all_ratios'])} "
        "times, each divided by the mean of the ceilings measured just before and just after it (this machine's "
        "speed drifts by 10-20% over a benchmark): ratios "
        f"{', '.join(f'{x:.3f}' for x in runs['ours_scaled']['all_ratios'])} (the first converts a new file, "
        "whose sha256 the listing computes; the table shows the median's run)",
        f"- Format floor (`tokenizer_ceiling.format_floor`), one core's seconds per 1x for what no converter to this "
        f"output can skip: parse {results['floor']['parse']:.3f}, zstd {results['floor']['compress']:.3f}, "
        f"sha1 {results['floor']['hash']:.3f}, write {results['floor']['write']:.3f}; with both cores always busy "
        "and nothing else, a converter would reach the floor's ratio below",
        "- Memory: the main process holds at most two raw shards (`--size_limit`, 64 MB: one being built, the one "
        "before it being compressed in the background) and a compressed copy, the workers one chunk of documents "
        "each; 1x (40 MB of tokens) fills less than one shard, so the 10x growth is measured from 2x to 20x, at "
        "default settings",
        "", text, "", ALSO, "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(md))
    (HERE / "results").mkdir(exist_ok=True)
    data = {**results, "ratios": {k: {"value": round(v, 3), "target": t, "met": ok}
                                  for k, (v, t, ok) in results["ratios"].items()}}
    (HERE / "results" / "convert.json").write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    args = parse_args()
    if LOAD_AT_START > 0.5:
        print(f"warning: load average {LOAD_AT_START}: other work is running; the numbers will be skewed",
              file=sys.stderr)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tokenizer, code = str(Path(args.tokenizer).resolve()), code_version()
    encode = load_encoder(tokenizer)
    corpus, base = work / "corpus-1x.jsonl", work / f"corpus-{args.memory_base}x.jsonl"
    scaled = work / f"corpus-{args.memory_base * args.scale}x.jsonl"
    texts, tokens = build_corpus(corpus, args.tokens, encode)
    parquet = work / "corpus-1x.parquet"
    write_parquet(parquet, texts)
    scale_corpus(corpus, base, args.memory_base)
    scale_corpus(corpus, scaled, args.memory_base * args.scale)
    scaled_parquet = work / f"corpus-{args.memory_base * args.scale}x.parquet"
    write_parquet(scaled_parquet, texts, args.memory_base * args.scale)
    print(f"corpus: {len(texts):,} documents, {tokens:,} tokens, {corpus.stat().st_size / 1e6:.1f} MB", flush=True)
    runs: dict[str, dict] = {"ours": [], "ours_parquet": [], "tiktoken_1p": [], "tiktoken_2p": []}
    if args.baseline_code:
        runs["ours_baseline"] = []
    for _ in range(args.repeat):  # interleaved, so a slow spell of the machine hits all of them alike
        runs["ours"].append(ours(corpus, work / "out-ours", tokenizer))
        runs["ours_parquet"].append(ours(parquet, work / "out-parquet", tokenizer))
        if args.baseline_code:
            runs["ours_baseline"].append(ours(corpus, work / "out-baseline", tokenizer,
                                              code=args.baseline_code.resolve()))
        runs["tiktoken_1p"].append(ceiling(texts, encode, 1))
        runs["tiktoken_2p"].append(ceiling(texts, encode, 2))
    runs = {key: median_run(values) for key, values in runs.items()}
    runs["ours_parquet"]["rows_identical_to_ours"] = (
        rows_digest(work / "out-parquet" / "train") == rows_digest(work / "out-ours" / "train"))
    print(f"ours: {runs['ours']['tokens_per_s'] / 1e6:.2f}M tokens/s, parquet: "
          f"{runs['ours_parquet']['tokens_per_s'] / 1e6:.2f}M tokens/s, tiktoken 2 processes: "
          f"{runs['tiktoken_2p']['tokens_per_s'] / 1e6:.2f}M tokens/s", flush=True)
    if not args.skip_llmfoundry:
        runs["llmfoundry"] = llmfoundry(corpus, work / "out-llmfoundry", tokenizer, work)
        runs["llmfoundry"]["rows_identical_to_ours"] = (
            rows_digest(work / "out-llmfoundry") == rows_digest(work / "out-ours" / "train"))
        print(f"llm-foundry: {runs['llmfoundry']['tokens_per_s'] / 1e6:.2f}M tokens/s, rows identical to ours: "
              f"{runs['llmfoundry']['rows_identical_to_ours']}", flush=True)
    runs["ours_shuffle"] = ours(corpus, work / "out-shuffle", tokenizer, "--shuffle")
    runs["ours_base"] = ours(base, work / "out-base", tokenizer)
    runs["ours_scaled"], runs["tiktoken_2p_near_scaled"] = scaled_runs(scaled, work, tokenizer, texts, encode,
                                                                       tokens, args.repeat_scaled)
    runs["ours_scaled_parquet"] = ours(scaled_parquet, work / "out-scaled-parquet", tokenizer)
    floor = format_floor(corpus, work / "out-ours" / "train", work)
    results = {"machine": machine(), "code": code, "command": shlex.join([os.path.relpath(sys.executable), *sys.argv]),
               "corpus": {"documents": len(texts), "tokens": tokens, "mb": corpus.stat().st_size / 1e6,
                          "parquet_mb": parquet.stat().st_size / 1e6},
               "baseline_code": str(args.baseline_code) if args.baseline_code else None,
               "scale": args.scale, "memory_base": args.memory_base, "runs": runs, "floor": floor}
    results["ratios"] = ratios(runs, args.scale, args.memory_base, floor)
    text = table(results)
    print(text)
    write_results(results, text)
    for path in {scaled, scaled_parquet, base} - {corpus}:
        path.unlink()
    for path in [*work.glob("out-*"), work / "hf-datasets-cache"]:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
