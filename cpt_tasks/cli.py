"""``cpt-tasks``: one CLI over every job of the registry (``cpt_tasks.jobs``): a command per job, its flags from the
job's config model, its run function imported when it runs. Pods and the local runner run it; tests call the
functions.

Exit status (``cpt_tasks.errors``): 0 done (or already complete), 1 failed (transient: retry), 2 bad input
or arguments and 3 bad data (verification failed, or input bytes differ from their listing; both final: do not
retry), 99 already complete when ``convert-subset --already_complete_exit 99`` asks for it. When ``CPT_RESULT_FILE`` is set, a job also writes its
result document there as JSON (the pods' ``/airflow/xcom/return.json``; the local runner's temporary file).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import logging
import os
import sys
import traceback

# numpy's OpenBLAS starts a thread per core when it loads, and they spin for a while: ~0.1 core-s stolen from the
# tokenizer processes of a short conversion. No job does linear algebra with numpy (training uses torch's own), so
# the CLI's processes keep it to one thread unless the environment says otherwise. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from cpt_tasks.cli_args import HelpFormatter, add_model_arguments, build_config
from cpt_tasks.documents import Document, dump_document
from cpt_tasks.errors import (EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR, BadDataError, TransientError,
                              UserError)
from cpt_tasks.jobs import JOBS, Job, Outcome, job
from cpt_tasks.layout import TERMINATION_LOG


TERMINATION_LIMIT = 4096  # bytes of it the kubelet keeps


def write_result(result: Document | list[Document]) -> None:
    """Write a job's result document(s) as JSON to ``$CPT_RESULT_FILE`` (atomically) when that is set."""
    target = os.environ.get("CPT_RESULT_FILE")
    if target:
        from cpt_tasks.storage import write_bytes_atomic

        items = result if isinstance(result, list) else [result]
        dumped = [json.loads(dump_document(item)) for item in items]
        body = dumped if isinstance(result, list) else dumped[0]
        if target == TERMINATION_LOG:
            write_termination_message(body)
        else:
            write_bytes_atomic(target, json.dumps(body, indent=2).encode())


def write_termination_message(body: dict) -> None:
    """The result as the container's termination message (the multi-node Job's pods: no XCom sidecar). The
    kubelet mounts the file, so it is written in place, and keeps 4 KiB of it: past that the metrics are left out."""
    text = json.dumps(body, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_LIMIT and body.get("metrics"):
        text = json.dumps({**body, "metrics": {}}, separators=(",", ":"))
    try:
        with open(TERMINATION_LOG, "w") as message:
            message.write(text)
    except OSError as exc:  # the work is done; the operator reports the missing result
        print(f"could not write the result to {TERMINATION_LOG}: {exc}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """A command's parser: an option it does not know is its own error (its usage, and the closest option)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._closest(extras)}")
        return namespace, extras

    def _closest(self, extras: list[str]) -> str:
        def plain(option: str) -> str:
            return "--" + option[2:].replace("-", "_")

        known = {plain(o): o for a in self._actions for o in a.option_strings if o.startswith("--")}
        for extra in extras:
            if extra.startswith("--"):
                close = difflib.get_close_matches(plain(extra.split("=")[0]), known, n=1, cutoff=0.6)
                if close:  # in the user's own spelling
                    return f" (did you mean {close[0] if '_' in extra[2:] else known[close[0]]}?)"
        return ""


DESCRIPTION = """\
Continual pretraining with LLM-Foundry, one step at a time: plan the token budget of every component of a mix,
convert each to tokenized MDS shards, verify them against the plan, train, and evaluate the trained model
against the one it started from. The Airflow DAG cpt_dolmino runs these same commands, one pod or process each."""
EPILOG = """\
Every option is spelt --name_with_underscores or --name-with-dashes; --config FILE (YAML/JSON) or an inline
JSON object gives several at once, and --dry-run prints the validated options. `cpt-tasks COMMAND --help` lists
a command's options. Exit status: 0 done (or already complete), 1 failed and safe to retry, 2 bad input or
arguments, 3 the data failed its checks (2 and 3: retrying cannot help)."""


def build_parser() -> argparse.ArgumentParser:
    """One command per job of the registry (``cpt_tasks.jobs``), in its order: pipeline order, then set-up."""
    parser = argparse.ArgumentParser(prog="cpt-tasks", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
                                         prog, max_help_position=26, width=115))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for job in JOBS:
        add_model_arguments(sub.add_parser(job.name, help=job.help), job.config)
    return parser


def run_job(job: Job, args: argparse.Namespace) -> int:
    """Build the job's validated config from the flags; print it on --dry-run (or what the job's preview makes of
    it), else run the job and hand its result to the DAG."""
    cfg = build_config(job.config, args)
    if args.dry_run:
        print((_function(job.preview)(cfg) if job.preview else cfg).model_dump_json(indent=2))
        return EXIT_OK
    outcome: Outcome = _function(job.run)(cfg)
    if outcome.result is not None:
        write_result(outcome.result)
    return outcome.status


def _function(name: str):
    """The function a registry entry names as ``module:function``, imported now (jobs import heavy things)."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_job(job(args.command), args)
    except UserError as exc:
        print(f"cpt-tasks {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BadDataError as exc:
        print(f"cpt-tasks {args.command}: bad data: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except TransientError as exc:  # a source that stayed unreachable: one line, and a retry may succeed
        print(f"cpt-tasks {args.command}: failed: {exc} (exit {EXIT_FAILED}, safe to retry)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception:  # transient or unexpected: the traceback helps, and the exit status allows a retry
        traceback.print_exc()
        print(f"cpt-tasks {args.command}: failed (exit {EXIT_FAILED}, safe to retry)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
