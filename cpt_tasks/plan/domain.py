"""A domain corpus in the plan: check it before anything is converted, estimate its tokens from a bounded sample
(:mod:`~cpt_tasks.plan.corpus_estimate`), and decide how it is converted.

* **Long enough**: the estimate is comfortably above what its budget needs (:data:`LONG_MARGIN` × (train + val +
  2 rows): a sample whose files are up to a third denser than the rest of the corpus still fills it; a count of
  the whole corpus needs no margin, only room for the document skipped between train and val). It converts as any
  component: train first, then val; no repetition.
* **May repeat** (every other corpus, and one that cannot be sampled by bytes: a ``datasets`` source): it converts
  val first (``val_first``: val's rows, then up to its whole train budget; the source running out is expected)
  and the plan records an *estimated* :class:`~cpt_tasks.documents.plan_docs.Repetition`. The epochs it states
  are informational: ``verify`` computes them from the train rows the conversion really wrote (``budget rows /
  train rows``) and fails past ``max_domain_epochs``, before training.
* **Refused** (UserError, exit 2, before anything is converted) only when even an optimistic reading of the
  estimate is too short: :data:`REFUSE_MARGIN` × the estimated tokens (the exact count when every file was read)
  hold less than one train row beside val, or would still repeat more than ``max_domain_epochs``. A margin of 2
  means a wrong estimate cannot refuse a corpus that fits unless the sample overstates its density twice over.
"""

from __future__ import annotations

from cpt_tasks.documents.plan_docs import Repetition
from cpt_tasks.errors import UserError
from cpt_tasks.plan.corpus_estimate import CorpusEstimate


# How a domain corpus's text field is named: the plan's option, and the DAG's Param of the same name.
DOMAIN_TEXT_OPTION = "--domain_text_field (the DAG's Param domain_text_field)"
LONG_MARGIN = 1.5  # an estimate this many times what the budget needs converts train first
REFUSE_MARGIN = 2.0  # the plan refuses only what this many times the estimate cannot fit


def fits(max_tokens: int, val_tokens: int, concat: int) -> int:
    """Tokens a corpus must hold beyond which it certainly fills train and val without repeating."""
    return max_tokens + val_tokens + 2 * concat


def is_long(estimate: CorpusEstimate | None, budget: tuple[int, int], concat: int) -> bool:
    """True when the corpus surely fills ``budget`` (train tokens, val tokens): counted whole, more than it needs
    plus its longest document; estimated, at least LONG_MARGIN × what it needs."""
    if estimate is None:
        return False
    need = fits(*budget, concat)
    if estimate.complete:
        return estimate.tokens > need + estimate.longest
    return estimate.tokens >= LONG_MARGIN * need


def plan_domain(estimate: CorpusEstimate | None, budget: tuple[int, int], concat: int, max_epochs: float,
                where: str) -> Repetition | None:
    """How a domain corpus of ``estimate`` (None: no estimate) with ``budget`` = (train tokens, val tokens)
    converts: None when it is long enough (train first); else its estimated repetition (it converts val first,
    with its whole train budget). UserError with the numbers when even the optimistic reading gives less than
    one train row beside val or more than ``max_epochs`` epochs."""
    if is_long(estimate, budget, concat):
        return None
    max_tokens, val_tokens = budget
    budget_rows = max_tokens // concat
    if estimate is None:
        return Repetition(estimated=True, source_tokens=None, budget_tokens=max_tokens, budget_rows=budget_rows,
                          epochs=None)
    val = (val_tokens // concat) * concat
    margin = 1.0 if estimate.complete else REFUSE_MARGIN
    most = int(margin * estimate.tokens - val) // concat  # train rows it could hold at best
    said = estimate.describe()
    if most < 1:
        raise UserError(f"{where}: holds {said}, too few for one train row of {concat} beside its val split of "
                        f"{val:,} tokens; give more data, or lower --val_fraction or --concat_tokens")
    if budget_rows / most > max_epochs:
        reading = "" if estimate.complete else f" (even at {margin:g}× the estimate)"
        raise UserError(f"{where}: holds {said}: at most {most:,} train rows of {concat} beside {val:,} val "
                        f"tokens{reading}; its budget of {max_tokens:,} train tokens ({budget_rows:,} rows) would "
                        f"repeat it at least {budget_rows / most:.2f} epochs, more than --max_domain_epochs "
                        f"{max_epochs:g}. Give at most {int(most * max_epochs) * concat:,} domain train tokens "
                        "(lower --total_tokens or raise --replay_fraction), give more data, or raise "
                        "--max_domain_epochs")
    rows = min(budget_rows, max(1, (estimate.tokens - val - estimate.longest) // concat))
    return Repetition(estimated=True, source_tokens=estimate.tokens, budget_tokens=max_tokens,
                      budget_rows=budget_rows, epochs=budget_rows / rows)
