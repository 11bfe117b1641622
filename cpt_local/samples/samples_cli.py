"""``cpt-samples``: write what ``make setup`` gives the demo and the tests (the tasks environment runs it): the
Dolmino-shaped sample, a code corpus, the small test tokenizer and a tiny random Llama. Each is written to a
staging folder and renamed into place last, so a half-written one never looks complete."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path


def _staged(out: Path, write: Callable[[Path], object]) -> None:
    """``write(staging)``, then the staging folder renamed to ``out`` (an older ``out`` replaced)."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def _sample(args: argparse.Namespace) -> str:
    if args.domain:
        from cpt_local.samples.code_corpus import write_domain_sample

        return str(write_domain_sample(args.out, args.domain, args.documents))
    from cpt_local.samples.sample_mix import write_sample

    return str(write_sample(args.out))


def _small_tokenizer(args: argparse.Namespace) -> str:
    from cpt_local.samples.small_tokenizer import write_small_tokenizer

    _staged(args.out, lambda staging: write_small_tokenizer(args.sample, staging, args.vocab_size))
    return f"small tokenizer ({args.vocab_size} BPE ids + BOS/EOS) written to {args.out}"


def _tiny_model(args: argparse.Namespace) -> str:
    from cpt_local.samples.tiny_model import write_random_llama

    _staged(args.out, lambda staging: write_random_llama(staging, args.tokenizer))
    return f"tiny random Llama written to {args.out}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpt-samples", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sample = sub.add_parser("sample", help="Generate the Dolmino-shaped sample dataset from local real text")
    sample.add_argument("--out", type=Path, required=True, help="Folder to write (hub layout data/<subset>/…)")
    sample.add_argument("--domain", choices=("python",), default=None,
                        help="Instead, a domain corpus unlike the sample: python = the stdlib's code without "
                        "docstrings (text field 'content')")
    sample.add_argument("--documents", type=int, default=2000, help="Documents of --domain (default: 2000)")
    sample.set_defaults(run=_sample)
    small = sub.add_parser("small-tokenizer", help="Train the small test tokenizer (byte-level BPE with Llama 3's "
                           "framing tokens) on the sample")
    small.add_argument("--out", type=Path, required=True, help="Folder to write")
    small.add_argument("--sample", type=Path, required=True, help="The sample dataset (cpt-samples sample --out)")
    small.add_argument("--vocab_size", "--vocab-size", dest="vocab_size", type=int, default=1024,
                       help="BPE ids before BOS/EOS (default: 1024)")
    small.set_defaults(run=_small_tokenizer)
    tiny = sub.add_parser("tiny-model", help="Write a tiny random Llama (HF folder) for the demo and tests")
    tiny.add_argument("--out", type=Path, required=True, help="Folder to write")
    tiny.add_argument("--tokenizer", type=Path, required=True, help="Tokenizer folder to copy into it (it sets the "
                      "vocabulary and the BOS/EOS ids)")
    tiny.set_defaults(run=_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(args.run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
