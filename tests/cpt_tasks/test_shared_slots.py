"""Chunks travel to the tokenizer processes and back through shared slots: the same tokens as in-process, a
payload or result too big for its slot goes through the pool's pipe, and forkserver workers get no slots."""

import threading

import numpy as np

from cpt_tasks import pool as pools
from cpt_tasks.data import encode
from cpt_tasks.data.encode import encode_chunk, set_encoder, start_pool
from cpt_tasks.data.parquet import TextBlock
from cpt_tasks.data.shared_slots import SharedSlots, SlotBytes
from cpt_tasks.tokenizer import Encoder

LINES = b"\n".join(b'{"text": "document number %d, some words to encode"}' % i for i in range(300))


def encoder(tokenizer_dir) -> Encoder:
    return Encoder(tokenizer_dir, "<|begin_of_text|>", "<|end_of_text|>")


def test_payloads_and_tokens_round_trip_through_slots():
    slots = SharedSlots(3, result_bytes=64, input_bytes=16)
    sent = slots.send(2, b"0123456789")
    assert sent == SlotBytes(2, 10) and slots.receive(sent) == b"0123456789"
    block = TextBlock((b"abcdef", np.array([0, 3, 6]), None))
    moved = slots.send(1, block)
    assert isinstance(moved, TextBlock) and moved[0] == SlotBytes(1, 6)
    back = slots.receive(moved)
    assert isinstance(back, TextBlock) and back.texts() == ["abc", "def"]
    assert slots.send(0, b"x" * 17) == b"x" * 17  # too big for its slot: sent as it is
    assert slots.send(0, [b"a", "b"]) == [b"a", "b"]  # texts are not bytes: sent as they are
    tokens = np.arange(16, dtype=np.int32)
    assert slots.put(1, tokens) and np.array_equal(slots.tokens(1, 16), tokens)
    assert not slots.put(1, np.arange(17, dtype=np.int32))  # 68 bytes > 64
    assert np.array_equal(slots.tokens(1, 16), tokens)  # the refused write left the slot alone


def run_pool(enc, folder, payloads):
    spec = (str(folder), "<|begin_of_text|>", "<|end_of_text|>", "auto")
    pool, slots = start_pool(2, enc, spec, len(payloads))
    try:
        with pool:
            futures = [pool.submit(encode_chunk, slots.send(i, p) if slots else p, "text", i if slots else None)
                       for i, p in enumerate(payloads)]
            results = [f.result() for f in futures]
        return slots, results, [r.framed_tokens(slots).copy() for r in results]
    finally:
        encode._SLOTS = None


def test_forked_workers_use_the_slots_and_give_the_in_process_tokens(tokenizer_dir, monkeypatch):
    monkeypatch.setattr(pools, "forks", lambda: True)  # as the CLI's single-threaded process does (other tests
    enc = encoder(tokenizer_dir)  # may leave threads behind, which would make the pool use the forkserver)
    set_encoder(enc)
    expected = encode_chunk(LINES).tokens
    slots, results, tokens = run_pool(enc, tokenizer_dir, [LINES, LINES])
    assert slots is not None and [r.slot for r in results] == [0, 1]
    assert all(np.array_equal(t, expected) for t in tokens)

    # results bigger than their slot come back through the pipe
    monkeypatch.setattr(encode, "SharedSlots", lambda count: SharedSlots(count, result_bytes=64))
    slots, results, tokens = run_pool(enc, tokenizer_dir, [LINES])
    assert slots.result_bytes == 64 and results[0].slot is None and np.array_equal(tokens[0], expected)


def test_forkserver_workers_get_no_slots(tokenizer_dir):
    enc = encoder(tokenizer_dir)
    set_encoder(enc)
    expected = encode_chunk(LINES).tokens
    idle = threading.Event()
    thread = threading.Thread(target=idle.wait)  # a second thread: the pool uses the forkserver
    thread.start()
    try:
        folder = str(tokenizer_dir)
        pool, slots = start_pool(1, enc, (folder, "<|begin_of_text|>", "<|end_of_text|>", "auto"), 2)
        with pool:
            result = pool.submit(encode_chunk, LINES, "text", None).result()
        assert slots is None and result.slot is None and np.array_equal(result.tokens, expected)
    finally:
        idle.set()
        thread.join()
        encode._SLOTS = None
