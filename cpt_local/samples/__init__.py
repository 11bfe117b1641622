"""What ``make setup`` writes for the demo and the tests, from text on this machine (nothing from the Hub): the
Dolmino-shaped sample (``sample_mix``), a code corpus unlike it (``code_corpus``), the small test tokenizer
(``small_tokenizer``) and a tiny random Llama (``tiny_model``); ``samples_cli`` is their command, ``cpt-samples``.
"""
