"""The verify job: check every planned subset's output against the plan before any GPU is spent.

Its config is ``cpt_tasks.configs.verify_config.VerifyConfig``; ``verify_job.verify`` is the job.
"""
