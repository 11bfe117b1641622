"""The verify job: check every planned subset's output against the plan before any GPU is spent.

Its config is ``cpt_tasks.configs.verify_config.VerifyConfig``; ``run.verify`` is the job.
"""
