"""The ICL tasks of an evaluation, in LLM-Foundry's ``icl_tasks`` format.

- **default**: one ``language_modeling`` task per subset, generated at evaluation time from the plan's own val
  split (held out: never trained on, whatever the Params): in each held-out document, every 16 tokens, the
  context is the text so far (at most 48 tokens back) and the continuation is the next whole word. At most
  ``max_icl_examples`` per subset, spread evenly over the documents; the same data gives the same tasks. A task
  list shipped as a file could not promise that: which documents are held out depends on the plan.
- **a task list** (a gauntlet YAML with a top-level ``icl_tasks`` list, local or object storage) is read and
  checked before anything runs: required keys, a safe unique label, a known task type, ``num_fewshot`` a list
  of shots, every examples file there. A relative ``dataset_uri`` is resolved against the list's folder (or
  ``--icl_data_root``), as LLM-Foundry's own gauntlet files expect. Errors name the file and the task (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cpt_tasks.documents.evaluate_docs import EvalTask
from cpt_tasks.documents.verify_docs import SubsetReport
from cpt_tasks.errors import UserError
from cpt_tasks.layout import VAL
from cpt_tasks.storage import is_remote, join, read_bytes

TASK_TYPES = ("language_modeling", "multiple_choice", "schema", "generation_task_with_answers")
REQUIRED = ("label", "dataset_uri", "icl_task_type", "num_fewshot")
SAFE_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")  # LLM-Foundry copies each task's file to ./<label>-<shot>.jsonl
GENERATOR = "heldout-next-word/v1"
CONTEXT_TOKENS, STRIDE, MIN_CONTEXT, LOOKAHEAD = 48, 16, 8, 8
NEXT_WORD = re.compile(r" (\w+)")
DEFAULT_MEASURES = ("0-shot exact greedy prediction of the next word of held-out documents (each subset's val "
                    "split of this plan, never trained on): an in-domain next-word proxy, not a downstream "
                    "capability benchmark; with n in the tens, one example is noise (the report shows correct/n)")
USER_MEASURES = "the task list's own tasks (LLM-Foundry's metrics; see the list for what each measures)"


@dataclass
class TaskList:
    """Tasks ready for LLM-Foundry: dicts in its format with resolved ``dataset_uri`` values."""

    source: str
    tasks: list[dict] = field(default_factory=list)
    sha256: str | None = None  # the user's file
    hashes: dict[str, str | None] = field(default_factory=dict)  # label -> sha256 of its examples file
    examples: dict[str, int] = field(default_factory=dict)  # label -> examples (generated tasks)

    def described(self) -> list[EvalTask]:
        return [EvalTask(label=t["label"], icl_task_type=t["icl_task_type"], num_fewshot=list(t["num_fewshot"]),
                         dataset_uri=t["dataset_uri"], sha256=self.hashes.get(t["label"]),
                         examples=self.examples.get(t["label"])) for t in self.tasks]


def to_yaml(tasks: list[dict]) -> str:
    """A task list file in LLM-Foundry's format (``icl_tasks: [...]``)."""
    import yaml

    header = "# ICL tasks of a cpt-tasks evaluation, in LLM-Foundry's icl_tasks format\n"
    return header + yaml.safe_dump({"icl_tasks": tasks}, sort_keys=False, allow_unicode=True)


def read_task_list(source: str, data_root: str | None) -> TaskList:
    """A user's task list, checked, with every ``dataset_uri`` resolved and its file's sha256; UserError
    naming the file and the task otherwise."""
    import yaml

    where = f"--icl_tasks {source}"
    data = read_bytes(source)
    if data is None:
        raise UserError(f"{where}: no such file")
    try:
        body = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    tasks = body.get("icl_tasks") if isinstance(body, dict) else None
    if not isinstance(tasks, list) or not tasks:
        raise UserError(f"{where}: expected a top-level icl_tasks list of tasks (LLM-Foundry's format)")
    root = data_root or _folder_of(source)
    result = TaskList(source=source, sha256=hashlib.sha256(data).hexdigest())
    for number, task in enumerate(tasks, 1):
        checked = _check_task(task, number, where, {t["label"] for t in result.tasks})
        uri = _resolve(checked["dataset_uri"], root)
        checked["dataset_uri"] = uri
        result.hashes[checked["label"]] = _file_sha256(uri, f"{where}: task {checked['label']!r}")
        result.tasks.append(checked)
    return result


def _check_task(task: object, number: int, where: str, labels: set[str]) -> dict:
    if not isinstance(task, dict):
        raise UserError(f"{where}: task #{number} is not a mapping of task keys")
    name = f"task {task.get('label')!r}" if task.get("label") else f"task #{number}"
    missing = [key for key in REQUIRED if task.get(key) in (None, "")]
    if missing:
        raise UserError(f"{where}: {name} has no {', '.join(missing)}")
    label = task["label"]
    if not isinstance(label, str) or not SAFE_LABEL.match(label):
        raise UserError(f"{where}: {name}: a label may only hold letters, digits, '.', '_' and '-'")
    if label in labels:
        raise UserError(f"{where}: {name} appears twice (labels name the results)")
    if task["icl_task_type"] not in TASK_TYPES:
        raise UserError(f"{where}: {name}: unknown icl_task_type {task['icl_task_type']!r} "
                        f"(one of {', '.join(TASK_TYPES)})")
    shots = task["num_fewshot"]
    if not isinstance(shots, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shots):
        raise UserError(f"{where}: {name}: num_fewshot must be a list of shot counts, e.g. [0, 5]")
    if "num_beams" in task:
        raise UserError(f"{where}: {name}: num_beams is no longer a task key in LLM-Foundry 0.22 (use "
                        "generation_kwargs: {num_beams: N})")
    if not isinstance(task["dataset_uri"], str):
        raise UserError(f"{where}: {name}: dataset_uri must be a path or URL")
    return dict(task)


def _folder_of(source: str) -> str:
    if is_remote(source):
        return source.rsplit("/", 1)[0]
    return str(Path(source).resolve().parent)


def _resolve(uri: str, root: str) -> str:
    """An absolute path or URL: relative values are relative to ``root``."""
    if "://" in uri or Path(uri).is_absolute():
        return uri
    return join(root, uri) if is_remote(root) else str((Path(root) / uri).resolve())


def _file_sha256(uri: str, where: str) -> str | None:
    if uri.startswith("hf://"):
        return None  # a Hugging Face hub dataset: LLM-Foundry loads it itself
    if "://" in uri and not is_remote(uri):
        raise UserError(f"{where}: dataset_uri {uri}: only local paths, s3://, gs:// and hf:// are supported")
    data = read_bytes(uri)
    if data is None:
        raise UserError(f"{where}: dataset_uri {uri}: no such file")
    return hashlib.sha256(data).hexdigest()


def generate_default_tasks(subsets: list[SubsetReport], concat_tokens: int, tokenizer_dir: Path, bos_text: str,
                           eos_text: str, cap: int, out_dir: Path) -> TaskList:
    """One held-out next-word task per subset with val data, its examples written to ``out_dir``."""
    from cpt_tasks.tokenizer import Encoder

    encoder = Encoder(tokenizer_dir, bos_text, eos_text)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = TaskList(source="default")
    for sub in subsets:
        rows = read_val_rows(join(sub.out_root, VAL), concat_tokens, encoder.vocab_size)
        examples = next_word_examples(rows, encoder, cap)
        if not examples:
            continue
        label = f"heldout_{sub.name}"
        path = out_dir / f"{label}.jsonl"
        data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples).encode()
        path.write_bytes(data)
        result.tasks.append({"label": label, "dataset_uri": str(path), "icl_task_type": "language_modeling",
                             "num_fewshot": [0], "max_seq_len": CONTEXT_TOKENS + 2 * LOOKAHEAD})
        result.hashes[label] = hashlib.sha256(data).hexdigest()
        result.examples[label] = len(examples)
    return result


def read_val_rows(split_url: str, concat_tokens: int, vocab_size: int) -> list[list[int]]:
    """Every row of a verified MDS split, in order, each shard checked against the index as verify checks it."""
    from cpt_tasks.data.shards import check_shard, read_index

    index = read_index(split_url)
    if index is None:
        raise UserError(f"{split_url}: no MDS index; the data changed since verification, verify again")
    rows: list[list[int]] = []
    for shard in index["shards"]:
        checked = check_shard(split_url, shard, concat_tokens, vocab_size, keep=shard["samples"])
        if checked.problems:
            raise UserError(f"{split_url}: {'; '.join(checked.problems)}; the data changed since verification")
        rows.extend(checked.sample_rows)
    return rows


def next_word_examples(rows: list[list[int]], encoder, cap: int) -> list[dict]:
    """Held-out next-word examples from token rows: documents are the pieces between BOS/EOS ids."""
    framing = {encoder.bos_id, encoder.eos_id}
    candidates: list[tuple[list[int], int]] = []  # (document piece, end of the context)
    for row in rows:
        start = 0
        for i, token in enumerate([*row, None]):
            if token is None or token in framing:
                piece = row[start:i]
                candidates += [(piece, end) for end in range(MIN_CONTEXT + STRIDE, len(piece) - 1, STRIDE)]
                start = i + 1
    step = max(1, len(candidates) // (2 * cap))
    found = [e for e in (_example(piece, end, encoder) for piece, end in candidates[::step]) if e]
    if len(found) > cap:
        found = [found[i * len(found) // cap] for i in range(cap)]
    return found


def _example(piece: list[int], end: int, encoder) -> dict | None:
    """Context up to ``end`` and the next whole word, if the text there is a word boundary (the harness strips
    the context and puts one space before the continuation: only ``context + " " + word`` survives that)."""
    context = encoder.decode(piece[max(0, end - CONTEXT_TOKENS):end])
    ahead = encoder.decode(piece[max(0, end - CONTEXT_TOKENS):end + LOOKAHEAD])
    if not context.strip() or context != context.rstrip() or not ahead.startswith(context) or "\ufffd" in ahead:
        return None
    word = NEXT_WORD.match(ahead[len(context):])
    if word is None or len(ahead) == len(context) + len(word.group(0)):  # the word may go on past the lookahead
        return None
    return {"context": context, "continuation": " " + word.group(1)}
