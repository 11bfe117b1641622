"""The embedded default: run what exists of the pipeline on the bundled sample and print what landed where.

Today that is the conversion of the six Dolmino subsets with budgets derived from one total through the
mix; the DAG run (plan → convert → verify → train) takes this command's place as it lands.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cpt_tasks.convert.config import ConvertConfig
from cpt_tasks.convert.run import convert
from cpt_tasks.errors import EXIT_OK
from cpt_tasks.mix import subset_budgets

DEMO_TOTAL_TOKENS = 350_000  # fits the sample: dclm's 47.2% share (+val) is ~170k of its ~190k tokens
DEMO_VAL_FRACTION = 0.03
DEMO_CONCAT = 256


def run_demo(tokenizer: str, sample: Path, out: Path | None = None) -> int:
    """Convert every sample subset into ``out`` (default ``$CPT_HOME/demo``) and print a summary."""
    out = out or Path(os.environ.get("CPT_HOME", ".cpt")) / "demo"
    started = time.perf_counter()
    rows = []
    for subset, (max_tokens, val_tokens) in subset_budgets(DEMO_TOTAL_TOKENS, DEMO_VAL_FRACTION).items():
        cfg = ConvertConfig(dataset=str(sample), data_subset=subset, out_root=str(out / subset), tokenizer=tokenizer,
                            concat_tokens=DEMO_CONCAT, max_tokens=max_tokens, val_tokens=val_tokens, shuffle=True)
        result = convert(cfg)
        splits = result.manifest["splits"]
        rows.append((subset, max_tokens, splits["train"]["tokens"], splits["val"]["tokens"],
                     splits["train"]["documents"], "up to date" if result.up_to_date else "converted",
                     result.manifest["exhausted"]))
    total = sum(r[2] for r in rows)
    print(f"\ncpt-pipeline demo: {len(rows)} subsets, {total:,} train tokens, {time.perf_counter() - started:.1f}s")
    print(f"{'subset':<14}{'planned':>10}{'train':>10}{'share':>8}{'val':>8}{'docs':>7}  status")
    for subset, planned, train, val, docs, status, exhausted in rows:
        flag = " (source exhausted)" if exhausted else ""
        print(f"{subset:<14}{planned:>10,}{train:>10,}{train / total:>8.1%}{val:>8,}{docs:>7,}  {status}{flag}")
    print(f"\nMDS shards and manifests: {out}/<subset>/{{train,val,manifest.json}}")
    return EXIT_OK
