"""GPU benchmark of `cpt-tasks train`: the config it generates against plain Hugging Face + PyTorch.

One run on a lent GPU (bench/gpu_train.sh installs the carried wheels first): the sample data goes through
plan -> convert -> verify at seq 8192; a random Llama-3.2-1B-shaped model is saved with save_pretrained; then
(1) a plain training loop — transformers' LlamaForCausalLM with sdpa, bf16 autocast over fp32 weights, fused
torch AdamW, gradient clipping, the same micro-batch and gradient accumulation — and (2) ``train()``, i.e.
`cpt-tasks train` with the YAML it generates, both run ``--steps`` optimizer steps. Tokens/s per GPU is
timed over the steps after ``--warmup-steps`` (synchronised wall clock in the baseline, the per-step records
of the run's metrics history in LLM-Foundry's); MFU = tokens/s x (6 x params + 12 x layers x d_model x seq)
/ the card's dense bf16 peak, LLM-Foundry's formula. ``--smoke`` runs the same path on the CPU with a tiny
model in seconds (no MFU). Writes gpu_train.json and gpu_train.md into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpt_local.samples.tiny_model import LLAMA_32_1B, TINY  # noqa: E402

PEAK_BF16 = {"h100-sxm": 989e12, "h100-pcie": 756e12, "h200": 989e12}  # dense, no sparsity


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, seq 128: exercise the path")
    parser.add_argument("--out", type=Path, default=None, help="Where the results go (default: bench/results, "
                        "with --smoke the work folder)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cpt-gpu-bench"), help="Scratch folder")
    parser.add_argument("--steps", type=int, default=20, help="Optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=6, help="Steps left out of the timing")
    parser.add_argument("--global-batch", type=int, default=8, help="Rows per optimizer step")
    parser.add_argument("--microbatch", type=int, default=0, help="Rows per forward/backward (0: 2 on cards "
                        "with more than 100 GiB, else 1)")
    parser.add_argument("--attn", default="sdpa", help="attn_implementation of both runs")
    parser.add_argument("--compile", action="store_true", help="torch.compile in the LLM-Foundry run")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-foundry", action="store_true")
    return parser.parse_args()


def card() -> tuple[str, float | None, float]:
    """(name, dense bf16 peak flop/s or None, memory GiB) of GPU 0."""
    import torch

    if not torch.cuda.is_available():
        return platform.processor() or "cpu", None, 0.0
    props = torch.cuda.get_device_properties(0)
    name = props.name
    lower = name.lower()
    key = "h200" if "h200" in lower else "h100-pcie" if "h100" in lower and "pcie" in lower else \
        "h100-sxm" if "h100" in lower else None
    return name, PEAK_BF16.get(key), props.total_memory / 2**30


def flops_per_token(model_dir: Path, seq: int) -> float:
    from transformers import AutoConfig, AutoModelForCausalLM

    from cpt_tasks.train.foundry_plugins import transformer_flops_per_token

    config = AutoConfig.from_pretrained(model_dir)
    import torch

    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    return transformer_flops_per_token(params, config.num_hidden_layers, config.hidden_size, seq)


def make_data(work: Path, seq: int, smoke: bool) -> Path:
    """Sample -> plan -> convert -> verify at ``seq``; the verification report."""
    from cpt_tasks.configs.plan_config import PlanConfig
    from cpt_tasks.configs.verify_config import VerifyConfig
    from cpt_tasks.convert.convert_job import convert
    from cpt_tasks.documents import write_document
    from cpt_tasks.plan.plan_job import plan
    from cpt_local.samples.sample_mix import write_sample
    from cpt_tasks.tokenizer import export_llama3
    from cpt_tasks.verify.verify_job import verify

    tokenizer = ROOT / ".cpt" / "tokenizer" / "llama3"
    if not (tokenizer / "tokenizer.json").is_file():
        tokenizer = export_llama3(work / "tokenizer")
    sample = ROOT / ".cpt" / "sample" / "dolmino"
    if not (sample / ".complete").is_file():
        sample = work / "sample"
        if not (sample / ".complete").is_file():
            write_sample(sample)
    subsets = ["dclm", "flan", "math"]  # the sample's largest: 13 + 4 + 6 rows of 8192 tokens
    total = 24 * seq if smoke else 200_000
    body = plan(PlanConfig(dataset=str(sample), tokenizer=str(tokenizer), out_root=str(work / "data"),
                           subsets=subsets, total_tokens=total, concat_tokens=seq, val_fraction=0,
                           overrides={s: {"val_tokens": seq} for s in subsets}, num_workers=0))
    write_document(str(work / "plan.json"), body)
    for sub in body.subsets:
        convert(sub.convert, progress_interval=0)
    result = verify(VerifyConfig(plan=str(work / "plan.json"), num_workers=0))
    if not result.ok:
        raise SystemExit("verification of the benchmark data failed")
    return Path(result.paths["json"])


def run_baseline(model_dir: Path, args: argparse.Namespace, seq: int, micro: int) -> dict:
    """Plain transformers + PyTorch: fp32 weights, bf16 autocast, fused AdamW, clipping, accumulation."""
    import torch
    from transformers import AutoModelForCausalLM

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                 attn_implementation=args.attn).to(device)
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0,
                                  fused=gpu)
    accum = args.global_batch // micro
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 128000, (args.global_batch, seq), generator=generator).to(device)
    stamps, losses = [], []
    torch.cuda.reset_peak_memory_stats() if gpu else None
    for _ in range(args.steps):
        for i in range(accum):
            ids = data[i * micro:(i + 1) * micro]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
                loss = model(input_ids=ids, labels=ids).loss / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item() * accum)  # synchronises
        stamps.append(time.perf_counter())
    measured = stamps[args.warmup_steps - 1:]
    seconds = measured[-1] - measured[0]
    tokens = (len(measured) - 1) * args.global_batch * seq
    result = {"tokens_per_sec": tokens / seconds, "seconds_measured": seconds, "steps_measured": len(measured) - 1,
              "step_seconds_median": statistics.median(b - a for a, b in zip(measured, measured[1:])),
              "first_loss": losses[0], "last_loss": losses[-1],
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if gpu else None}
    del model, optimizer, data
    if gpu:
        torch.cuda.empty_cache()
    return result


def run_foundry(report: Path, model_dir: Path, args: argparse.Namespace, seq: int, micro: int) -> dict:
    """`cpt-tasks train` (its function) with the generated config; timing from its per-step records."""
    from cpt_tasks.configs.train_config import TrainConfig
    from cpt_tasks.train.train_job import train

    started = time.perf_counter()
    cfg = TrainConfig(report=str(report), model=str(model_dir), save_root=str(args.work / "runs"),
                      run_id=f"bench-{int(time.time())}", global_batch_size=args.global_batch,
                      device_microbatch_size=micro, max_duration=f"{args.steps}ba", lr=1e-4, warmup="2ba",
                      eval_interval="1dur", save_interval="1dur", num_workers=0 if args.smoke else 4,
                      log_interval=1, attn_implementation=args.attn, compile=args.compile,
                      local_dir=str(args.work / "local"))
    result = train(cfg)
    wall = time.perf_counter() - started
    history = [json.loads(line) for line in open(Path(result.run_folder) / "metrics.jsonl")]
    measured = [r for r in history if r["step"] >= args.warmup_steps]
    seconds = measured[-1]["time"] - measured[0]["time"]
    tokens = measured[-1]["tokens"] - measured[0]["tokens"]
    mfus = [r["mfu"] for r in history if "mfu" in r]
    return {"tokens_per_sec": tokens / seconds, "seconds_measured": seconds, "steps_measured": len(measured) - 1,
            "step_seconds_median": statistics.median(b["time"] - a["time"] for a, b in zip(measured, measured[1:])),
            "first_loss": history[0].get("loss"), "last_loss": history[-1].get("loss"),
            "speed_monitor_mfu_median": statistics.median(mfus) if mfus else None,
            "status": result.status, "final_step": result.final_step, "run_folder": result.run_folder,
            "train_yaml": str(Path(result.run_folder) / "train.yaml"), "wall_seconds_end_to_end": wall}


def main() -> int:
    args = parse_args()
    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not args.smoke:
        raise SystemExit("no GPU: run with --smoke on the CPU")
    seq = 128 if args.smoke else 8192
    if args.smoke:
        args.steps, args.warmup_steps, args.global_batch = min(args.steps, 6), min(args.warmup_steps, 2), 4
    name, peak, memory = card()
    micro = args.microbatch or (2 if args.smoke or memory > 100 else 1)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = make_data(args.work, seq, args.smoke)
    from cpt_local.samples.tiny_model import write_random_llama

    model_dir = args.work / "model"
    if not (model_dir / "config.json").is_file():
        write_random_llama(model_dir, None, context=max(seq, 8192), dtype="float32" if args.smoke else "bfloat16",
                           **(TINY if args.smoke else LLAMA_32_1B))
    per_token = flops_per_token(model_dir, seq)
    print(f"[bench] data and model ready in {time.perf_counter() - t0:.0f}s; {name}, micro-batch {micro}, "
          f"global batch {args.global_batch}, seq {seq}", flush=True)
    runs = {}
    if not args.skip_baseline:
        runs["baseline"] = run_baseline(model_dir, args, seq, micro)
        print(f"[bench] baseline: {runs['baseline']}", flush=True)
    if not args.skip_foundry:
        runs["cpt_train"] = run_foundry(report, model_dir, args, seq, micro)
        print(f"[bench] cpt-tasks train: {runs['cpt_train']}", flush=True)
    for run in runs.values():
        run["mfu"] = run["tokens_per_sec"] * per_token / peak if peak else None
    results = summarize(args, runs, name, peak, seq, micro, per_token)
    write_results(args.out or (args.work / "results" if args.smoke else ROOT / "bench" / "results"), results)
    return 0


def summarize(args, runs: dict, name: str, peak: float | None, seq: int, micro: int, per_token: float) -> dict:
    import torch
    import transformers

    ratio = None
    if "baseline" in runs and "cpt_train" in runs:
        ratio = runs["cpt_train"]["tokens_per_sec"] / runs["baseline"]["tokens_per_sec"]
    return {"card": name, "peak_bf16_flops": peak, "smoke": args.smoke, "seq": seq, "microbatch": micro,
            "global_batch": args.global_batch, "steps": args.steps, "warmup_steps": args.warmup_steps,
            "attn": args.attn, "compile": args.compile, "flops_per_token": per_token,
            "torch": torch.__version__, "transformers": transformers.__version__, "runs": runs,
            "ratio_cpt_train_to_baseline": ratio, "target_ratio": 0.95,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def write_results(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_train.json").write_text(json.dumps(results, indent=2))
    lines = [f"# GPU training benchmark ({'CPU smoke run' if results['smoke'] else results['card']})", "",
             f"{results['date']}; torch {results['torch']}, transformers {results['transformers']}; seq "
             f"{results['seq']}, micro-batch {results['microbatch']}, global batch {results['global_batch']}, "
             f"{results['steps']} steps (first {results['warmup_steps']} not timed), attention {results['attn']}.",
             "", "| run | tokens/s per GPU | MFU | median step s | loss first -> last |", "|---|---:|---:|---:|---|"]
    for label, run in results["runs"].items():
        mfu = f"{run['mfu']:.1%}" if run.get("mfu") is not None else "-"
        lines.append(f"| {label} | {run['tokens_per_sec']:,.0f} | {mfu} | {run['step_seconds_median']:.3f} | "
                     f"{run['first_loss']:.3f} -> {run['last_loss']:.3f} |")
    if results["ratio_cpt_train_to_baseline"] is not None:
        ratio = results["ratio_cpt_train_to_baseline"]
        lines += ["", f"cpt-tasks train / baseline tokens/s: **{ratio:.3f}** (target >= 0.95: "
                      f"{'met' if ratio >= 0.95 else 'NOT met'})"]
    text = "\n".join(lines) + "\n"
    (out / "gpu_train.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
