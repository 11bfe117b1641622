"""The plan job: one total budget and a mix -> per-subset budgets, locations and converter command lines.

Its config is ``cpt_tasks.configs.plan_config.PlanConfig``; ``run.plan`` is the job.
"""
