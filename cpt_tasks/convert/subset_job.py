"""``cpt-tasks convert-subset``: one planned subset, or one part of a subset converted in parts, converted exactly
as the plan stored it; the last part to finish merges the parts (``cpt_tasks.data.merged_parts``)."""

from __future__ import annotations

from cpt_tasks.configs.convert_config import ConvertConfig, ConvertSubsetConfig
from cpt_tasks.convert.convert_job import convert, format_summary, summarize_result
from cpt_tasks.data.merged_parts import merge_subset
from cpt_tasks.documents.plan_docs import load_plan
from cpt_tasks.errors import EXIT_OK
from cpt_tasks.jobs import Outcome


def planned_subset(location: str, subset: str, num_workers: int | None = None, part: int = 0) -> ConvertConfig:
    """The ConvertConfig of one subset (or one part of it) of the plan at ``location`` (UserError naming an
    unplanned subset or part)."""
    return with_workers(load_plan(location)[0].subset(subset, location).part_config(part), num_workers)


def with_workers(cfg: ConvertConfig, num_workers: int | None) -> ConvertConfig:
    """``cfg`` with ``--num_workers`` overridden when given."""
    return cfg if num_workers is None else cfg.model_copy(update={"num_workers": num_workers})


def preview_subset(cfg: ConvertSubsetConfig) -> ConvertConfig:
    """What ``convert-subset --dry-run`` prints: the subset's (or part's) ConvertConfig, exactly as the plan
    stored it."""
    return planned_subset(cfg.plan, cfg.subset, cfg.num_workers, cfg.part)


def command_subset(cfg: ConvertSubsetConfig) -> Outcome:
    """``cpt-tasks convert-subset``: one subset (or part) of a plan, exactly as planned; ``already_complete_exit``
    when it was converted before (the DAG marks the task skipped). The last part of a subset in parts to finish
    merges the parts."""
    sub = load_plan(cfg.plan)[0].subset(cfg.subset, cfg.plan)
    result = convert(with_workers(sub.part_config(cfg.part), cfg.num_workers))
    print(format_summary(result))
    if sub.parts:  # after this part's own manifest: the last part to finish sees every other one's
        merged = merge_subset(sub)
        print(f"{sub.name}: all {sub.part_count} parts converted; merged index and manifest at {sub.out_root}"
              if merged else f"{sub.name}: part {cfg.part} of {sub.part_count} done; the last part to finish merges")
    done_before = result.already_complete and cfg.already_complete_exit
    return Outcome(summarize_result(result, cfg.subset), cfg.already_complete_exit if done_before else EXIT_OK)
