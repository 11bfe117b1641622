"""The plan job: one total budget and a mix -> per-subset budgets, locations and converter command lines.

Its config is ``cpt_tasks.configs.plan_config.PlanConfig``; ``plan_job.plan`` is the job (``plan_components``: the
mix's and the domain's components; ``domain``: the user's corpus; ``corpus_identity``: the corpus key;
``sweep_budgets``: a replay sweep's budgets and draws; ``recommended_fraction``: replay_fraction 'recommended';
``plan_table``: the printed table).
"""
