"""The document framing of the Llama 3 family: the special tokens put around every document.

Light core (no imports): the configs name these strings as defaults, the tokenizer builds its framing from them.
"""

LLAMA3_BOS, LLAMA3_EOS = "<|begin_of_text|>", "<|end_of_text|>"  # Llama 3's document framing tokens
