"""The MDS writer: byte-identical to mosaicml-streaming's MDSWriter, and readable by it."""

import filecmp
import os

import numpy as np
import pytest
from conftest import read_rows

from cpt_tasks.configs.config_base import parse_size
from cpt_tasks.convert.mds import TokenShardWriter


@pytest.mark.parametrize("compression", ["zstd", "zstd:9", None])
@pytest.mark.parametrize("concat", [100, 2048, 70000])
def test_byte_identical_to_streaming(tmp_path, compression, concat):
    from streaming import MDSWriter

    rows = np.random.default_rng(concat).integers(0, 128256, size=(300, concat)).astype(np.int32)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    writer = TokenShardWriter(str(ours), compression, parse_size("32kb"), ["sha1"])
    for row in rows:
        writer.write(row)
    assert writer.finish() == 300
    with MDSWriter(out=str(theirs), columns={"tokens": "ndarray:int32"}, compression=compression,
                   hashes=["sha1"], size_limit="32kb") as mds:
        for row in rows:
            mds.write({"tokens": row})
    names = sorted(os.listdir(ours))
    assert names == sorted(os.listdir(theirs)) and len(names) > 2
    for name in names:
        assert filecmp.cmp(ours / name, theirs / name, shallow=False), name
    assert np.array_equal(read_rows(ours), rows)


def test_parse_size():
    assert parse_size("64mb") == 1 << 26 and parse_size("100kb") == 102400 and parse_size(5) == 5


@pytest.mark.parametrize("level", [3, 9])
def test_shards_compressed_on_many_threads_equal_streamings_call(level):
    """zstd splits a large input across its threads; the bytes must equal MDSWriter's ``zstd.compress(data, level)``
    whatever the thread count (a shard is compressed on every usable core)."""
    import zstd

    words = np.random.default_rng(level).integers(0, 5000, size=4000).astype(np.int32)
    data = np.random.default_rng(level + 1).choice(words, size=6_000_000).astype(np.int32).tobytes()  # 24 MB
    expected = zstd.compress(data, level)
    assert all(zstd.compress(data, level, threads) == expected for threads in (1, 2, 3, 4))
