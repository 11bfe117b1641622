"""The documentation's runnable examples run as written.

A fenced block whose info string is ``bash runnable`` (in README.md, CONTRIBUTING.md or docs/*.md) is an example
meant to run on the sample after ``make setup``, typed in the repository. Each document's runnable blocks run in
order, each in its own ``bash -euo pipefail``, in one fresh directory set up like the repository after
``make setup``: ``.venv`` and ``.cpt`` link to the tasks environment and to ``$CPT_HOME`` (default ``<repo>/.cpt``),
``.venv/bin`` leads ``PATH``, ``CPT_HOME`` is exported and the Hub is offline. A block writes under ``build/`` or
another relative path of that directory (never under ``.cpt``, which is the real set-up), and may use what an
earlier block of the same document wrote there. A block that exits non-zero fails the test with its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
MARK = "runnable"
BLOCK_TIMEOUT = 300  # seconds; the examples take seconds, this only stops a hang
MUST_BE_MARKED = {"README.md": 1, "docs/continual-pretraining.md": 2}  # the steps by hand; the recipe, its loop


@dataclass(frozen=True)
class Block:
    """One runnable block: where it starts (1-based line of its opening fence) and its code."""

    document: str
    line: int
    code: str


def runnable_blocks(text: str, document: str = "<text>") -> list[Block]:
    """The ``bash runnable`` (or ``sh runnable``) fenced blocks of a markdown text, in order. A fence closes on a
    line of the same character at least as long, as CommonMark says; other fenced blocks are skipped whole."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        index += 1
        if not opening:
            continue
        fence, words, start, body = opening["fence"], opening["info"].split(), index, []
        while index < len(lines) and not re.match(rf"^{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[index]):
            body.append(lines[index])
            index += 1
        index += 1
        if words[:1] in (["bash"], ["sh"]) and MARK in words[1:]:
            blocks.append(Block(document, start, "\n".join(body) + "\n"))
    return blocks


def marked_blocks() -> dict[str, list[Block]]:
    """Every document that has runnable blocks -> its blocks."""
    found = {}
    for path in DOCUMENTS:
        name = str(path.relative_to(REPO))
        blocks = runnable_blocks(path.read_text(), name)
        if blocks:
            found[name] = blocks
    return found


def cpt_home() -> Path:
    return Path(os.environ.get("CPT_HOME", REPO / ".cpt")).resolve()


def workdir(root: Path) -> Path:
    """A directory laid out like the repository after ``make setup``, for the examples to run in."""
    venv, home = REPO / ".venv", cpt_home()
    missing = [str(p) for p in (venv / "bin" / "cpt-tasks", home / "sample" / "dolmino", home / "tokenizer" / "llama3")
               if not p.exists()]
    assert not missing, f"the examples need `make setup`'s outputs; missing: {', '.join(missing)}"
    root.mkdir(parents=True, exist_ok=True)
    (root / ".venv").symlink_to(venv, target_is_directory=True)
    (root / ".cpt").symlink_to(home, target_is_directory=True)
    return root


def example_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CPT_RESULT_FILE", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", CPT_HOME=str(cpt_home()),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def run_blocks(blocks: list[Block], cwd: Path, timeout: float = BLOCK_TIMEOUT) -> list[float]:
    """Run the blocks in order in ``cwd``; AssertionError naming the first that fails (document, line, exit
    status, the end of its output). Returns each block's seconds."""
    times = []
    for block in blocks:
        began = time.monotonic()
        try:
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=cwd, env=example_env(),
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{block.document}:{block.line}: the runnable example ran past {timeout} s") \
                from None
        times.append(time.monotonic() - began)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr)[-4000:]
            raise AssertionError(f"{block.document}:{block.line}: the runnable example exited {proc.returncode}\n"
                                 f"{block.code}\n--- its output (end) ---\n{output}")
    return times


def test_the_examples_that_must_run_are_marked():
    found = marked_blocks()
    assert found, "no ```bash runnable block in README.md, CONTRIBUTING.md or docs/*.md"
    for document, least in MUST_BE_MARKED.items():
        assert len(found.get(document, [])) >= least, f"{document}: mark its example(s) ```bash runnable"
    readme = "".join(b.code for b in found["README.md"])
    assert "convert-subset" in readme and "verify" in readme, "the README's steps by hand are not marked"


@pytest.mark.parametrize("document", sorted(marked_blocks()) or ["(none marked)"])
def test_runnable_examples_exit_0(document, tmp_path):
    blocks = marked_blocks().get(document)
    assert blocks, "no ```bash runnable block anywhere: nothing proves the docs' commands work"
    times = run_blocks(blocks, workdir(tmp_path / "repo"))
    print(", ".join(f"{document}:{b.line} {t:.1f}s" for b, t in zip(blocks, times)))


def test_blocks_are_found_with_their_lines_and_others_skipped():
    text = ("# t\n```bash\necho not marked\n```\n````bash runnable\necho a\n```\nstill a\n````\n"
            "```json runnable\n{}\n```\n~~~sh runnable\necho b\n~~~\n```bash runnable\n```\n")
    blocks = runnable_blocks(text, "t.md")
    assert [(b.line, b.code) for b in blocks] == [(5, "echo a\n```\nstill a\n"), (13, "echo b\n"), (16, "\n")]


@pytest.mark.parametrize("code", ["false\necho after", "echo $UNSET_VARIABLE_OF_NOBODY", "false | true",
                                  "cpt-tasks plan --no_such_option 1"])
def test_a_failing_block_fails_the_test(code, tmp_path):
    """The runner can fail: a failed command, an unset variable, a failure inside a pipe, a bad cpt-tasks call."""
    with pytest.raises(AssertionError, match=r"t\.md:3: the runnable example exited [12]"):
        run_blocks([Block("t.md", 3, code)], tmp_path)


def test_blocks_of_one_document_share_its_directory_and_see_the_setup(tmp_path):
    cwd = workdir(tmp_path / "repo")
    run_blocks([Block("t.md", 1, "mkdir -p build && cpt-tasks --help > build/help.txt\n"),
                Block("t.md", 9, "grep -q convert-subset build/help.txt && test -d .cpt/sample/dolmino "
                                 "&& test \"$CPT_HOME\" -ef .cpt && .venv/bin/python -c 'import cpt_tasks'\n")], cwd)
