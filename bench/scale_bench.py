"""Scale benchmark: one component converted in 1 part and in N parts through the real CLI, and what that projects
for the 50B-token plans on a cluster of pods.

Builds a component of real English text (``convert_bench.build_corpus``) as ``--files`` JSON-lines files in the hub
layout, plans it (``cpt-tasks plan``) in 1 part, in ``--parts`` parts and as a 3-row plan (the fixed costs), converts
each part in its own process (``cpt-tasks convert-subset --part i --num_workers 2``, one after another) and verifies
(``cpt-tasks verify --num_workers 2``). Measures each part's throughput, the overhead of parts, the merge
(``merge_subset`` in-process) and verify's shard check; checks the rows against the plan and that reruns are
byte-identical; measures tiktoken's per-core rate (``convert_bench.ceiling``); projects the default 50B plan and a
37.5B-token domain corpus at replay 0.25 onto ``--pods`` pods of ``--cores`` cores. Writes
``bench/results/scale.{json,md}``. Run by ``make bench-scale``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from convert_bench import LOAD_AT_START, build_corpus, code_version, machine, run_timed  # noqa: E402
from tokenizer_ceiling import ceiling, load_encoder  # noqa: E402

CLI = str(Path(sys.executable).parent / "cpt-tasks")
CONCAT, WORKERS, GOAL_S = 8192, 2, 600
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--tokenizer", required=True, help="Llama 3 tokenizer folder (cpt-tasks tokenizer)")
    add("--tokens", type=int, default=40_000_000, help="Tokens of text in the component (at least)")
    add("--files", type=int, default=8, help="Input files of the component")
    add("--parts", type=int, default=4, help="Parts of the parted conversion")
    add("--repeat", type=int, default=5, help="Rounds of every conversion and verify (medians reported)")
    add("--pods", type=int, default=32, help="Projection: convert pods (CPT_MAX_ACTIVE_CONVERT)")
    add("--cores", type=int, default=8, help="Projection: cores per pod (convert_cpu)")
    add("--committed", action="store_true", help="Measure HEAD's cpt_tasks/ (git archive into the work folder, "
        "first on PYTHONPATH) instead of the working tree's")
    add("--work", type=Path, default=Path("/tmp/cpt-scale-bench"), help="Work folder (outside the repository)")
    return parser.parse_args()


def write_component(work: Path, target: int, files: int, encode) -> tuple[dict, list[str]]:
    """The corpus as ``files`` contiguous JSON-lines files of equal line counts, in the hub layout."""
    single = work / "corpus.jsonl"
    texts, tokens = build_corpus(single, target, encode)
    lines = single.read_bytes().splitlines(keepends=True)
    single.unlink()
    shutil.rmtree(work / "src", ignore_errors=True)
    for n in range(files):
        path = work / "src" / "data" / "dclm" / f"{n:04d}" / f"dclm-{n:04d}.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"".join(lines[n * len(lines) // files:(n + 1) * len(lines) // files]))
    size = sum(p.stat().st_size for p in (work / "src").rglob("*.jsonl"))
    return {"root": str(work / "src"), "documents": len(texts), "tokens": tokens, "files": files,
            "mb": round(size / 1e6, 1), "bytes_per_token": round(size / tokens, 3)}, texts


def make_plan(work: Path, corpus: dict, tokenizer: str, label: str, part_tokens: int, val_rows: int,
              total: int | None = None) -> tuple[Path, dict]:
    """``cpt-tasks plan`` of the component (default total: 3/4 of its tokens) with about ``val_rows`` val rows."""
    total = total or int(corpus["tokens"] * 0.75)
    val_fraction = math.ceil(val_rows * CONCAT / total * 1e4) / 1e4
    location = work / f"plan-{label}.json"
    cmd = [CLI, "plan", "--dataset", corpus["root"], "--subsets", "dclm", "--tokenizer", tokenizer,
           "--out_root", str(work / f"out-{label}"), "--total_tokens", str(total), "--concat_tokens", str(CONCAT),
           "--val_fraction", str(val_fraction), "--part_tokens", str(part_tokens), "--num_workers", str(WORKERS),
           "--output", str(location)]
    seconds = run_timed(cmd, ENV)
    return location, {"command": shlex.join(cmd), "seconds": round(seconds, 2), "total_tokens": total,
                      "val_fraction": val_fraction, "part_tokens": part_tokens,
                      "sub": json.loads(location.read_text())["subsets"][0]}


def tree_digest(out_root: Path) -> str:
    """sha256 over the shards and indexes (paths and bytes), what tests/cpt_tasks/test_parts.py compares."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out_root.rglob("*") if p.suffix == ".zstd" or p.name == "index.json"):
        digest.update(str(path.relative_to(out_root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def convert_round(location: Path, sub: dict) -> dict:
    """Every part of the subset into a fresh output, one process each, then verify."""
    out_root = Path(sub["convert"]["out_root"])
    shutil.rmtree(out_root, ignore_errors=True)
    count, parts = len(sub["parts"] or [None]), []
    for part in range(count):
        wall = run_timed([CLI, "convert-subset", "--plan", str(location), "--subset", "dclm", "--part", str(part),
                          "--num_workers", str(WORKERS)], ENV)
        made = json.loads((out_root / "parts" / f"part-{part:05d}.json" if count > 1
                           else out_root / "manifest.json").read_text())  # the part's own manifest
        tokens = sum(s["tokens"] for s in made["splits"].values())
        parts.append({"part": part, "wall_s": round(wall, 3), "tokens": tokens, "files": len(made["source"]["files"]),
                      "rows": {s: c["samples"] for s, c in made["splits"].items()}})
        print(f"  part {part + 1}/{count}: {tokens:,} tokens in {wall:.2f} s ({tokens / wall / 1e6:.2f}M tokens/s)",
              flush=True)
    digest, merged = tree_digest(out_root), json.loads((out_root / "manifest.json").read_text())
    verify = run_timed([CLI, "verify", "--plan", str(location), "--num_workers", str(WORKERS),
                        "--report_dir", str(location.parent / "reports")], ENV)  # exits non-zero if a check fails
    print(f"  verify: {verify:.2f} s", flush=True)
    return {"parts": parts, "verify_s": round(verify, 3), "digest": digest,
            "rows": {s: c["samples"] for s, c in merged["splits"].items()},
            "tokens": sum(c["tokens"] for c in merged["splits"].values())}


def medians(rounds: list[dict]) -> dict:
    """Each part's median wall over the rounds (their sum: the run's wall) and the median verify."""
    parts = [{**p, "wall_s": statistics.median(r["parts"][i]["wall_s"] for r in rounds)}
             for i, p in enumerate(rounds[0]["parts"])]
    first = {k: v for k, v in rounds[0].items() if k != "digest"}  # compared in checks; hex trips the secret scan
    return {**first, "parts": parts, "wall_s": round(sum(p["wall_s"] for p in parts), 3),
            "verify_s": statistics.median(r["verify_s"] for r in rounds),
            "all_wall_s": [round(sum(p["wall_s"] for p in r["parts"]), 2) for r in rounds]}


def time_merge(location: Path, repeat: int = 5) -> dict:
    """``merge_subset`` in-process after removing the merged manifest and indexes; the bytes must come back equal."""
    from cpt_tasks.data.merged_parts import merge_subset
    from cpt_tasks.documents.plan_docs import load_plan

    sub = load_plan(str(location))[0].subsets[0]
    written = [Path(sub.out_root, *name) for name in (("manifest.json",), ("train", "index.json"),
                                                       ("val", "index.json"))]
    before, times = [p.read_bytes() for p in written], []
    for _ in range(repeat):
        for path in written:
            path.unlink()
        start = time.perf_counter()
        merged = merge_subset(sub)
        times.append(time.perf_counter() - start)
        if merged is None:
            sys.exit("merge_subset found a part missing")
    return {"seconds": round(statistics.median(times), 4),
            "shards": sum(len(json.loads(p.read_bytes())["shards"]) for p in written[1:]),
            "identical_to_last_parts_merge": [p.read_bytes() for p in written] == before}


def read_rate(out_root: Path) -> dict:
    """verify's shard check (``check_shard``: hashes, decompression, every row) over an output, in this process."""
    from cpt_tasks.data.shards import check_shard

    vocab = json.loads((out_root / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    tokens, start = 0, time.perf_counter()
    for split in ("train", "val"):
        for shard in json.loads((out_root / split / "index.json").read_text())["shards"]:
            if check_shard(str(out_root / split), shard, CONCAT, vocab, 0).problems:
                sys.exit(f"verify's shard check failed on {shard['raw_data']['basename']}")
            tokens += shard["samples"] * CONCAT
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds)}


def rates_from(runs: dict, merge: dict, shard_tokens: int, tiktoken: int, reading: int) -> dict:
    """Two models of a part's wall, fixed + tokens / rate. fit: fixed fitted to the 1-part wall and the sum over the
    N parts (at least the 3-row conversion's wall), the 1 part's rate net of it, equal parts. conservative: the same
    fixed cost, the 1 part's end-to-end rate (start-up included), each component's first part as uneven as here."""
    tiny, one, many = runs["tiny"], runs["one"], runs["many"]
    n, tokens = len(many["parts"]), [p["tokens"] for p in many["parts"]]
    raw = (many["wall_s"] - one["wall_s"]) / (n - 1)
    fixed = max(raw, tiny["wall_s"])
    return {"fit": {"fixed_s": round(fixed, 3), "per_core": round(one["tokens"] / (one["wall_s"] - fixed) / WORKERS),
                    "imbalance": 1.0},
            "conservative": {"fixed_s": round(fixed, 3), "per_core": round(one["tokens"] / one["wall_s"] / WORKERS),
                             "imbalance": round(max(tokens) / statistics.mean(tokens), 3)},
            "fit_raw_fixed_s": round(raw, 3),
            "verify_fixed_s": tiny["verify_s"], "verify_per_core": reading,
            "merge_s_per_shard": merge["seconds"] / merge["shards"], "tokens_per_shard": shard_tokens,
            "tiktoken_per_core": tiktoken}


def components(name: str) -> dict[str, int]:
    """Train + val tokens of each component of a projected plan (budgets from ``cpt_tasks.mix``)."""
    from cpt_tasks.mix import DEFAULT_TOTAL_TOKENS as TOTAL, DEFAULT_VAL_FRACTION as VAL, domain_budget, subset_budgets

    budgets = subset_budgets(TOTAL, VAL) if name == "50B" else {"domain": domain_budget(TOTAL, 0.25, VAL), **{
        f"replay {k}": v for k, v in subset_budgets(TOTAL, VAL, share=0.25).items()}}
    return {k: train + val for k, (train, val) in budgets.items()}


def project(comps: dict[str, int], part_tokens: float, r: dict, pods: int, cores: int) -> dict:
    """Convert (parts handed in plan order to the pod free first), the largest merge and verify, in seconds."""
    counts = {k: max(1, math.ceil(t / part_tokens)) for k, t in comps.items()}  # files and rows assumed enough
    convert = {}
    for model in ("fit", "conservative"):
        free, m = [0.0] * pods, r[model]
        for name, tokens in comps.items():
            k = counts[name]
            big = tokens / k * (m["imbalance"] if k > 1 else 1)
            for size in [big] + [(tokens - big) / max(k - 1, 1)] * (k - 1):
                free[free.index(min(free))] += m["fixed_s"] + size / (m["per_core"] * cores)
        convert[model] = max(free)
    merge = max((r["merge_s_per_shard"] * (math.ceil(t / r["tokens_per_shard"]) + 2 * counts[k])
                 for k, t in comps.items() if counts[k] > 1), default=0.0)
    tokens = sum(comps.values())
    verify = r["verify_fixed_s"] + tokens / (r["verify_per_core"] * cores)
    total = {m: convert[m] + merge + verify for m in convert}
    return {"parts": counts, "parts_total": sum(counts.values()), "waves": math.ceil(sum(counts.values()) / pods),
            "largest_part_tokens": round(max(t / counts[k] for k, t in comps.items())), "tokens": tokens,
            "convert_s": {m: round(v, 1) for m, v in convert.items()}, "merge_s": round(merge, 2),
            "verify_s": round(verify, 1), "total_s": {m: round(v, 1) for m, v in total.items()},
            "ceiling_s": round(tokens / (r["tiktoken_per_core"] * pods * cores), 1),
            "meets_goal": {m: v <= GOAL_S for m, v in total.items()}}


def report(res: dict) -> str:
    """scale.md: the machine, the runs, the checks, the projection and its assumptions."""
    m, c, runs, r, chk, plans = res["machine"], res["corpus"], res["runs"], res["rates"], res["checks"], res["plans"]
    one, many, tiny, fit, con = runs["one"], runs["many"], runs["tiny"], r["fit"], r["conservative"]
    n, yes, cores = len(many["parts"]), {True: "yes", False: "NO"}, res["cores"]
    measures = [
        ("wall, 1 part: median (each round)", f"{one['wall_s']:.2f} s ({', '.join(map(str, one['all_wall_s']))})"),
        (f"wall, sum over {n} parts of each one's median (each round's sum)",
         f"{many['wall_s']:.2f} s ({', '.join(map(str, many['all_wall_s']))})"),
        (f"overhead of parts: sum over {n} parts / 1 part", f"{many['wall_s'] / one['wall_s']:.2f}x "
         f"(+{many['wall_s'] - one['wall_s']:.2f} s)"),
        (f"fixed cost of a part: the 3-row conversion / fitted, (sum over {n} − 1 part) / {n - 1}",
         f"{tiny['wall_s']:.2f} / {r['fit_raw_fixed_s']:.2f} s"),
        ("largest part / mean part (tokens)", f"{con['imbalance']:.2f}"),
        (f"merge: `merge_subset` in-process, {n} parts, {res['merge']['shards']} shards",
         f"{res['merge']['seconds'] * 1000:.1f} ms"),
        (f"verify: 1 part / {n} parts / the 3-row plan", f"{one['verify_s']:.2f} / {many['verify_s']:.2f} / "
         f"{tiny['verify_s']:.2f} s"),
        ("verify's shard check (`check_shard`), 1 process, over the 1-part output",
         f"{r['verify_per_core'] / 1e6:.0f}M tokens/s"),
        ("tiktoken `encode_ordinary` alone, 1 process", f"{r['tiktoken_per_core'] / 1e6:.2f}M tokens/s")]
    checks = [
        (f"rows of the {n}-part merged manifest == plan (train {chk['planned_rows']['train']:,}, val "
         f"{chk['planned_rows']['val']:,}) == the 1-part run's, every round", yes[chk["rows_as_planned"]]),
        ("each part's rows == its planned share, every round", yes[chk["part_shares"]]),
        ("verify passed, every run", "yes (a failure stops the benchmark)"),
        ("merge redone in-process: the same bytes as the last part's",
         yes[res["merge"]["identical_to_last_parts_merge"]]),
        (f"shards and indexes byte-identical over the {res['repeat']} rounds, 1 part / {n} parts",
         f"{yes[chk['one_identical']]} / {yes[chk['many_identical']]}")]

    def both(d: dict, f) -> str:
        return f"{f(d['fit'])} / {f(d['conservative'])}"

    return "\n".join([
        "# Scale benchmark: one component in parts", "",
        f"Written by `bench/scale_bench.py` on {m['date']}; rerun with `make bench-scale`.", "",
        f"- Machine: {m['cpu']}, {m['cores']} usable cores, {m['ram_gb']} GB RAM, Python {m['python']}; 1-min load "
        f"average {m['load_1min_at_start']} at start, {res['load_1min_at_end']} at end (other work skews every number)",
        f"- Command: `{res['command']}`; code: {res['code']}",
        f"- Component: {c['documents']:,} documents, {c['tokens']:,} tokens of text in {c['files']} JSON-lines files "
        f"on local disk, {c['mb']} MB ({c['bytes_per_token']} bytes per token)",
        f"- Plans: `cpt-tasks plan --subsets dclm --concat_tokens {CONCAT} --total_tokens "
        f"{plans['one']['total_tokens']} --val_fraction {plans['one']['val_fraction']}` (shuffled) with `--part_tokens "
        f"{plans['one']['part_tokens']}` (1 part) and `{plans['many']['part_tokens']}` ({n} parts), and a 3-row plan "
        f"(`--total_tokens {plans['tiny']['total_tokens']}`, 2 train rows and 1 val row: the fixed costs of a part and "
        f"of verify). Each part: "
        f"`cpt-tasks convert-subset --part i --num_workers {WORKERS}` in its own process, one after another; then "
        f"`cpt-tasks verify --num_workers {WORKERS}`. {res['repeat']} rounds, interleaved", "",
        "## Measured", "", "| run | part | files | tokens | wall s | M tokens/s | per core |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {label} | {p['part']} | {p['files']} | {p['tokens']:,} | {p['wall_s']:.2f} | "
          f"{p['tokens'] / p['wall_s'] / 1e6:.2f} | {p['tokens'] / p['wall_s'] / WORKERS / 1e6:.2f} |"
          for label, run in (("1 part", one), (f"{n} parts", many)) for p in run["parts"]],
        "", "| measure | value |", "|---|---:|", *[f"| {k} | {v} |" for k, v in measures],
        "", "| check | result |", "|---|---|", *[f"| {k} | {v} |" for k, v in checks],
        "", f"## Projection: {res['pods']} pods × {cores} cores", "",
        f"A part takes fixed + tokens / (rate per core × {cores}). fit: {fit['fixed_s']:.2f} s + "
        f"{fit['per_core'] / 1e6:.2f}M tokens/s per core (the 1 part's, net of the fixed cost), equal parts. "
        f"conservative: {con['fixed_s']:.2f} s + {con['per_core'] / 1e6:.2f}M tokens/s per core (the 1 part's end to "
        f"end, start-up included), each component's largest part {con['imbalance']:.2f}x the mean. Merge: "
        f"{r['merge_s_per_shard'] * 1000:.2f} ms per shard of {r['tokens_per_shard'] / 1e6:.1f}M tokens. Verify: "
        f"{r['verify_fixed_s']:.2f} s (the 3-row plan's) + "
        f"{r['verify_per_core'] / 1e6:.0f}M tokens/s per core (its shard check). Ceiling: tiktoken alone at "
        f"{r['tiktoken_per_core'] / 1e6:.2f}M tokens/s per core on every core.", "",
        "| plan | part_tokens | parts | waves | largest part | convert s fit / cons. | merge s | verify s | "
        "total fit / cons. | ceiling | ≤ 10 min fit / cons. |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *[f"| {p['plan']}: {p['tokens'] / 1e9:.2f}B tokens | {p['part_tokens']} | "
          f"{', '.join(f'{k} {v}' for k, v in p['parts'].items())} (= {p['parts_total']}) | {p['waves']} | "
          f"{p['largest_part_tokens'] / 1e9:.2f}B | {both(p['convert_s'], lambda x: f'{x:.0f}')} | "
          f"{p['merge_s']:.2f} | {p['verify_s']:.0f} | {both(p['total_s'], lambda x: f'{x / 60:.1f}')} min | "
          f"{p['ceiling_s']:.0f} s | {both(p['meets_goal'], lambda x: 'yes' if x else 'no')} |"
          for p in res["projection"]],
        "", "Assumptions:", "", *[f"- {a}" for a in res["assumptions"]], ""])


def assumptions(corpus: dict, args: argparse.Namespace) -> list[str]:
    return [
        "Input download excluded: the files are on local disk here; a pod reads them from the hub or object storage "
        f"({corpus['bytes_per_token']} bytes of JSON lines per token here: a 2B-token part reads "
        f"~{2e9 * corpus['bytes_per_token'] / 1e9:.0f} GB). Pod scheduling, image pulls and the plan step are "
        "excluded too.",
        f"Per-core rates measured with {WORKERS} workers on 2 shared cores, ASSUMED to scale linearly to {args.cores} "
        f"cores ({args.cores} workers) per pod: not measured here. Fixed costs assumed not to grow with the cores.",
        "Parts per component = ceil((train + val budget) / part_tokens), as the plan computes them, assuming every "
        "component has at least that many input files and train rows.",
        f"Convert: the parts handed, in plan order, to {args.pods} pods (CPT_MAX_ACTIVE_CONVERT = {args.pods}) as "
        "pods free up; waves = ceil(parts / pods). Merge: the largest component's, after the convert waves, at the "
        "measured cost per shard on local disk.",
        f"Verify: one pod of {args.cores} cores (verify's pod gets convert_cpu cores and as many readers), each "
        "reading shards at the rate measured in one process here, the shards in the page cache: object-storage "
        "reads excluded.",
        "Ceiling: all tokens / (tiktoken's 1-process rate × pods × cores): tokenizing alone, nothing else."]


def main() -> None:
    args = parse_args()
    work = args.work.resolve()
    if work == HERE.parent or HERE.parent in work.parents:
        sys.exit(f"--work {work}: outside the repository, please (the secret scan reads untracked files)")
    work.mkdir(parents=True, exist_ok=True)
    tokenizer, code = str(Path(args.tokenizer).resolve()), code_version()
    if args.committed:  # others' edits in progress in the working tree do not reach the numbers
        shutil.rmtree(work / "code", ignore_errors=True)
        (work / "code").mkdir()
        subprocess.run(f"git -C {shlex.quote(str(HERE.parent))} archive HEAD cpt_tasks | tar -x -C "
                       f"{shlex.quote(str(work / 'code'))}", shell=True, check=True)
        ENV["PYTHONPATH"], code = str(work / "code"), code.split(" ")[0] + " (HEAD's cpt_tasks/: --committed)"
        sys.path.insert(0, ENV["PYTHONPATH"])
    from cpt_tasks.configs.plan_config import DEFAULT_PART_TOKENS

    encode = load_encoder(tokenizer)
    print(f"building {args.tokens:,} tokens in {args.files} files under {work} …", flush=True)
    corpus, texts = write_component(work, args.tokens, args.files, encode)
    print(f"component: {corpus['documents']:,} documents, {corpus['tokens']:,} tokens, {corpus['mb']} MB", flush=True)
    val_rows = 2 * args.parts  # a few in every part
    plans = {"tiny": make_plan(work, corpus, tokenizer, "tiny", DEFAULT_PART_TOKENS, 1, total=2 * CONCAT),
             "one": make_plan(work, corpus, tokenizer, "one", DEFAULT_PART_TOKENS, val_rows)}
    budget = plans["one"][1]["sub"]["convert"]["max_tokens"] + plans["one"][1]["sub"]["convert"]["val_tokens"]
    plans["many"] = make_plan(work, corpus, tokenizer, "many", budget // args.parts + 1, val_rows)
    for label, want in (("tiny", 1), ("one", 1), ("many", args.parts)):
        if len(plans[label][1]["sub"]["parts"] or [None]) != want:
            sys.exit(f"plan {label}: not {want} part(s); see {plans[label][0]}")
    print(f"planned: {budget:,} tokens in 1 part and in {args.parts} parts", flush=True)
    rounds: dict[str, list] = {"tiny": [], "one": [], "many": []}
    for number in range(args.repeat):  # interleaved: a busy spell of the machine hits all three alike
        for label in rounds:
            print(f"round {number + 1}/{args.repeat}, {label}:", flush=True)
            rounds[label].append(convert_round(plans[label][0], plans[label][1]["sub"]))
    merge = time_merge(plans["many"][0])
    print(f"merge: {merge['seconds'] * 1000:.1f} ms, same bytes: {merge['identical_to_last_parts_merge']}", flush=True)
    tt = sorted((ceiling(texts[:len(texts) // 4], encode, 1) for _ in range(3)), key=lambda x: x["seconds"])[1]
    out_one = Path(plans["one"][1]["sub"]["convert"]["out_root"])
    reading = sorted((read_rate(out_one) for _ in range(3)), key=lambda x: x["seconds"])[1]
    print(f"tiktoken: {tt['tokens_per_s'] / 1e6:.2f}M tokens/s, verify's shard check: "
          f"{reading['tokens_per_s'] / 1e6:.0f}M tokens/s (1 process each)", flush=True)
    sub, runs = plans["many"][1]["sub"], {label: medians(values) for label, values in rounds.items()}
    planned = {"train": sub["convert"]["max_tokens"] // CONCAT, "val": sub["convert"]["val_tokens"] // CONCAT}
    checks = {"planned_rows": planned,
              "rows_as_planned": all(r["rows"] == planned for label in ("one", "many") for r in rounds[label]),
              "part_shares": all(p["rows"] == {"train": q["max_tokens"] // CONCAT, "val": q["val_tokens"] // CONCAT}
                                 for r in rounds["many"] for p, q in zip(r["parts"], sub["parts"])),
              "one_identical": len({r["digest"] for r in rounds["one"]}) == 1,
              "many_identical": len({r["digest"] for r in rounds["many"]}) == 1}
    shard_rows = max(s["samples"] for s in json.loads((out_one / "train" / "index.json").read_text())["shards"])
    rates = rates_from(runs, merge, shard_rows * CONCAT, tt["tokens_per_s"], reading["tokens_per_s"])
    projection = [{"plan": plan, "part_tokens": label, **project(components(plan), pt, rates, args.pods, args.cores)}
                  for plan in ("50B", "37.5B domain + replay 0.25")
                  for label, pt in ((f"{DEFAULT_PART_TOKENS / 1e9:g}B (default)", DEFAULT_PART_TOKENS),
                                    ("none (1 part each)", math.inf))]
    results = {"machine": {**machine(), "load_1min_at_start": LOAD_AT_START},
               "load_1min_at_end": round(os.getloadavg()[0], 2), "code": code,
               "command": shlex.join([os.path.relpath(sys.executable), *sys.argv]), "corpus": corpus,
               "repeat": args.repeat, "pods": args.pods, "cores": args.cores,
               "plans": {k: {key: v for key, v in plan.items() if key != "sub"} for k, (_, plan) in plans.items()},
               "runs": runs, "merge": merge, "tiktoken_1p": tt, "verify_read_1p": reading, "checks": checks,
               "rates": rates, "projection": projection, "goal_s": GOAL_S, "assumptions": assumptions(corpus, args)}
    text = report(results)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scale.md").write_text(text)
    (HERE / "results" / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
