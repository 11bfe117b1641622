"""``cpt-tasks train``: continual pretraining with LLM-Foundry on a verified mix, resumable on retry.

Its config is ``cpt_tasks.configs.train``; ``status`` is light core (no torch); ``run.train`` is the job;
``worker`` and ``components`` run inside the training processes.
"""
