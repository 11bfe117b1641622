"""The unshuffled reader's chunks (``iter_blocks``): cut anywhere, they hold every line once, in order, and
locate each one at its own line number (what error messages name)."""

import random

import pytest

from cpt_tasks.data import sources
from cpt_tasks.data.order import iter_blocks
from cpt_tasks.data.sources import SourceFile, iter_lines


def chunked_lines(files, target):
    """(file index, line number, line) of every non-blank line of every chunk, as the workers see them."""
    out = []
    for chunk in iter_blocks(files, target_bytes=target):
        for number, line in enumerate(chunk.payload.split(b"\n")):
            if line.strip():
                out.append((*chunk.locate(number), line))
    return out


@pytest.mark.parametrize("block", [7, 64, 1 << 22])
def test_chunks_hold_every_line_at_its_number(tmp_path, monkeypatch, block):
    monkeypatch.setattr(sources, "BLOCK", block)
    rng = random.Random(block)
    files = []
    for index in range(3):
        lines = [b'{"text": "%s"}' % (b"x" * rng.randint(0, 90)) if rng.random() > 0.2 else b" " * rng.randint(0, 3)
                 for _ in range(rng.randint(0, 120))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\n\n"])
        path = tmp_path / f"f{index}.jsonl"
        path.write_bytes(data)
        files.append(SourceFile(url=str(path), rel=path.name, size=len(data), sha256="-"))
    expected = list(iter_lines(files))
    for target in (1, 10, 100, 1000, 1 << 20):
        assert chunked_lines(files, target) == expected, target
