"""A plan's ``corpus_key``: one sha256 naming a domain corpus with the replay mix and the tokenizer beside it.

A replay sweep (the DAG ``cpt_replay_sweep``) keeps its recommendation under this key
(``<sweeps_root>/<corpus_key>.json``) and ``replay_fraction: "recommended"`` finds it by the same key, so the key
holds what decides how much replay the corpus needs and nothing about one run's size: not ``total_tokens``,
``replay_fraction``, ``concat_tokens``, the val split, the seed or the sweep. The recipe is the sha256 of the
canonical JSON (sorted keys, no spaces) of::

    {"recipe": 1,
     "corpus": {"source": {"files": [{"path", "size", "digest", "algorithm"}, ...]}
                          or, for a source without files (a Hub dataset read through ``datasets``),
                          {"dataset": <hub id>, "revision": <commit>},
                "subset": --domain_subset, "text_field": --domain_text_field},
     "mix": {"name", "version", "proportions": the plan's (after --proportions/--subsets)},
     "tokenizer": <the plan's tokenizer sha256>}

The files are the resolved source's listing as the conversion and its fingerprint record it (path relative to the
corpus's root, size, digest and the digest's algorithm), so the same files give the same key wherever they lie
(a local copy, an object-storage prefix).
"""

from __future__ import annotations

import hashlib
import json

from cpt_tasks.data.sources import Source

CORPUS_KEY_RECIPE = 1  # bump when the recipe changes (older sweeps' pointers then no longer match)


def source_identity(source: Source) -> dict:
    """What identifies a resolved corpus: its files' listing, or a file-less source's id and pinned revision."""
    if source.files:
        return {"files": [{"path": f.rel, "size": f.size, "digest": f.sha256, "algorithm": f.algorithm}
                          for f in source.files]}
    return {"dataset": source.dataset, "revision": source.revision}


def corpus_key(source: Source, subset: str | None, text_field: str, mix_name: str, mix_version: int,
               proportions: dict[str, float], tokenizer_sha256: str) -> str:
    """The corpus key (module docstring) of a resolved domain ``source`` read from ``subset``'s ``text_field``,
    beside the mix ``mix_name`` (``mix_version``, ``proportions``), tokenized by ``tokenizer_sha256``."""
    body = {"recipe": CORPUS_KEY_RECIPE,
            "corpus": {"source": source_identity(source), "subset": subset, "text_field": text_field},
            "mix": {"name": mix_name, "version": mix_version, "proportions": dict(proportions)},
            "tokenizer": tokenizer_sha256}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
