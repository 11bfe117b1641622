"""The run layer that the train and evaluate jobs stand on (light core at import: no torch here).

``status``: where a training run lives, how far it got, and the plan's finished-run pointer; ``completion``: the
one test of "already done" (a valid completion marker that belongs to this work; the convert job's too);
``staging``: the checked inputs of a run (verification report, data, tokenizer, models staged locally, the
HF-export check); ``workers``: start the worker processes, then read their typed result file or raise;
``log``: one ``say()`` with the job's own tag; ``scratch``: the local scratch root; ``foundry_pieces``: the
LLM-Foundry YAML pieces both jobs write; ``versions``: the code that ran. MLflow lives in ``cpt_tasks.tracking``.
"""
