"""``verify(cfg) -> VerifyResult``: every planned subset's manifest, shards, rows, budgets and the realized
mix, checked against the plan; writes the report that the training step reads.

A subset passes when: its manifest exists with the plan's fingerprint; every shard listed in each split's
index exists with the listed size and hash and the counts agree; every row holds exactly concat_tokens valid
ids; spot-checked rows decode; train/val hold floor(budget/concat) rows (or the source ran out and the plan
allows short subsets); train and val share no document; and its train tokens are within one row of
proportion × total_tokens.
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

from cpt_tasks import __version__
from cpt_tasks.convert.manifest import read_manifest
from cpt_tasks.plan.run import load_plan
from cpt_tasks.pool import process_pool
from cpt_tasks.storage import is_remote, join
from cpt_tasks.tokenizer import Encoder, resolve_tokenizer_dir
from cpt_tasks.train.status import find_finished_run
from cpt_tasks.verify.config import VerifyConfig
from cpt_tasks.verify.report import write_report
from cpt_tasks.verify.shards import ShardCheck, check_shard, read_index

REPORT_FORMAT = "cpt-pipeline/verify-report/v1"
SPLITS = ("train", "val")


@dataclass
class VerifyResult:
    """The report (JSON-ready) and where it was written."""

    ok: bool
    report: dict
    paths: dict[str, str]


def _shard_job(args: tuple) -> tuple[str, str, ShardCheck]:
    subset, split, url, shard, concat, vocab, keep = args
    return subset, split, check_shard(url, shard, concat, vocab, keep)


class _Checks:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append({"check": name, "ok": bool(ok), "detail": detail})
        return ok

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.items)


def verify(cfg: VerifyConfig) -> VerifyResult:
    """Check the plan's outputs; write verify-report.{json,md,png}; ok is False when any check fails."""
    plan, plan_sha = load_plan(cfg.plan)
    concat = plan["concat_tokens"]
    folder = resolve_tokenizer_dir(plan["tokenizer"]["name"], plan["tokenizer"].get("revision"))
    encoder = Encoder(folder, "<|begin_of_text|>", "<|end_of_text|>")
    checks = {s["name"]: _Checks() for s in plan["subsets"]}
    manifests: dict[str, dict | None] = {}
    jobs = []
    for sub in plan["subsets"]:
        c, manifest = checks[sub["name"]], read_manifest(sub["out_root"])
        manifests[sub["name"]] = manifest
        if not c.add("manifest", manifest is not None, "" if manifest else f"no valid manifest at {sub['out_root']}"):
            continue
        c.add("fingerprint", manifest["fingerprint"] == sub["fingerprint"],
              f"manifest {manifest['fingerprint'][:12]}, plan {sub['fingerprint'][:12]}")
        c.add("concat_tokens", manifest["concat_tokens"] == concat, f"manifest {manifest['concat_tokens']}")
        for split in SPLITS:
            url = join(sub["out_root"], split)
            index = read_index(url)
            if not c.add(f"index:{split}", index is not None, "" if index else f"no readable {url}/index.json"):
                continue
            listed = sum(s["samples"] for s in index["shards"])
            expected = manifest["splits"][split]["samples"]
            c.add(f"count:{split}", listed == expected, f"index lists {listed} samples, manifest says {expected}")
            spots = _spread(len(index["shards"]), cfg.spot_checks)
            for number, shard in enumerate(index["shards"]):
                jobs.append((sub["name"], split, url, shard, concat, encoder.vocab_size, int(number in spots)))
    _check_shards(jobs, checks, cfg.num_workers, encoder)
    for sub in plan["subsets"]:
        if manifests[sub["name"]] is not None:
            _check_budgets(sub, manifests[sub["name"]], checks[sub["name"]], plan)
    report = _report(plan, plan_sha, cfg.plan, manifests, checks)
    if cfg.save_root:
        report["finished_training"] = find_finished_run(cfg.save_root, plan["fingerprint"])
    report_dir = cfg.report_dir or _beside(cfg.plan)
    paths = write_report(report, report_dir)
    return VerifyResult(report["ok"], report, paths)


def _spread(count: int, picks: int) -> set[int]:
    """Up to ``picks`` shard numbers spread evenly over ``count`` shards (one spot-checked row each)."""
    if count == 0 or picks == 0:
        return set()
    return {round(i * (count - 1) / max(picks - 1, 1)) for i in range(min(picks, count))}


def _beside(location: str) -> str:
    if is_remote(location):
        return location.rsplit("/", 1)[0]
    return str(PurePosixPath(location).parent)


def _check_shards(jobs: list[tuple], checks: dict[str, _Checks], workers: int, encoder: Encoder) -> None:
    results: dict[tuple[str, str], list[ShardCheck]] = {}
    if workers and len(jobs) > 1:
        try:
            with process_pool(min(workers, len(jobs))) as pool:
                outcomes = list(pool.map(_shard_job, jobs))
        except BrokenProcessPool as exc:
            raise RuntimeError("a shard-reading worker died (killed, or out of memory?); safe to retry") from exc
    else:
        outcomes = [_shard_job(job) for job in jobs]
    for subset, split, shard in outcomes:
        results.setdefault((subset, split), []).append(shard)
    for (subset, split), shards in results.items():
        problems = [p for s in shards for p in s.problems]
        c = checks[subset]
        c.add(f"shards:{split}", not problems, "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        rows = [r for s in shards for r in s.sample_rows]
        if split == "train" and rows:  # no readable row: the shards check has already failed
            texts = [_decode(encoder, r) for r in rows]
            readable = [t for t in texts if t.strip() and t.count("\ufffd") <= len(t) // 100]
            c.add("decode", bool(rows) and len(readable) == len(rows),
                  f"{len(readable)} of {len(rows)} spot-checked rows decode to text")


def _decode(encoder: Encoder, row: list[int]) -> str:
    """The row's text, or "" when the tokenizer cannot decode it."""
    try:
        return encoder.decode(row)
    except (KeyError, ValueError, OverflowError):
        return ""


def _check_budgets(sub: dict, manifest: dict, c: _Checks, plan: dict) -> None:
    concat, allow_short = plan["concat_tokens"], plan.get("allow_short", False)
    exhausted = manifest.get("exhausted", False)
    for split, rows in (("train", sub["train_rows"]), ("val", sub["val_rows"])):
        got = manifest["splits"][split]["tokens"]
        want = rows * concat
        if got == want:
            c.add(f"budget:{split}", True, f"{got:,} tokens")
        elif exhausted and got < want:
            c.add(f"budget:{split}", allow_short, f"source ran out: {got:,} of {want:,} tokens"
                  + ("" if allow_short else " (the plan does not allow short subsets)"))
        else:
            c.add(f"budget:{split}", False, f"{got:,} tokens, plan wants {want:,}")
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    disjoint = not val["samples"] or (val["first_document"] is not None and train["last_document"] is not None
                                      and val["first_document"] > train["last_document"])
    c.add("disjoint", disjoint, f"train documents ..{train['last_document']}, val from {val['first_document']}")
    # an overridden subset's share is its own budget; every other one's is proportion × total
    target = sub["max_tokens"] if sub.get("overridden") else sub["proportion"] * plan["total_tokens"]
    off = abs(train["tokens"] - target)
    if not (exhausted and allow_short):
        c.add("mix", off < concat, f"{train['tokens']:,} train tokens vs {target:,.0f} planned "
                                   f"({off / concat:.2f} rows off)")


def _report(plan: dict, plan_sha: str, plan_path: str, manifests: dict, checks: dict[str, _Checks]) -> dict:
    realized_total = sum(m["splits"]["train"]["tokens"] for m in manifests.values() if m)
    subsets = []
    for sub in plan["subsets"]:
        m, c = manifests[sub["name"]], checks[sub["name"]]
        short = bool(m and m.get("exhausted"))
        status = "failed" if not c.ok else ("short" if short else "ok")
        train = m["splits"]["train"] if m else {}
        subsets.append({
            "name": sub["name"], "status": status, "fingerprint": sub["fingerprint"], "out_root": sub["out_root"],
            "manifest": join(sub["out_root"], "manifest.json"), "proportion": sub["proportion"],
            "planned_train_tokens": sub["train_rows"] * plan["concat_tokens"],
            "train_tokens": train.get("tokens", 0), "val_tokens": m["splits"]["val"]["tokens"] if m else 0,
            "share": train.get("tokens", 0) / realized_total if realized_total else 0.0,
            "documents": {s: m["splits"][s]["documents"] for s in SPLITS} if m else None,
            "exhausted": short, "checks": c.items,
        })
    return {
        "format": REPORT_FORMAT,
        "ok": all(c.ok for c in checks.values()),
        "plan": {"path": plan_path, "sha256": plan_sha, "fingerprint": plan["fingerprint"]},
        "mix": plan["mix"]["name"], "concat_tokens": plan["concat_tokens"], "tokenizer": plan["tokenizer"],
        "total_tokens": plan["total_tokens"], "realized_train_tokens": realized_total,
        "subsets": subsets,
        "created_at": datetime.now(timezone.utc).isoformat(), "code_version": __version__,
    }


def summarize_result(result: VerifyResult) -> dict:
    """The JSON-ready result the DAG keeps (XCom): verdict, report location, and each subset's counts."""
    report = result.report
    return {
        "ok": result.ok, "report": result.paths["json"], "report_md": result.paths["md"],
        "plan": report["plan"]["path"], "plan_fingerprint": report["plan"]["fingerprint"],
        "realized_train_tokens": report["realized_train_tokens"],
        "finished_training": report.get("finished_training"),
        "subsets": {s["name"]: {k: s[k] for k in ("status", "fingerprint", "out_root", "manifest", "train_tokens",
                                                  "val_tokens", "proportion")} for s in report["subsets"]},
    }

