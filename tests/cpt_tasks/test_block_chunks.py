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


def test_plain_file_chunks_travel_as_where_they_lie(tmp_path):
    import os
    import pickle

    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(b'{"text": "line %d"}\n' % i for i in range(2000)))
    files = [SourceFile(url=str(path), rel=path.name, size=path.stat().st_size, sha256="-")]
    chunks = list(iter_blocks(files, target_bytes=1000))
    assert len(chunks) > 10
    for chunk in chunks[:-1]:
        sent = pickle.dumps(chunk.payload)
        assert len(sent) < 200 and pickle.loads(sent) == chunk.payload  # a reference, read back from the file
    sent = pickle.dumps(chunks[3].payload)
    path.write_bytes(path.read_bytes().replace(b"line", b"LINE"))
    os.utime(path, ns=(1, 1))
    with pytest.raises(OSError, match="changed while it was being converted"):
        pickle.loads(sent)


def test_compressed_or_bom_files_send_their_bytes(tmp_path):
    import gzip
    import pickle

    data = b"".join(b'{"text": "line %d"}\n' % i for i in range(500))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + data)
    for name in ("a.jsonl.gz", "b.jsonl"):
        files = [SourceFile(url=str(tmp_path / name), rel=name, size=0, sha256="-")]
        chunks = list(iter_blocks(files, target_bytes=1000))
        assert b"".join(c.payload + b"\n" for c in chunks) == data
        assert all(len(pickle.dumps(c.payload)) > 1000 for c in chunks[:-1])
