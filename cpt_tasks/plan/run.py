"""``plan(cfg) -> Plan``: derive every subset's budgets, fingerprint, location and converter argv.

The fingerprint of each subset is the converter's own (``cpt_tasks.convert.manifest.fingerprint``) over the
exact ``ConvertConfig`` its argv parses to, so the same inputs always give the same location, a converted
location is recognised as up to date, and ``verify`` can demand that each manifest carries it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from datetime import datetime, timezone

from cpt_tasks import __version__
from cpt_tasks.convert.config import ConvertConfig
from cpt_tasks.convert.manifest import fingerprint
from cpt_tasks.convert.sources import resolve_source
from cpt_tasks.errors import UserError
from cpt_tasks.mix import Mix, check_proportions, load_mix, subset_budgets, val_budget
from cpt_tasks.plan.config import PlanConfig
from cpt_tasks.storage import join, read_document
from cpt_tasks.tokenizer import Encoder, describe, hub_commit, resolve_tokenizer_dir

PLAN_FORMAT = "cpt-pipeline/plan/v1"
LOCATION_DIGITS = 16


def effective_mix(cfg: PlanConfig) -> tuple[Mix, dict[str, float]]:
    """The mix and the proportions this plan uses (replaced, restricted and renormalized as asked)."""
    mix = load_mix(cfg.mix)
    proportions = dict(mix.proportions)
    if cfg.proportions is not None:
        check_proportions(cfg.proportions, "--proportions")
        proportions = dict(cfg.proportions)
    if cfg.subsets is not None:
        unknown = [s for s in cfg.subsets if s not in proportions]
        if unknown:
            raise UserError(f"--subsets: unknown subset(s) {', '.join(unknown)}; the mix has "
                            f"{', '.join(proportions)}")
        kept = sum(proportions[s] for s in cfg.subsets)
        proportions = {s: proportions[s] / kept for s in cfg.subsets}
    unknown = sorted(set(cfg.overrides or {}) - set(proportions))
    if unknown:
        raise UserError(f"--overrides: unknown subset(s) {', '.join(unknown)}")
    return mix, proportions


def convert_argv(conv: ConvertConfig) -> list[str]:
    """The `cpt-tasks convert` command line that parses back to exactly ``conv``."""
    argv = ["cpt-tasks", "convert", "--dataset", conv.dataset, "--data_subset", conv.data_subset or "",
            "--out_root", conv.out_root, "--tokenizer", conv.tokenizer, "--splits", *conv.splits,
            "--concat_tokens", str(conv.concat_tokens), "--max_tokens", str(conv.max_tokens),
            "--val_tokens", str(conv.val_tokens), "--shuffle" if conv.shuffle else "--no-shuffle",
            "--seed", str(conv.seed)]
    if conv.revision:
        argv += ["--revision", conv.revision]
    if conv.tokenizer_revision:
        argv += ["--tokenizer_revision", conv.tokenizer_revision]
    if "num_workers" in conv.model_fields_set:
        argv += ["--num_workers", str(conv.num_workers)]
    return argv


def planned_config(subset: dict) -> ConvertConfig:
    """The ConvertConfig that a subset's planned argv gives, parsed by the CLI exactly as a pod parses it."""
    from cpt_tasks.cli import build_parser
    from cpt_tasks.cli_args import build_config

    return build_config(ConvertConfig, build_parser().parse_args(subset["argv"][1:]))


def load_plan(location: str) -> tuple[dict, str]:
    """The plan at ``location`` and its sha256; UserError when missing or not a plan."""
    return read_document(location, "--plan", PLAN_FORMAT, "a cpt-pipeline plan")


def planned_subset(location: str, subset: str, num_workers: int | None = None) -> ConvertConfig:
    """The ConvertConfig of one subset of the plan at ``location`` (UserError naming an unplanned subset)."""
    body, _ = load_plan(location)
    entries = {s["name"]: s for s in body["subsets"]}
    if subset not in entries:
        raise UserError(f"--subset {subset}: not in the plan {location} (planned: {', '.join(entries)})")
    cfg = planned_config(entries[subset])
    return cfg if num_workers is None else cfg.model_copy(update={"num_workers": num_workers})


def plan_entries(body: dict, location: str | None) -> list[dict]:
    """One entry per planned subset (what the DAG maps its conversions over): name, budgets, location."""
    return [{"subset": s["name"], "plan": location, "plan_fingerprint": body["fingerprint"],
             "fingerprint": s["fingerprint"], "out_root": s["out_root"], "max_tokens": s["max_tokens"],
             "val_tokens": s["val_tokens"], "dataset": body["dataset"]} for s in body["subsets"]]


def plan(cfg: PlanConfig) -> dict:
    """The plan (a JSON-ready dict); UserError for an impossible one."""
    mix, proportions = effective_mix(cfg)
    dataset = cfg.dataset or mix.dataset
    if not dataset:
        raise UserError(f"--dataset: mix {mix.name} names no dataset; pass --dataset")
    budgets = subset_budgets(cfg.total_tokens, cfg.val_fraction, proportions)
    folder = resolve_tokenizer_dir(cfg.tokenizer, cfg.tokenizer_revision)
    tokenizer_commit = hub_commit(folder)  # every conversion and the verification use exactly these files
    tok = describe(cfg.tokenizer, folder, Encoder(folder, "<|begin_of_text|>", "<|end_of_text|>"))
    subsets = []
    for name, (max_tokens, val_tokens) in budgets.items():
        override = (cfg.overrides or {}).get(name)
        if override is not None:
            if override.max_tokens is not None:
                max_tokens = override.max_tokens
                val_tokens = val_budget(max_tokens, cfg.val_fraction)
            if override.val_tokens is not None:
                val_tokens = override.val_tokens
        if max_tokens < cfg.concat_tokens:
            raise UserError(f"subset {name}: train budget {max_tokens:,} tokens is smaller than one row of "
                            f"{cfg.concat_tokens}; raise --total_tokens or its proportion")
        if 0 < val_tokens < cfg.concat_tokens:
            raise UserError(f"subset {name}: val budget {val_tokens:,} tokens is smaller than one row of "
                            f"{cfg.concat_tokens}; raise --val_fraction, or set it to 0 for no val")
        source = resolve_source(dataset, name, "train", cfg.revision)
        extra = {"num_workers": cfg.num_workers} if cfg.num_workers is not None else {}
        conv = ConvertConfig(dataset=dataset, data_subset=name, revision=source.revision, out_root="-",
                             tokenizer=cfg.tokenizer, tokenizer_revision=tokenizer_commit,
                             concat_tokens=cfg.concat_tokens, max_tokens=max_tokens, val_tokens=val_tokens,
                             shuffle=cfg.shuffle, seed=cfg.seed, **extra)
        fp = fingerprint(conv, source, tok)
        conv = conv.model_copy(update={"out_root": join(cfg.out_root, mix.name, fp[:LOCATION_DIGITS], name)})
        subsets.append({
            "name": name, "proportion": proportions[name], "max_tokens": max_tokens, "val_tokens": val_tokens,
            "overridden": override is not None,
            "train_rows": max_tokens // cfg.concat_tokens, "val_rows": val_tokens // cfg.concat_tokens,
            "fingerprint": fp, "out_root": conv.out_root, "source_files": len(source.files),
            "source_bytes": source.total_bytes, "argv": convert_argv(conv),
        })
    body = {
        "format": PLAN_FORMAT,
        "mix": {"name": mix.name, "version": mix.version, "proportions": proportions,
                "renormalized": cfg.subsets is not None},
        "dataset": dataset, "revision": cfg.revision,
        "tokenizer": {"name": tok.name, "revision": tokenizer_commit, "sha256": tok.sha256},
        "total_tokens": cfg.total_tokens, "val_fraction": cfg.val_fraction, "concat_tokens": cfg.concat_tokens,
        "seed": cfg.seed, "shuffle": cfg.shuffle, "allow_short": cfg.allow_short, "root": cfg.out_root,
        "subsets": subsets,
    }
    body["fingerprint"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    body["created_at"] = datetime.now(timezone.utc).isoformat()
    body["code_version"] = __version__
    return body


def format_plan(body: dict) -> str:
    """A readable table of the plan."""
    lines = [f"plan {body['fingerprint'][:12]}: {body['total_tokens']:,} train tokens, mix {body['mix']['name']}, "
             f"concat {body['concat_tokens']}",
             f"{'subset':<14}{'proportion':>11}{'max_tokens':>17}{'val_tokens':>13}  out_root"]
    for s in body["subsets"]:
        lines.append(f"{s['name']:<14}{s['proportion']:>11.4g}{s['max_tokens']:>17,}{s['val_tokens']:>13,}  "
                     f"{s['out_root']}")
    lines += ["", "commands:"] + [shlex.join(s["argv"]) for s in body["subsets"]]
    return "\n".join(lines)
