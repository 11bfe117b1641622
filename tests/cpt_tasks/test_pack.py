"""The packer's contract: exact rows, train budget, val starting at the first document with no train token."""

import numpy as np
import pytest

from cpt_tasks.convert.pack import Packer


def framed(lengths):
    """Documents whose tokens are their own index, so rows show where each document went."""
    return np.concatenate([np.full(n, i, dtype=np.int32) for i, n in enumerate(lengths)]), np.array(lengths)


def feed_all(packer, lengths, batch):
    tokens, lens = framed(lengths)
    starts = np.concatenate([[0], np.cumsum(lens)])
    out = {"train": [], "val": []}
    for b in range(0, len(lens), batch):
        part = packer.feed(tokens[starts[b]:starts[min(b + batch, len(lens))]], lens[b:b + batch])
        for split, rows in part:
            out[split].extend(rows.tolist())
        if packer.done:
            break
    return out


def test_val_starts_at_first_document_without_train_tokens():
    out = feed_all(Packer(4, 2, 2), [3, 6, 2, 4, 6, 3, 7], batch=100)
    assert out["train"] == [[0, 0, 0, 1], [1, 1, 1, 1]]  # document 1 is cut; its last token is dropped
    assert out["val"] == [[2, 2, 3, 3], [3, 3, 4, 4]]


def test_exact_boundary_keeps_next_document():
    packer = Packer(4, 2, 1)
    out = feed_all(packer, [3, 5, 2, 4], batch=1)
    assert out["train"] == [[0, 0, 0, 1], [1, 1, 1, 1]]
    assert out["val"] == [[2, 2, 3, 3]]
    assert packer.train.stats.documents == 2 and packer.val.stats.first_document == 2


def test_unlimited_train_drops_only_the_final_partial_row():
    packer = Packer(5, None, 0)
    out = feed_all(packer, [4, 4, 4], batch=1)
    assert out["train"] == [[0, 0, 0, 0, 1], [1, 1, 1, 2, 2]]
    assert out["val"] == [] and not packer.done
    assert packer.train.stats.documents == 3


@pytest.mark.parametrize("seed", range(20))
def test_random_streams_hold_the_contract(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 40, size=200).tolist()
    concat, train_rows, val_rows = int(rng.integers(3, 30)), int(rng.integers(1, 40)), int(rng.integers(0, 20))
    packer = Packer(concat, train_rows, val_rows)
    out = feed_all(packer, lengths, batch=int(rng.integers(1, 50)))
    stream = np.concatenate(framed(lengths)[0:1])
    train = np.array(out["train"]).reshape(-1)
    total = sum(lengths)
    expect_train = min(train_rows, total // concat)
    assert len(out["train"]) == expect_train and all(len(r) == concat for r in out["train"] + out["val"])
    assert np.array_equal(train, stream[: expect_train * concat])  # train is the stream's prefix
    if out["val"]:
        last_train_doc = train[-1]
        val = np.array(out["val"]).reshape(-1)
        first_val_doc = int(val[0])
        assert first_val_doc == last_train_doc + 1  # the first document with no token in train
        start = int(np.sum(lengths[:first_val_doc]))
        assert np.array_equal(val, stream[start:start + len(val)])
        assert packer.val.stats.first_document == first_val_doc
        assert set(train.tolist()).isdisjoint(val.tolist())
    assert packer.train.stats.documents == len(set(train.tolist()))
