"""What a run trains on, checked before any process starts: the verification report (never a plan), the data
manifests it names, the tokenizer the data was made with, and the pretrained model (staged locally)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cpt_tasks.convert.manifest import read_manifest
from cpt_tasks.errors import UserError
from cpt_tasks.storage import download_file, is_remote, join, list_files, read_bytes, read_document
from cpt_tasks.tokenizer import Encoder, describe, resolve_tokenizer_dir
from cpt_tasks.verify.run import REPORT_FORMAT

MODEL_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]


def load_report(location: str) -> tuple[dict, str]:
    """The verification report and its sha256; UserError unless it is a passed `cpt-tasks verify` report."""
    report, sha256 = read_document(location, "--report", REPORT_FORMAT,
                                   "a verification report (the verify-report.json that `cpt-tasks verify` writes)")
    if report.get("ok") is not True:
        failed = [s["name"] for s in report.get("subsets", []) if s.get("status") == "failed"]
        raise UserError(f"--report {location}: verification failed ({', '.join(failed) or 'see the report'}); "
                        "training runs only on verified data")
    if not report.get("subsets"):
        raise UserError(f"--report {location}: names no subsets")
    return report, sha256


def check_data(report: dict) -> list[dict]:
    """Each subset's manifest, still there with the verified fingerprint: location, sha256, counts."""
    consumed = []
    for sub in report["subsets"]:
        manifest = read_manifest(sub["out_root"])
        if manifest is None or manifest.get("fingerprint") != sub["fingerprint"]:
            found = "no manifest" if manifest is None else f"fingerprint {manifest.get('fingerprint', '')[:12]}"
            raise UserError(f"subset {sub['name']}: {sub['manifest']} has {found}, the verified data had "
                            f"{sub['fingerprint'][:12]}; the data changed since verification, verify again")
        raw = read_bytes(sub["manifest"]) or b""
        consumed.append({"subset": sub["name"], "manifest": sub["manifest"], "fingerprint": sub["fingerprint"],
                         "manifest_sha256": hashlib.sha256(raw).hexdigest(), "out_root": sub["out_root"],
                         "proportion": sub["proportion"], "train_tokens": sub["train_tokens"],
                         "val_tokens": sub["val_tokens"]})
    return consumed


def resolve_tokenizer(report: dict) -> tuple[Path, int]:
    """(local folder, vocabulary size) of the report's tokenizer; UserError if its files differ from the
    ones the data was tokenized with."""
    tok = report["tokenizer"]
    folder = resolve_tokenizer_dir(tok["name"], tok.get("revision")).resolve()
    encoder = Encoder(folder, "<|begin_of_text|>", "<|end_of_text|>")
    if describe(tok["name"], folder, encoder).sha256 != tok["sha256"]:
        raise UserError(f"tokenizer {tok['name']}: its files differ from the ones the data was tokenized with "
                        f"(sha256 {tok['sha256'][:12]} in the report)")
    return folder, encoder.vocab_size


def stage_model(model: str, revision: str | None, cache: Path) -> tuple[Path, dict]:
    """A local folder of the pretrained model (object storage and hub models are downloaded once into
    ``cache``) and how it was found, for the run manifest."""
    if is_remote(model):
        return _download_folder(model, cache), {"source": model}
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        if not (path / "config.json").is_file():
            raise UserError(f"--model {model}: no such model folder (a folder with config.json and weights)")
        return path.resolve(), {"source": model, "path": str(path.resolve())}
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = snapshot_download(model, revision=revision, allow_patterns=MODEL_PATTERNS)
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise UserError(f"--model {model}: {type(exc).__name__}: {exc}") from exc
    return Path(folder), {"source": model, "revision": Path(folder).name, "path": folder}


def _download_folder(url: str, cache: Path) -> Path:
    names = [n for n in list_files(url) if "/" not in n]
    if "config.json" not in names:
        raise UserError(f"--model {url}: no config.json there (a folder with config.json and weights)")
    target = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
    marker = target / ".complete"
    if marker.is_file() and json.loads(marker.read_text()) == names:
        return target
    for name in names:
        download_file(join(url, name), str(target / name))
    marker.write_text(json.dumps(names))
    return target


def check_model(folder: Path, vocab_size: int, concat_tokens: int, model: str) -> dict:
    """The model's config.json; UserError when it cannot take the data (vocabulary, context)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except ValueError as exc:
        raise UserError(f"--model {model}: config.json is not valid JSON: {exc}") from None
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise UserError(f"--model {model}: no weights (*.safetensors) next to config.json")
    if config.get("vocab_size", 0) < vocab_size:
        raise UserError(f"--model {model}: vocabulary of {config.get('vocab_size')} ids is smaller than the "
                        f"tokenizer's {vocab_size}")
    context = config.get("max_position_embeddings")
    if context is not None and context < concat_tokens:
        raise UserError(f"--model {model}: context {context} is shorter than the data's rows ({concat_tokens})")
    return config
