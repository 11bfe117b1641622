"""A domain corpus in the plan: check it before anything is converted, count its tokens, and decide whether it
fills its budget or is converted once and repeated in training (up to ``max_domain_epochs``).

The count reads the corpus as the converter does (same files, same text field, same framing: BOS + tokens + EOS per
document with text; blank and null texts skipped) and stops as soon as the corpus is known to fill its budget, so a
large corpus costs at most its budget's worth of tokenizing and a small one (the case that repeats) is read once.

A corpus shorter than its budget keeps its val split whole and gives train the rows that are certain to fit
before it: ``rows = (tokens − val − concat − longest document) // concat``. Train ends inside some document; val
starts at the next one, so at most one document's tokens are skipped between them and val still gets all its
rows, whatever order the seeded shuffle puts the documents in. Training then draws ``budget // concat`` rows
from those (Streams' ``choose``): ``epochs = budget rows / train rows``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.data.encode import encode_chunk, set_encoder
from cpt_tasks.data.readers import iter_input_chunks, record_error
from cpt_tasks.data.sources import Source
from cpt_tasks.documents.plan_docs import Repetition
from cpt_tasks.errors import MissingTextField, UserError
from cpt_tasks.tokenizer import Encoder


# How a domain corpus's text field is named: the plan's option, and the DAG's Param of the same name.
DOMAIN_TEXT_OPTION = "--domain_text_field (the DAG's Param domain_text_field)"


@dataclass(frozen=True)
class CorpusCount:
    """What the plan counted of a corpus: framed tokens, non-empty documents, the longest document, and
    whether the whole corpus was read (False: it stopped once the budget was certainly filled)."""

    tokens: int
    documents: int
    longest: int
    complete: bool


def count_corpus(source: Source, conv: ConvertConfig, encoder: Encoder, enough: int, where: str,
                 text_option: str = DOMAIN_TEXT_OPTION) -> CorpusCount:
    """Count ``source``'s framed tokens, read as its conversion ``conv`` reads it (in file order), until more than
    ``enough``; UserError naming ``where`` (the option), the file and the record for a bad record, and for a corpus
    with no text at all; for a record or file without the text field it names ``text_option``, the option that
    sets ``conv.text_field`` here."""
    set_encoder(encoder)
    try:
        return _count(source, conv, enough)
    except MissingTextField as exc:
        raise exc.naming(text_option, where) from None
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc


def _count(source: Source, conv: ConvertConfig, enough: int) -> CorpusCount:
    text_field = conv.text_field
    tokens = documents = longest = 0
    for chunk in iter_input_chunks(source, conv.model_copy(update={"shuffle": False})):
        result = encode_chunk(chunk.payload, text_field)
        if result.error is not None:
            raise record_error(source, chunk, result.error)
        tokens += int(result.lengths.sum())
        documents += len(result.lengths)
        longest = max([longest, *map(int, result.lengths)])
        if tokens > enough:
            return CorpusCount(tokens, documents, longest, complete=False)
    if documents == 0:
        raise UserError(f"no document with text in field '{text_field}' ({len(source.files)} files, "
                        f"{source.total_bytes:,} bytes)")
    return CorpusCount(tokens, documents, longest, complete=True)


def fits(max_tokens: int, val_tokens: int, concat: int) -> int:
    """Tokens a corpus must hold beyond which it certainly fills train and val without repeating."""
    return max_tokens + val_tokens + 2 * concat


def plan_repetition(count: CorpusCount, budget: tuple[int, int], concat: int, max_epochs: float,
                    where: str) -> tuple[int, Repetition | None]:
    """(the conversion's max_tokens, how it repeats) for a corpus of ``count`` with ``budget`` =
    (train tokens, val tokens); None when it fills its budget. UserError with the numbers when it would repeat
    more than ``max_epochs`` or holds less than one train row beside its val split."""
    max_tokens, val_tokens = budget
    if not count.complete or count.tokens > fits(max_tokens, val_tokens, concat) + count.longest:
        return max_tokens, None
    val = (val_tokens // concat) * concat
    rows = (count.tokens - val - concat - count.longest) // concat
    budget_rows = max_tokens // concat
    if rows >= budget_rows:
        return max_tokens, None
    if rows < 1:
        raise UserError(f"{where}: holds {count.tokens:,} tokens in {count.documents:,} documents (longest "
                        f"{count.longest:,}), too few for one train row of {concat} beside its val split of "
                        f"{val:,} tokens; give more data, or lower --val_fraction or --concat_tokens")
    epochs = budget_rows / rows
    if epochs > max_epochs:
        raise UserError(f"{where}: holds {count.tokens:,} tokens ({rows:,} train rows of {concat} beside "
                        f"{val:,} val tokens); its budget of {max_tokens:,} train tokens ({budget_rows:,} rows) "
                        f"would repeat it {epochs:.2f} epochs, more than --max_domain_epochs {max_epochs:g}. Give "
                        f"at most {int(rows * max_epochs) * concat:,} "
                        "domain train tokens (lower --total_tokens or raise --replay_fraction), or more data")
    return rows * concat, Repetition(source_tokens=count.tokens, budget_tokens=max_tokens, budget_rows=budget_rows,
                                     epochs=epochs)
