"""A small domain corpus for the continual-pretraining demo and tests, made from local text unlike the sample's.

``python``: the Python standard library's own source code, one document per top-level function or class with
its docstrings removed (``ast``; no module is imported), so it is code, not the English prose the Dolmino-shaped
sample is made of. Records are ``{"id", "path", "content"}`` (the text is in ``content``, as in code corpora
such as The Stack: the demo reads it with ``domain_text_field``) in JSON lines under ``<out>/<kind>-NNNN.jsonl``,
then ``<out>/.complete`` (written last). Output is deterministic for a given Python version.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from cpt_local.samples.sample_mix import SKIPPED as SAMPLE_SKIPPED
from cpt_local.samples.sample_mix import stdlib_modules

KINDS = ("python",)
COMPLETE = ".complete"  # written last: the corpus is whole
MAX_CHARS = 6000  # one function or class of ordinary size per document
SKIPPED = (*SAMPLE_SKIPPED, "turtledemo", "ensurepip")  # and the demos and bundled wheels


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]


def iter_python_code(limit: int) -> Iterator[tuple[str, str]]:
    """(module path, source) of up to ``limit`` stdlib top-level functions and classes, docstrings removed."""
    count = 0
    for rel, tree in stdlib_modules(SKIPPED):
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                _strip_docstrings(node)
                code = ast.unparse(node)
                if 200 <= len(code) <= MAX_CHARS:
                    yield f"{rel.as_posix()}:{node.name}", code
                    count += 1
                    if count >= limit:
                        return


def write_domain_sample(out: Path, kind: str = "python", documents: int = 2000, files: int = 2) -> str:
    """Write ``documents`` records of ``kind`` into ``files`` JSON-lines files under ``out``; a summary line."""
    if kind not in KINDS:
        raise ValueError(f"unknown domain sample {kind!r}; known: {', '.join(KINDS)}")
    records = [json.dumps({"id": hashlib.sha1(f"{where}\n{code}".encode()).hexdigest(), "path": where,
                           "content": code}, ensure_ascii=False) + "\n" for where, code in iter_python_code(documents)]
    staging = out.with_name(out.name + ".partial")  # a half-written corpus never looks complete
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    per_file = -(-len(records) // files)
    for part in range(files):
        (staging / f"{kind}-{part:04d}.jsonl").write_text("".join(records[part * per_file:(part + 1) * per_file]))
    (staging / COMPLETE).write_text(f"{len(records)}\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    size = sum(len(r.encode()) for r in records)
    return f"{kind}: {len(records)} documents, {size / 1e6:.2f} MB of JSON lines (text field 'content') in {out}"
