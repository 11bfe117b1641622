"""The embedded default: run what exists of the pipeline on the bundled sample, then say what landed where.

Today: plan (budgets from one total and the Dolmino mix) → convert each subset with exactly the command line
the plan wrote → verify. The DAG run (with training) takes this command's place as it lands.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cpt_tasks.convert.run import convert
from cpt_tasks.errors import EXIT_CHECK_FAILED, EXIT_OK
from cpt_tasks.plan.config import PlanConfig
from cpt_tasks.plan.run import format_plan, plan, planned_config
from cpt_tasks.storage import write_bytes_atomic
from cpt_tasks.verify.config import VerifyConfig
from cpt_tasks.verify.report import render_markdown
from cpt_tasks.verify.run import verify

DEMO_TOTAL_TOKENS = 350_000  # fits the sample: dclm's 47.2% share (+val) is ~170k of its ~190k tokens
DEMO_VAL_FRACTION = 0.03  # the default 0.0002 would be less than one row at this size
DEMO_CONCAT = 256


def run_demo(tokenizer: str, sample: Path, out: Path | None = None) -> int:
    """Plan, convert and verify the sample into ``out`` (default ``$CPT_HOME/demo``); print a summary."""
    import json

    out = out or Path(os.environ.get("CPT_HOME", ".cpt")) / "demo"
    started = time.perf_counter()
    cfg = PlanConfig(dataset=str(sample), tokenizer=tokenizer, total_tokens=DEMO_TOTAL_TOKENS,
                     concat_tokens=DEMO_CONCAT, val_fraction=DEMO_VAL_FRACTION, out_root=str(out / "data"))
    body = plan(cfg)
    plan_path = out / "plan.json"
    write_bytes_atomic(str(plan_path), json.dumps(body, indent=2).encode())
    print(format_plan(body), "\n")
    for subset in body["subsets"]:
        result = convert(planned_config(subset))
        state = "up to date" if result.up_to_date else f"converted in {result.manifest['timings']['seconds']:.1f}s"
        print(f"convert {subset['name']:<14} {state}")
    result = verify(VerifyConfig(plan=str(plan_path)))
    print("\n" + render_markdown(result.report))
    print(f"done in {time.perf_counter() - started:.1f}s. Under {out}:")
    print("  plan.json                          the plan (budgets, fingerprints, convert commands)")
    print("  data/<mix>/<fingerprint>/<subset>/ MDS train/ and val/ with manifest.json")
    print("  verify-report.{json,md}, verify-mix.png   the verification report and chart")
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED
