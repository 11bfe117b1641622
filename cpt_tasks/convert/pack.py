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


class _Phase:
    """Row cutting for one split: a carry buffer and the documents whose first token is not yet in a row."""

    def __init__(self, name: str, concat: int, rows: int | None) -> None:
        self.name, self.concat, self.rows = name, concat, rows
        self.stats = SplitStats()
        self.fed = 0  # tokens fed into this split's stream
        self.carry = np.empty(0, dtype=np.int32)
        # the documents not yet in a row: their start offsets in this split's stream, and their ordinals
        self.pending_starts = np.empty(0, dtype=np.int64)
        self.pending_ordinals = np.empty(0, dtype=np.int64)

    @property
    def remaining_tokens(self) -> int | None:
        return None if self.rows is None else self.rows * self.concat - self.fed

    def feed(self, tokens: np.ndarray, starts: np.ndarray, ordinals: np.ndarray) -> list[np.ndarray]:
        """Append tokens (documents starting at ``starts``); return the completed rows, as arrays of shape
        (n, concat) in order: the row the carry completes (a copy), then views of ``tokens`` (no copy of a
        chunk's tokens: the writer copies each row once, into its shard)."""
        self.pending_starts = np.concatenate([self.pending_starts, starts + self.fed])
        self.pending_ordinals = np.concatenate([self.pending_ordinals, ordinals])
        self.fed += len(tokens)
        count = (len(self.carry) + len(tokens)) // self.concat
        if self.rows is not None:
            count = min(count, self.rows - self.stats.samples)
        out, used = [], 0
        if count and len(self.carry):
            used = self.concat - len(self.carry)
            out.append(np.concatenate([self.carry, tokens[:used]]).reshape(1, self.concat))
            count -= 1
            self._rows_done(1)
        if count:
            out.append(tokens[used:used + count * self.concat].reshape(count, self.concat))
            used += count * self.concat
            self._rows_done(count)
        if out:
            self.carry = tokens[used:].copy()
        else:  # no row completed: everything joins the carry
            self.carry = np.concatenate([self.carry, tokens])
        return out

    def _rows_done(self, count: int) -> None:
        """``count`` more rows are complete: the documents that start before their end are in this split."""
        self.stats.samples += count
        self.stats.tokens = self.stats.samples * self.concat
        done = int(np.searchsorted(self.pending_starts, self.stats.tokens, side="left"))
        if done:
            if self.stats.first_document is None:
                self.stats.first_document = int(self.pending_ordinals[0])
            self.stats.last_document = int(self.pending_ordinals[done - 1])
            self.stats.documents += done
            self.pending_starts, self.pending_ordinals = self.pending_starts[done:], self.pending_ordinals[done:]

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
                out += [(phase.name, rows) for rows in phase.feed(tokens, starts, ordinals)]
                break
            # This batch completes the phase: rows up to token `need`, then the next split starts at
            # the first document that begins at or after `need`.
            head = int(np.searchsorted(starts, need, side="left"))
            out += [(phase.name, rows) for rows in phase.feed(tokens[:need], starts[:head], ordinals[:head])]
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
