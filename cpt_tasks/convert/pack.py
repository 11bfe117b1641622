"""Packing: a stream of framed documents -> rows of exactly ``concat_tokens``, split into train and val.

Pure and in-memory (no I/O), so it is tested directly. The rules (DESIGN.md's data contract):

* documents are concatenated in order and cut into rows; a row may span documents;
* train holds the first ``train_rows`` rows (all rows when ``train_rows`` is None);
* val starts at the first document that has no token in train (the document cut by train's last row
  is dropped) and holds ``val_rows`` rows;
* ``val_first`` (a corpus that may be shorter than its train budget): the other way round, val holds the first
  ``val_rows`` rows and train starts at the first document that has no token in val;
* a split's final partial row is dropped; a document "is in" a split when one of its tokens is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from cpt_tasks.layout import TRAIN, VAL


@dataclass
class SplitStats:
    """Counts of one output split."""

    documents: int = 0
    samples: int = 0
    tokens: int = 0
    first_document: int | None = None  # ordinal (in read order) of the split's first document
    last_document: int | None = None

    def add_document(self, ordinal: int) -> None:
        self.documents += 1
        if self.first_document is None:
            self.first_document = ordinal
        self.last_document = ordinal


class _Phase:
    """Row cutting for one split: a carry buffer and the documents whose first token is not yet in a row."""

    def __init__(self, name: str, concat: int, rows: int | None) -> None:
        self.name, self.concat, self.rows = name, concat, rows
        self.stats = SplitStats()
        self.fed = 0  # tokens fed into this split's stream
        self.carry = np.empty(0, dtype=np.int32)
        self.pending: deque[tuple[int, int]] = deque()  # (start offset in stream, document ordinal)

    @property
    def remaining_tokens(self) -> int | None:
        return None if self.rows is None else self.rows * self.concat - self.fed

    def feed(self, tokens: np.ndarray, starts: np.ndarray, ordinals: np.ndarray) -> np.ndarray:
        """Append tokens (documents starting at ``starts``); return the completed rows, shape (n, concat)."""
        self.pending.extend(zip((starts + self.fed).tolist(), ordinals.tolist()))
        self.fed += len(tokens)
        stream = np.concatenate([self.carry, tokens]) if len(self.carry) else tokens
        count = len(stream) // self.concat
        if self.rows is not None:
            count = min(count, self.rows - self.stats.samples)
        rows = stream[:count * self.concat].reshape(count, self.concat)
        self.carry = stream[count * self.concat:].copy()
        self.stats.samples += count
        self.stats.tokens = self.stats.samples * self.concat
        while self.pending and self.pending[0][0] < self.stats.tokens:
            self.stats.add_document(self.pending.popleft()[1])
        return rows

    @property
    def full(self) -> bool:
        return self.rows is not None and self.stats.samples >= self.rows


class Packer:
    """Feeds framed documents (tokens + per-document lengths) through train, then val (``val_first``: val, then
    train); a split of no rows is skipped."""

    def __init__(self, concat_tokens: int, train_rows: int | None, val_rows: int, val_first: bool = False) -> None:
        self.train = _Phase(TRAIN, concat_tokens, train_rows)
        self.val = _Phase(VAL, concat_tokens, val_rows)
        order = [self.val, self.train] if val_first else [self.train, self.val]
        self._phases = [p for p in order if p.rows != 0] or order[-1:]
        self._current = 0
        self.documents = 0  # documents fed (ordinal of the next one)

    @property
    def done(self) -> bool:
        """Both budgets are met: no more input is needed."""
        return self.train.full and self.val.full

    def feed(self, tokens: np.ndarray, lengths: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Consume one batch of framed documents; return [(split, rows)] in write order."""
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        ordinals = np.arange(self.documents, self.documents + len(lengths), dtype=np.int64)
        self.documents += len(lengths)
        out: list[tuple[str, np.ndarray]] = []
        while len(lengths) and not self.done:
            phase = self._phases[self._current]
            need = phase.remaining_tokens
            if need is None or need > len(tokens):
                rows = phase.feed(tokens, starts, ordinals)
                out.append((phase.name, rows))
                break
            # This batch completes the phase: rows up to token `need`, then the next split starts at
            # the first document that begins at or after `need`.
            head = int(np.searchsorted(starts, need, side="left"))
            rows = phase.feed(tokens[:need], starts[:head], ordinals[:head])
            out.append((phase.name, rows))
            phase.carry = np.empty(0, dtype=np.int32)
            if self._current + 1 == len(self._phases):
                break
            self._current += 1
            if head >= len(lengths):
                break
            base = starts[head]
            tokens, starts, ordinals = tokens[base:], starts[head:] - base, ordinals[head:]
            lengths = lengths[head:]
        return [(name, rows) for name, rows in out if len(rows)]
