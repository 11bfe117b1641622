"""``cpt-tasks convert-subset``: one planned subset, or one part of a subset converted in parts, converted exactly
as the plan stored it; the last part to finish merges the parts (``cpt_tasks.data.merged_parts``)."""

from __future__ import annotations

from cpt_tasks.configs.convert_config import ConvertConfig, ConvertSubsetConfig
from cpt_tasks.convert.convert_job import convert, format_summary, summarize_result
from cpt_tasks.data.merged_parts import merge_parts
from cpt_tasks.documents.convert_docs import ConvertManifest
from cpt_tasks.documents.plan_docs import PlannedSubset, load_plan
from cpt_tasks.errors import EXIT_OK
from cpt_tasks.jobs import Outcome


def planned_subset(location: str, subset: str, num_workers: int | None = None, part: int = 0) -> ConvertConfig:
    """The ConvertConfig of one subset (or one part of it) of the plan at ``location`` (UserError naming an
    unplanned subset or part)."""
    cfg = load_plan(location)[0].subset(subset, location).part_config(part)
    return cfg if num_workers is None else cfg.model_copy(update={"num_workers": num_workers})


def preview_subset(cfg: ConvertSubsetConfig) -> ConvertConfig:
    """What ``convert-subset --dry-run`` prints: the subset's (or part's) ConvertConfig, exactly as the plan
    stored it."""
    return planned_subset(cfg.plan, cfg.subset, cfg.num_workers, cfg.part)


def merge_when_complete(sub: PlannedSubset) -> ConvertManifest | None:
    """A subset in parts: its merged index and manifest once every part is there (None while one is missing).
    Each part tries after writing its own manifest, so the last one to finish merges (two at once write the same
    bytes)."""
    parts = [sub.part_config(i) for i in range(sub.part_count)]
    return merge_parts(sub.convert, sub.fingerprint, parts, [p.fingerprint for p in sub.parts])


def command_subset(cfg: ConvertSubsetConfig) -> Outcome:
    """``cpt-tasks convert-subset``: one subset (or part) of a plan, exactly as planned; ``already_complete_exit``
    when it was converted before (the DAG marks the task skipped). The last part of a subset in parts to finish
    merges the parts."""
    sub = load_plan(cfg.plan)[0].subset(cfg.subset, cfg.plan)
    conv = sub.part_config(cfg.part)
    result = convert(conv if cfg.num_workers is None else conv.model_copy(update={"num_workers": cfg.num_workers}))
    print(format_summary(result))
    if sub.parts:
        merged = merge_when_complete(sub)
        print(f"{sub.name}: all {sub.part_count} parts converted; merged index and manifest at {sub.out_root}"
              if merged else f"{sub.name}: part {cfg.part} of {sub.part_count} done; the last part to finish merges")
    done_before = result.already_complete and cfg.already_complete_exit
    return Outcome(summarize_result(result, cfg.subset), cfg.already_complete_exit if done_before else EXIT_OK)
