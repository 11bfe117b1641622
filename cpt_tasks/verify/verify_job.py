"""``verify(cfg) -> VerifyResult``: every planned subset's manifest, shards, rows, budgets and the realized
mix, checked against the plan; writes the report that the training step reads.

A subset passes when: its manifest exists with the plan's fingerprint; every shard listed in each split's
index exists with the listed size and hash and the counts agree; every row holds exactly concat_tokens valid
ids; spot-checked rows decode; the documents are framed with the special tokens the conversion recorded (the
first row starts with its BOS id, and those ids are the tokenizer's for its BOS/EOS texts); train/val hold
floor(budget/concat) rows (or the source ran out and the plan allows short subsets; a corpus the plan only
estimated, converted val first: val exactly, train up to its budget, and its epochs, counted from its train rows,
within max_domain_epochs: :mod:`cpt_tasks.verify.epoch_checks`); train and val share no document; and its train
tokens are within one row of proportion × total_tokens. A subset converted in parts
(:mod:`cpt_tasks.verify.part_checks`): every part there with its planned fingerprint and share, no input file in
two parts, and the merged index listing exactly the parts' shards. A replay sweep's plan: every
proxy run's draw fits the converted rows (:mod:`cpt_tasks.verify.draw_checks`).
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from cpt_tasks import __version__
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.data.shards import ShardCheck, check_shard, read_index
from cpt_tasks.documents.convert_docs import ConvertManifest, manifest_location, read_manifest
from cpt_tasks.documents.plan_docs import Plan, PlannedSubset, PlanRef, load_plan
from cpt_tasks.documents.verify_docs import Check, SubsetReport, SubsetSummary, VerifyReport, VerifySummary
from cpt_tasks.errors import EXIT_CHECK_FAILED, EXIT_OK
from cpt_tasks.jobs import Outcome
from cpt_tasks.layout import SPLITS, TRAIN, VAL
from cpt_tasks.pool import process_pool
from cpt_tasks.runs.status import find_finished_run
from cpt_tasks.storage import is_remote, join
from cpt_tasks.tokenizer import Encoder, resolve_tokenizer_dir
from cpt_tasks.verify.draw_checks import check_draws
from cpt_tasks.verify.epoch_checks import check_epochs, may_repeat, real_epochs
from cpt_tasks.verify.part_checks import check_disjoint, check_parts, read_subset
from cpt_tasks.verify.verify_report import render_markdown, write_report


@dataclass
class VerifyResult:
    """The report and where it was written."""

    ok: bool
    report: VerifyReport
    paths: dict[str, str]


@dataclass(frozen=True)
class _ShardJob:
    subset: str
    split: str
    url: str
    shard: dict
    concat: int
    vocab: int
    keep: int


def _shard_job(job: _ShardJob) -> tuple[_ShardJob, ShardCheck]:
    return job, check_shard(job.url, job.shard, job.concat, job.vocab, job.keep)


class _Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(Check(check=name, ok=bool(ok), detail=detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.items)


class _Encoders:
    """The plan's tokenizer, loaded once per framing (BOS/EOS texts) that a conversion recorded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._loaded: dict[tuple[str, str], Encoder] = {}

    def get(self, bos_text: str, eos_text: str) -> Encoder:
        key = (bos_text, eos_text)
        if key not in self._loaded:
            self._loaded[key] = Encoder(self.folder, bos_text, eos_text)
        return self._loaded[key]


def verify(cfg: VerifyConfig) -> VerifyResult:
    """Check the plan's outputs; write verify-report.{json,md,png}; ok is False when any check fails."""
    plan, plan_sha = load_plan(cfg.plan)
    encoders = _Encoders(resolve_tokenizer_dir(plan.tokenizer.name, plan.tokenizer.revision))
    checks = {s.name: _Checks() for s in plan.subsets}
    manifests: dict[str, ConvertManifest | None] = {}
    jobs: list[_ShardJob] = []
    for sub in plan.subsets:
        manifest, parts, missing = read_subset(sub)  # a subset in parts: merged now if it was not yet
        manifests[sub.name] = manifest
        if checks[sub.name].add("manifest", manifest is not None,
                                "" if manifest else missing or f"no valid manifest at {sub.out_root}"):
            encoder = encoders.get(manifest.config.bos_text, manifest.config.eos_text)
            jobs += _check_manifest(sub, manifest, plan, checks[sub.name], encoder, cfg.spot_checks)
            check_disjoint(sub, manifest, parts, checks[sub.name].add)
            check_parts(sub, manifest, parts, plan.allow_short, checks[sub.name].add)
    shards = _check_shards(jobs, cfg.num_workers)
    for sub in plan.subsets:
        manifest = manifests[sub.name]
        if manifest is not None:
            encoder = encoders.get(manifest.config.bos_text, manifest.config.eos_text)
            _check_rows(sub.name, shards, checks[sub.name], encoder, manifest)
            _check_budgets(sub, manifest, checks[sub.name], plan)
    check_draws(plan, manifests, checks)  # a replay sweep's plan: every proxy run's draw fits
    report = _report(plan, plan_sha, cfg.plan, manifests, checks)
    paths = write_report(report, cfg.report_dir or _beside(cfg.plan))
    return VerifyResult(report.ok, report, paths)


def _check_manifest(sub: PlannedSubset, manifest: ConvertManifest, plan: Plan, c: _Checks, encoder: Encoder,
                    spot_checks: int) -> list[_ShardJob]:
    """The manifest's own checks and the shard-reading jobs of its splits."""
    c.add("fingerprint", manifest.fingerprint == sub.fingerprint,
          f"manifest {manifest.fingerprint[:12]}, plan {sub.fingerprint[:12]}")
    c.add("concat_tokens", manifest.concat_tokens == plan.concat_tokens, f"manifest {manifest.concat_tokens}")
    framing = manifest.framing
    c.add("framing:ids", (framing.bos_id, framing.eos_id) == (encoder.bos_id, encoder.eos_id),
          f"manifest BOS/EOS ids {framing.bos_id}/{framing.eos_id}, the tokenizer's for "
          f"{framing.bos_text!r}/{framing.eos_text!r}: {encoder.bos_id}/{encoder.eos_id}")
    jobs = []
    for split in SPLITS:
        url = join(sub.out_root, split)
        index = read_index(url)
        if not c.add(f"index:{split}", index is not None, "" if index else f"no readable {url}/index.json"):
            continue
        listed = sum(s["samples"] for s in index["shards"])
        expected = manifest.splits[split].samples
        c.add(f"count:{split}", listed == expected, f"index lists {listed} samples, manifest says {expected}")
        spots = _spread(len(index["shards"]), spot_checks)
        for number, shard in enumerate(index["shards"]):
            jobs.append(_ShardJob(sub.name, split, url, shard, plan.concat_tokens, encoder.vocab_size,
                                  int(number in spots)))
    return jobs


def _spread(count: int, picks: int) -> set[int]:
    """Up to ``picks`` shard numbers spread evenly over ``count`` shards (one spot-checked row each; the first
    shard is always one, so the split's first row is read)."""
    if count == 0 or picks == 0:
        return set()
    return {round(i * (count - 1) / max(picks - 1, 1)) for i in range(min(picks, count))}


def _beside(location: str) -> str:
    if is_remote(location):
        return location.rsplit("/", 1)[0]
    return str(PurePosixPath(location).parent)


def _check_shards(jobs: list[_ShardJob], workers: int) -> dict[tuple[str, str], list[ShardCheck]]:
    """Every listed shard read back (in worker processes): (subset, split) -> its shards' outcomes, in order."""
    if workers and len(jobs) > 1:
        try:
            with process_pool(min(workers, len(jobs))) as pool:
                outcomes = list(pool.map(_shard_job, jobs))
        except BrokenProcessPool as exc:
            raise RuntimeError("a shard-reading worker died (killed, or out of memory?); safe to retry") from exc
    else:
        outcomes = [_shard_job(job) for job in jobs]
    results: dict[tuple[str, str], list[ShardCheck]] = {}
    for job, shard in outcomes:
        results.setdefault((job.subset, job.split), []).append(shard)
    return results


def _check_rows(subset: str, shards: dict[tuple[str, str], list[ShardCheck]], c: _Checks, encoder: Encoder,
                manifest: ConvertManifest) -> None:
    for split in SPLITS:
        found = shards.get((subset, split))
        if found is None:
            continue
        problems = [p for s in found for p in s.problems]
        c.add(f"shards:{split}", not problems, "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        rows = [r for s in found for r in s.sample_rows]
        if split != TRAIN or not rows:  # no readable row: the shards check has already failed
            continue
        texts = [_decode(encoder, r) for r in rows]
        readable = [t for t in texts if t.strip() and t.count("\ufffd") <= len(t) // 100]
        c.add("decode", len(readable) == len(rows), f"{len(readable)} of {len(rows)} spot-checked rows decode to text")
        first = found[0].sample_rows[0] if found[0].sample_rows else None
        if first is not None:
            bos = manifest.framing.bos_id
            c.add("framing:first_row", first[0] == bos,
                  f"the first train row starts with id {first[0]}, the recorded BOS id is {bos}")


def _decode(encoder: Encoder, row: list[int]) -> str:
    """The row's text, or "" when the tokenizer cannot decode it."""
    try:
        return encoder.decode(row)
    except (KeyError, ValueError, OverflowError):
        return ""


def _check_budgets(sub: PlannedSubset, manifest: ConvertManifest, c: _Checks, plan: Plan) -> None:
    exhausted, repeats = manifest.exhausted, may_repeat(sub)
    for split, rows in ((TRAIN, sub.train_rows), (VAL, sub.val_rows)):
        got = manifest.splits[split].tokens
        want = rows * plan.concat_tokens
        if got == want:
            c.add(f"budget:{split}", True, f"{got:,} tokens")
        elif repeats and split == TRAIN and exhausted and got < want:
            c.add(f"budget:{split}", True, f"source ran out as it may (the plan converted it val first): {got:,} "
                                           f"of {want:,} tokens, repeated in training (see epochs)")
        elif repeats and split == VAL and exhausted:
            c.add(f"budget:{split}", False, f"source ran out inside val: {got:,} of {want:,} tokens; the corpus "
                                            "is smaller than its val split: give more data or lower val_fraction")
        elif exhausted and got < want:
            c.add(f"budget:{split}", plan.allow_short, f"source ran out: {got:,} of {want:,} tokens"
                  + ("" if plan.allow_short else " (the plan does not allow short subsets)"))
        else:
            c.add(f"budget:{split}", False, f"{got:,} tokens, plan wants {want:,}")
    train = manifest.splits[TRAIN]
    # an overridden subset's share is its own budget; every other one's is proportion × total
    target = sub.max_tokens if sub.overridden else sub.proportion * plan.total_tokens
    trained = train.tokens if sub.repeat is None else sub.repeat.budget_rows * plan.concat_tokens
    off = abs(trained - target)
    if repeats or not (exhausted and plan.allow_short):
        c.add("mix", off < plan.concat_tokens, f"{trained:,} train tokens vs {target:,.0f} planned "
                                               f"({off / plan.concat_tokens:.2f} rows off)")
    if sub.repeat is not None:
        _check_epochs(sub, train.samples, c, plan)


def _check_epochs(sub: PlannedSubset, rows: int, c: _Checks, plan: Plan) -> None:
    """A repeated corpus: its budget's rows over the ``rows`` converted, within the plan's max_domain_epochs
    (:mod:`cpt_tasks.verify.epoch_checks`)."""
    check_epochs(sub, rows, plan.max_domain_epochs or 1.0, plan.concat_tokens, c.add)


def _report(plan: Plan, plan_sha: str, plan_path: str, manifests: dict[str, ConvertManifest | None],
            checks: dict[str, _Checks]) -> VerifyReport:
    """The report: each subset's unique train tokens (what its conversion wrote) and, for a repeated one, its
    epochs (counted from its converted rows when the plan only estimated them) and the tokens training draws
    (its budget's rows); shares are of those trained tokens, comparable with the plan's."""
    unique = {sub.name: m.splits[TRAIN].tokens if (m := manifests[sub.name]) else 0 for sub in plan.subsets}
    epochs = {sub.name: real_epochs(sub, manifests[sub.name]) for sub in plan.subsets}
    repeated = {sub.name: sub.repeat.budget_rows * plan.concat_tokens for sub in plan.subsets
                if sub.repeat and manifests[sub.name] and (not sub.repeat.estimated or epochs[sub.name] != 1.0)}
    # Streams' choose draws the budget's rows from a repeated one; one that filled its budget is not repeated
    trained_total = sum(repeated.get(name, tokens) for name, tokens in unique.items())
    subsets = []
    for sub in plan.subsets:
        m, c = manifests[sub.name], checks[sub.name]
        exhausted = bool(m and m.exhausted)
        short = exhausted and not may_repeat(sub)  # running out is what a corpus that may repeat may do
        trained = repeated.get(sub.name, unique[sub.name])
        subsets.append(SubsetReport(
            name=sub.name, status="failed" if not c.ok else ("short" if short else "ok"),
            fingerprint=sub.fingerprint, out_root=sub.out_root, manifest=manifest_location(sub.out_root),
            proportion=sub.proportion, planned_train_tokens=sub.train_rows * plan.concat_tokens,
            train_tokens=unique[sub.name], val_tokens=m.splits[VAL].tokens if m else 0,
            share=trained / trained_total if trained_total else 0.0,
            documents={s: m.splits[s].documents for s in SPLITS} if m else None, exhausted=exhausted,
            checks=c.items, role=sub.role, epochs=epochs[sub.name], trained_tokens=repeated.get(sub.name),
            planned_trained_tokens=sub.repeat.budget_rows * plan.concat_tokens if sub.repeat else None))
    return VerifyReport(
        ok=all(c.ok for c in checks.values()),
        plan=PlanRef(path=plan_path, sha256=plan_sha, fingerprint=plan.fingerprint), mix=plan.mix.name,
        concat_tokens=plan.concat_tokens, tokenizer=plan.tokenizer, total_tokens=plan.total_tokens,
        realized_train_tokens=sum(unique.values()), subsets=subsets,
        trained_tokens=trained_total if repeated else None,
        created_at=datetime.now(timezone.utc).isoformat(), code_version=__version__, sweep=plan.sweep)


def summarize_result(result: VerifyResult) -> VerifySummary:
    """The result the DAG keeps (XCom): verdict, report location, and each subset's counts."""
    report = result.report
    return VerifySummary(
        ok=result.ok, report=result.paths["json"], report_md=result.paths["md"], plan=report.plan.path,
        plan_fingerprint=report.plan.fingerprint, realized_train_tokens=report.realized_train_tokens,
        finished_training=None,  # the CLI adds the plan's finished run (the train gate's input)
        subsets={s.name: SubsetSummary(status=s.status, fingerprint=s.fingerprint, out_root=s.out_root,
                                       manifest=s.manifest, train_tokens=s.train_tokens, val_tokens=s.val_tokens,
                                       proportion=s.proportion, role=s.role, epochs=s.epochs)
                 for s in report.subsets})


def command(cfg: VerifyConfig) -> Outcome:
    """``cpt-tasks verify``: the report as Markdown and its paths; exit 3 when a check failed. With --save_root the
    result also names this plan's finished training run, if any: the train gate's input, looked up by the run
    layer in this (CPU) pod."""
    result = verify(cfg)
    print(render_markdown(result.report))
    print("report: " + ", ".join(result.paths.values()))
    summary = summarize_result(result)
    if cfg.save_root:
        summary.finished_training = find_finished_run(cfg.save_root, summary.plan_fingerprint)
    return Outcome(summary, EXIT_OK if result.ok else EXIT_CHECK_FAILED)
