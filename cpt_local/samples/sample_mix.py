"""The bundled sample: six small Dolmino-shaped subsets generated from real English text on every machine.

Text comes from the Python standard library itself — docstrings read with ``ast`` (no module is imported)
and the language reference topics in ``pydoc_data`` — framed per subset the way the real subsets look
(web pages, instructions, papers, encyclopedia articles, Q&A, math). Records carry the Dolmino fields
(``id``, ``text``, ``source``, ``added``, ``created``, ``metadata``) and land in the hub's layout
``data/<subset>/<NNNN>/<subset>-<NNNN>.json.zst`` (JSON lines, zstd). Output is deterministic for a given
Python version. As in real web text, one dclm page quotes ``<|end_of_text|>`` literally and one dclm
record is blank (the converter encodes the first as text and skips the second).
"""

from __future__ import annotations

import ast
import hashlib
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import zstandard

SUBSETS = ("dclm", "flan", "pes2o", "wiki", "stackexchange", "math")
FILES_PER_SUBSET = 2
VERSION = "1"
STAMP = "2024-11-24T00:00:00Z"
MATH_MODULES = ("math", "cmath", "statistics", "fractions", "decimal", "random", "numbers", "_pydecimal",
                "_pylong", "colorsys", "bisect", "heapq")
SKIPPED = ("site-packages", "test", "idlelib", "lib2to3", "tkinter")  # stdlib folders no sample is made from


def stdlib_modules(skipped: tuple[str, ...] = SKIPPED) -> Iterator[tuple[Path, ast.Module]]:
    """(path below the stdlib, parsed source) of every stdlib module that parses, in path order, leaving out the
    top-level folders ``skipped`` and every ``tests`` folder (nothing is imported)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in skipped or "tests" in rel.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        yield rel, tree


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for rel, tree in stdlib_modules():
        yield ".".join(rel.with_suffix("").parts).removesuffix(".__init__"), tree


def _docstrings(tree: ast.Module) -> Iterator[tuple[str, str, str]]:
    """(kind, name, docstring) of the module's classes and functions, in source order."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 80 and not node.name.startswith("_"):
                yield ("class" if isinstance(node, ast.ClassDef) else "function"), node.name, doc


def _collect() -> list[dict]:
    modules = []
    for name, tree in _modules():
        members = list(_docstrings(tree))
        doc = ast.get_docstring(tree) or ""
        if len(doc) > 200 or len(members) >= 3:
            modules.append({"name": name, "doc": doc, "members": members})
    return modules


def _records(subset: str, modules: list[dict]) -> Iterator[str]:
    if subset == "wiki":
        from pydoc_data.topics import topics

        for key in sorted(topics):
            yield f"{key.replace('-', ' ').title()}\n\n{topics[key].strip()}"
        return
    for index, mod in enumerate(modules):
        name, doc, members = mod["name"], mod["doc"], mod["members"]
        if subset == "dclm":
            body = "\n\n".join(f"{n}\n{d}" for _, n, d in members[:12])
            yield f"{name} — Python documentation\n\n{doc}\n\n{body}".strip()
        elif subset == "flan":
            for kind, n, d in members[:6]:
                yield f"Instruction: Explain what the {kind} `{name}.{n}` does.\n\nResponse: {d}"
        elif subset == "pes2o" and len(doc) > 400:
            classes = "\n\n".join(d for kind, _, d in members if kind == "class")
            yield f"Title: On the design of the {name} module\n\nAbstract: {doc}\n\n{classes}".strip()
        elif subset == "stackexchange":
            for kind, n, d in members[3:9]:
                yield (f"Question: How do I use {n} from {name}, and what should I watch out for?\n\n"
                       f"Answer: According to the documentation of the {kind}:\n\n{d}")
        elif subset == "math" and (name.split(".")[0] in MATH_MODULES or index % 5 == 0):
            for _, n, d in members:
                a, b = (len(n) * 37 + index) % 997, (len(d) * 13) % 89 + 2
                yield (f"{d}\n\nProblem: compute {a} * {b} + {a} // {b}.\n"
                       f"Solution: {a} * {b} = {a * b}; {a} // {b} = {a // b}; the sum is {a * b + a // b}.")


def _record(subset: str, number: int, text: str) -> bytes:
    digest = hashlib.sha1(f"{subset}:{number}:{text}".encode()).hexdigest()
    record = {"id": digest, "text": text, "source": subset, "added": STAMP, "created": STAMP,
              "metadata": {"origin": "python-stdlib", "license": "PSF-2.0", "sample_version": VERSION}}
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def write_sample(out: Path) -> str:
    """Write the six subsets under ``out/data/``; returns a one-line summary per subset."""
    modules = _collect()
    summary = []
    for subset in SUBSETS:
        texts = list(_records(subset, modules))
        if subset == "dclm":
            texts.insert(3, "Tokenizers mark the end of a document with a special token; in Llama 3 it is "
                            "written <|end_of_text|> and must never be produced from plain text.")
            texts.insert(5, "   \n ")
        per_file = -(-len(texts) // FILES_PER_SUBSET)
        total = 0
        for part in range(FILES_PER_SUBSET):
            lines = b"".join(_record(subset, part * per_file + i, t)
                             for i, t in enumerate(texts[part * per_file:(part + 1) * per_file]))
            path = out / "data" / subset / f"{part:04d}" / f"{subset}-{part:04d}.json.zst"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zstandard.ZstdCompressor(level=9).compress(lines))
            total += len(lines)
        summary.append(f"{subset}: {len(texts)} documents, {total / 1e6:.2f} MB of JSON lines")
    (out / ".complete").write_text(VERSION + "\n")
    return "\n".join(summary)
