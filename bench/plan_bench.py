"""Plan benchmark (issue 26): ``cpt-tasks plan --domain`` reads a bounded sample of the corpus, so its time does not
grow with the corpus.

Builds a ~``--mb`` MB JSON-lines corpus of real English text in 8 files (``convert_bench.build_corpus``: stdlib
docstrings and ``pydoc_data`` topics from ``cpt_local.samples.sample_mix``, reshuffled) and one four times larger
(the same 8 files four times over: 32 files). It times end to end (process start included) ``cpt-tasks plan
--domain`` on each, ``--repeat`` runs interleaved, median: *cold*, with an empty file-hash cache (resolving a
local source hashes every file, so the first plan of a new corpus reads it all once), and *warm* (hashes
remembered by their stat, ``cpt_tasks.cache``); then one full conversion of the larger corpus (2 workers). In this
process it also times the cold plan's parts (hashing the listing, loading the tokenizer, the sampled estimate) to
say what dominates. Writes ``bench/results/plan.json`` and ``bench/results/plan.md``.

Run: ``.venv/bin/python bench/plan_bench.py --tokenizer $CPT_HOME/tokenizer/llama3 --sample $CPT_HOME/sample/dolmino``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from convert_bench import BIN, HERE, build_corpus, code_version, machine, run_timed
from tokenizer_ceiling import load_encoder

FILES = 8
CONCAT = 2048
TARGETS = {"plan 4x / plan 1x": 1.5, "plan 4x / conversion 4x": 0.25}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="Llama 3 tokenizer folder (cpt-tasks tokenizer)")
    parser.add_argument("--sample", required=True, help="The Dolmino-shaped sample (the mix's replay components)")
    parser.add_argument("--mb", type=float, default=50, help="Size of the 1x corpus in MB (the 4x one is 4 times)")
    parser.add_argument("--work", type=Path, default=HERE / "results" / "tmp", help="Work folder (data, outputs)")
    parser.add_argument("--repeat", type=int, default=3, help="Plan runs per corpus and cache state (median)")
    return parser.parse_args()


def build(work: Path, mb: float, tokenizer: str) -> tuple[Path, Path, dict]:
    """The 1x corpus (8 files) and the 4x one (the same files four times over), unless already built."""
    small, large = work / "corpus-1x", work / "corpus-4x"
    done = work / "corpus.json"
    if done.is_file():
        return small, large, json.loads(done.read_text())
    shutil.rmtree(small, ignore_errors=True)
    shutil.rmtree(large, ignore_errors=True)
    small.mkdir(parents=True)
    large.mkdir(parents=True)
    encode = load_encoder(tokenizer)
    probe = work / "probe.jsonl"
    _, tokens = build_corpus(probe, 1_000_000, encode)
    per_byte = tokens / probe.stat().st_size
    probe.unlink()
    whole = work / "whole.jsonl"
    texts, tokens = build_corpus(whole, int(mb * 1e6 * per_byte), encode)
    lines = whole.read_bytes().splitlines(keepends=True)
    whole.unlink()
    for number in range(FILES):
        data = b"".join(lines[number::FILES])
        (small / f"part-{number:02d}.jsonl").write_bytes(data)
        for copy in range(4):
            (large / f"part-{copy}-{number:02d}.jsonl").write_bytes(data)
    info = {"documents": len(texts), "tokens_1x": tokens, "files_1x": FILES, "files_4x": 4 * FILES,
            "mb_1x": round(sum(p.stat().st_size for p in small.iterdir()) / 1e6, 1),
            "mb_4x": round(sum(p.stat().st_size for p in large.iterdir()) / 1e6, 1)}
    done.write_text(json.dumps(info))
    return small, large, info


def plan_command(args: argparse.Namespace, corpus: Path) -> list[str]:
    """The 1x corpus's tokens are twice its domain budget (0.75 of the total): it fills it, train first."""
    return [str(BIN / "cpt-tasks"), "plan", "--dataset", args.sample, "--tokenizer", args.tokenizer, "--out_root",
            str(args.work / "data"), "--domain", str(corpus), "--subsets", "dclm", "--total_tokens",
            str(args.total_tokens), "--concat_tokens", str(CONCAT), "--val_fraction", "0.02", "--num_workers", "2"]


def cache_dir(args: argparse.Namespace, warm: Path, cold: bool) -> Path:
    """The warm cache, or a fresh copy of it without its file hashes (the tokenizer's cache kept)."""
    if not cold:
        return warm
    fresh = args.work / "cache-cold"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(warm, fresh, ignore=shutil.ignore_patterns("sha256"))
    return fresh


def time_plans(args: argparse.Namespace, corpora: dict[str, Path]) -> dict:
    """Median seconds of ``cpt-tasks plan`` per (corpus, cache state), runs interleaved."""
    warm = args.work / "cache-warm"
    shutil.rmtree(warm, ignore_errors=True)
    for corpus in corpora.values():  # fills the warm cache (hashes, tokenizer)
        run_timed(plan_command(args, corpus), {**os.environ, "CPT_CACHE_DIR": str(warm)})
    seconds: dict[str, list[float]] = {f"{name} {state}": [] for name in corpora for state in ("cold", "warm")}
    for _ in range(args.repeat):
        for name, corpus in corpora.items():
            for state in ("cold", "warm"):
                env = {**os.environ, "CPT_CACHE_DIR": str(cache_dir(args, warm, state == "cold"))}
                seconds[f"{name} {state}"].append(round(run_timed(plan_command(args, corpus), env), 3))
    return {key: {"median": statistics.median(runs), "all": runs} for key, runs in seconds.items()}


def parts(args: argparse.Namespace, corpus: Path) -> dict:
    """What a cold plan of ``corpus`` spends, timed in this process: hashing the listing, loading the tokenizer,
    the sampled estimate (and how much it read)."""
    from cpt_tasks.data.sources import resolve_source
    from cpt_tasks.plan.corpus_estimate import estimate_corpus
    from cpt_tasks.tokenizer import Encoder

    os.environ["CPT_CACHE_DIR"] = str(cache_dir(args, args.work / "cache-warm", True))
    start = time.perf_counter()
    source = resolve_source(str(corpus), None, "train", None)
    hashed = time.perf_counter()
    encoder = Encoder(Path(args.tokenizer), "<|begin_of_text|>", "<|end_of_text|>")
    loaded = time.perf_counter()
    estimate = estimate_corpus(source, "text", encoder, "--domain", "--domain_text_field")
    done = time.perf_counter()
    return {"hash_listing_s": round(hashed - start, 3), "load_tokenizer_s": round(loaded - hashed, 3),
            "estimate_s": round(done - loaded, 3), "estimate_read_bytes": estimate.read_bytes,
            "estimated_tokens": estimate.tokens, "corpus_bytes": source.total_bytes}


def convert(args: argparse.Namespace, corpus: Path) -> dict:
    """One full conversion of ``corpus`` (2 workers), end to end."""
    out = args.work / "converted"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(BIN / "cpt-tasks"), "convert", "--dataset", str(corpus), "--out_root", str(out), "--tokenizer",
           args.tokenizer, "--concat_tokens", str(CONCAT), "--num_workers", "2"]
    seconds = run_timed(cmd, {**os.environ, "CPT_CACHE_DIR": str(args.work / "cache-warm")})
    tokens = json.loads((out / "manifest.json").read_text())["splits"]["train"]["tokens"]
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": round(seconds, 3), "tokens": tokens, "command": shlex.join(cmd)}


def markdown(results: dict) -> str:
    m, c, p = results["machine"], results["corpus"], results["plans"]
    lines = ["## Plan time against corpus size (issue 26)", "",
             f"Written by `bench/plan_bench.py` on {m['date']}; code: {results['code']}.", "",
             f"- Machine: {m['cpu']}, {m['cores']} usable cores, {m['ram_gb']} GB RAM, Python {m['python']}; 1-min "
             f"load average at start {m['load_1min_at_start']} (other processes skew these numbers)",
             f"- Corpus: {c['mb_1x']} MB of JSON lines in {c['files_1x']} files ({c['tokens_1x']:,} Llama 3 tokens of "
             f"stdlib docstrings and pydoc topics) and the same files four times over: {c['mb_4x']} MB in "
             f"{c['files_4x']} files",
             f"- Plan: `{results['plan_command']}` (the 1x or 4x corpus), end to end, median of "
             f"{len(p['1x cold']['all'])} interleaved runs; cold: no remembered file hashes (the first plan of a new "
             "corpus hashes every file), warm: hashes remembered by their stat",
             f"- Conversion: `{results['conversion']['command']}` (the 4x corpus, whole), one run", "",
             "| run | seconds |", "| --- | ---: |"]
    lines += [f"| plan {key} | {value['median']:.2f} |" for key, value in p.items()]
    conversion = results["conversion"]
    lines += [f"| conversion 4x ({conversion['tokens']:,} tokens) | {conversion['seconds']:.2f} |",
              "", "| ratio | value | target | met |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {name} | {r['value']:.3f} | <= {r['target']} | {'yes' if r['met'] else 'NO'} |"
              for name, r in results["ratios"].items()]
    parts_text = "; ".join(f"{name}: hashing the listing {x['hash_listing_s']:.2f} s, loading the tokenizer "
                           f"{x['load_tokenizer_s']:.2f} s, the estimate {x['estimate_s']:.2f} s (read "
                           f"{x['estimate_read_bytes'] / 2**20:.1f} MiB of {x['corpus_bytes'] / 2**20:.0f} MiB)"
                           for name, x in results["parts"].items())
    framed = c["tokens_1x"] + 2 * c["documents"]  # BOS + EOS per document
    estimated = results["parts"]["1x"]["estimated_tokens"]
    lines += ["", f"Where a cold plan's time goes (in-process): {parts_text}; the rest is the process's start and "
              "imports. The estimate reads the same bounded sample whatever the size; hashing the listing grows with "
              "the corpus (once per corpus: later plans find the hashes by the files' stat; here the files were in "
              "the page cache, a cold disk reads them at its own speed).", "",
              f"The 1x corpus's estimate: {estimated:,} framed tokens against {framed:,} counted "
              f"({estimated / framed - 1:+.1%}); the plan converts it train first "
              f"(repeat: {results['domain_repeat_1x']}).", ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    small, large, corpus = build(args.work, args.mb, args.tokenizer)
    args.total_tokens = corpus["tokens_1x"] * 2 // 3
    plans = time_plans(args, {"1x": small, "4x": large})
    conversion = convert(args, large)
    ratios = {}
    for state in ("cold", "warm"):
        ratios[f"plan 4x / plan 1x ({state})"] = plans[f"4x {state}"]["median"] / plans[f"1x {state}"]["median"]
        ratios[f"plan 4x / conversion 4x ({state})"] = plans[f"4x {state}"]["median"] / conversion["seconds"]
    results = {"machine": machine(), "code": code_version(), "corpus": corpus, "plans": plans,
               "plan_command": shlex.join(plan_command(args, Path("CORPUS"))), "conversion": conversion,
               "domain_repeat_1x": json.loads(subprocess.run(plan_command(args, small), capture_output=True,
                                                             text=True, check=True).stdout)["subsets"][-1]["repeat"],
               "parts": {name: parts(args, path) for name, path in (("1x", small), ("4x", large))},
               "ratios": {name: {"value": round(value, 3), "target": TARGETS[name.rsplit(" (", 1)[0]],
                                 "met": value <= TARGETS[name.rsplit(" (", 1)[0]]} for name, value in ratios.items()}}
    text = markdown(results)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "plan.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results" / "plan.md").write_text(text)
    print(text)
    if not all(r["met"] for r in results["ratios"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
