"""One training process: ``python -m cpt_tasks.train.train_worker TRAIN_YAML {train,export} [--clean_shm]``.

``cpt-tasks train`` starts it directly (one process, which first cleans streaming's stale shared memory) or
through the Composer launcher (``composer -n N -m cpt_tasks.train.train_worker ...``, one process per GPU; the
parent cleaned up before). ``train`` runs LLM-Foundry's ``train_from_yaml``
(autoresuming from the run's latest checkpoint); ``export`` only loads that checkpoint and writes the Hugging
Face export (a run whose training finished but whose export or manifest did not). Either way the trainer is
closed before the result file is written, so every checkpoint and export upload is complete by then.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("yaml", help="The LLM-Foundry config written by cpt-tasks train")
    parser.add_argument("mode", choices=["train", "export"], help="train (resuming), or export only")
    parser.add_argument("--clean_shm", action="store_true", help="Remove the shared memory that killed streaming "
                        "datasets left behind first (the one process of a single-process run)")
    args = parser.parse_args(argv)

    from llmfoundry.command_utils import train_from_yaml

    from cpt_tasks.runs.shm_prefix import guard_shm_prefix

    if args.clean_shm:
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
    guard_shm_prefix()
    trainer = train_from_yaml(args.yaml, ["only_hf_checkpoint=true"] if args.mode == "export" else [])
    trainer.close()
    for destination in trainer.logger.destinations:
        if hasattr(destination, "write_result"):
            destination.write_result(trainer.state, args.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
