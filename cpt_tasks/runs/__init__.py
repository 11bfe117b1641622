"""The run layer that the train and evaluate jobs stand on (light core at import: no torch here).

``status``: where a training run lives, how far it got, and the plan's finished-run pointer; ``completion``: the
one test of "already done" (a valid completion marker that belongs to this work; the convert job's too);
``staging``: the checked inputs of a run (verification report, data, tokenizer, models staged locally, the
HF-export check); ``launch``: start the worker processes, then read their typed result file or raise;
``tracked``: the MLflow run finished FAILED on any exception; ``log``: one ``say()`` with the job's own tag;
``scratch``: the local scratch root; ``foundry_yaml``: the LLM-Foundry YAML pieces both jobs write;
``versions``: the code that ran; ``local_nodes``: several training nodes on one machine (the local runner's
multi-node path).
"""
