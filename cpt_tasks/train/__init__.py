"""``cpt-tasks train``: continual pretraining with LLM-Foundry on a verified mix, resumable on retry.

Its config is ``cpt_tasks.configs.train_config``; run folders and finished runs are ``cpt_tasks.runs.status``;
``train_job.train`` is the job; ``train_worker`` and ``foundry_plugins`` run inside the training
processes.
"""
