"""Progress for long jobs: a tqdm bar on a terminal, a plain log line every few seconds elsewhere
(pod logs, Airflow task logs), both with documents, tokens, tokens/s and an ETA against the budget."""

from __future__ import annotations

import sys
import time


def _fmt(n: float) -> str:
    for unit in ("", "K", "M", "B"):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:.0f}"
        n /= 1000
    return f"{n:.1f}T"


class Progress:
    """Reports documents and tokens done, rate, and ETA (when a token budget is known)."""

    def __init__(self, label: str, budget_tokens: int | None, interval: float = 10.0, stream=None) -> None:
        self.label, self.budget, self.interval = label, budget_tokens, interval
        self.stream = stream or sys.stderr
        self.start = self._last = time.monotonic()
        self.documents = self.tokens = 0
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=budget_tokens, unit="tok", unit_scale=True, desc=label, file=self.stream,
                             dynamic_ncols=True)

    def update(self, documents: int, tokens: int, note: str = "") -> None:
        """Add work done since the last call."""
        self.documents += documents
        self.tokens += tokens
        if self._bar is not None:
            self._bar.update(tokens)
            self._bar.set_postfix_str(f"docs={_fmt(self.documents)} {note}".strip(), refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(note), file=self.stream, flush=True)

    def line(self, note: str = "") -> str:
        """One human-readable status line."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.tokens / elapsed
        parts = [f"[{self.label}] {_fmt(self.documents)} docs", f"{_fmt(self.tokens)} tokens",
                 f"{_fmt(rate)} tok/s", f"{elapsed:.0f}s"]
        if self.budget:
            left = max(self.budget - self.tokens, 0)
            parts.append(f"{100 * min(self.tokens / self.budget, 1):.1f}% of {_fmt(self.budget)}")
            parts.append(f"ETA {left / rate:.0f}s" if rate > 0 else "ETA ?")
        if note:
            parts.append(note)
        return ", ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
