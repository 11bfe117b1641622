"""The plan job: one total budget and a mix -> per-subset budgets, locations and converter command lines."""

from cpt_tasks.plan.config import PlanConfig

__all__ = ["PlanConfig"]
