"""The checked inputs of a run, shared by training and evaluation: the verification report (never a plan), the
data manifests it names and the framing they recorded, the tokenizer the data was made with, models staged as
local folders and checked against the data, and the one completeness check of a Hugging Face export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cpt_tasks.documents import find_document_sha256, read_document
from cpt_tasks.documents.convert_docs import ConvertManifest, Framing, manifest_location
from cpt_tasks.documents.train_docs import ConsumedData, ModelSource
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.errors import UserError
from cpt_tasks.storage import download_file, is_remote, join, list_files
from cpt_tasks.tokenizer import Encoder, describe, resolve_tokenizer_dir

MODEL_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]


def load_report(location: str) -> tuple[VerifyReport, str]:
    """The verification report and its sha256; UserError unless it is a passed `cpt-tasks verify` report."""
    report, sha256 = read_document(location, VerifyReport, "--report")
    if not report.ok:
        failed = [s.name for s in report.subsets if s.status == "failed"]
        raise UserError(f"--report {location}: verification failed ({', '.join(failed) or 'see the report'}); "
                        "training runs only on verified data")
    if not report.subsets:
        raise UserError(f"--report {location}: names no subsets")
    return report, sha256


def check_data(report: VerifyReport) -> tuple[list[ConsumedData], Framing]:
    """Each subset's manifest, still there with the verified fingerprint (location, sha256, counts), and the
    framing every conversion recorded (they must agree: one model is trained on all of them)."""
    consumed, framings = [], {}
    for sub in report.subsets:
        manifest, sha256 = find_document_sha256(manifest_location(sub.out_root), ConvertManifest) or (None, "")
        if manifest is None or manifest.fingerprint != sub.fingerprint:
            found = "no manifest" if manifest is None else f"fingerprint {manifest.fingerprint[:12]}"
            raise UserError(f"subset {sub.name}: {sub.manifest} has {found}, the verified data had "
                            f"{sub.fingerprint[:12]}; the data changed since verification, verify again")
        framings[sub.name] = manifest.framing
        consumed.append(ConsumedData(subset=sub.name, manifest=sub.manifest, fingerprint=sub.fingerprint,
                                     manifest_sha256=sha256, out_root=sub.out_root,
                                     proportion=sub.proportion, train_tokens=sub.train_tokens,
                                     val_tokens=sub.val_tokens, role=sub.role, epochs=sub.epochs))
    distinct = {f.model_dump_json() for f in framings.values()}
    if len(distinct) > 1:
        shown = ", ".join(f"{name} {f.bos_text!r}/{f.eos_text!r}" for name, f in framings.items())
        raise UserError(f"the subsets were framed with different special tokens ({shown}); one run trains on "
                        "one framing: convert them alike")
    return consumed, next(iter(framings.values()))


def resolve_tokenizer(report: VerifyReport, framing: Framing) -> tuple[Path, int]:
    """(local folder, vocabulary size) of the report's tokenizer; UserError if its files differ from the
    ones the data was tokenized with, or its ids for the recorded BOS/EOS texts differ from the data's."""
    tok = report.tokenizer
    folder = resolve_tokenizer_dir(tok.name, tok.revision).resolve()
    encoder = Encoder(folder, framing.bos_text, framing.eos_text)
    if describe(tok.name, folder, encoder).sha256 != tok.sha256:
        raise UserError(f"tokenizer {tok.name}: its files differ from the ones the data was tokenized with "
                        f"(sha256 {tok.sha256[:12]} in the report)")
    if (encoder.bos_id, encoder.eos_id) != (framing.bos_id, framing.eos_id):
        raise UserError(f"tokenizer {tok.name}: {framing.bos_text!r}/{framing.eos_text!r} are ids "
                        f"{encoder.bos_id}/{encoder.eos_id}, the data was framed with {framing.bos_id}/"
                        f"{framing.eos_id}")
    return folder, encoder.vocab_size


def stage_model(model: str, revision: str | None, cache: Path) -> tuple[Path, ModelSource]:
    """A local folder of the pretrained model (object storage and hub models are downloaded once into
    ``cache``) and how it was found, for the run manifest."""
    if is_remote(model):
        return _download_folder(model, cache), ModelSource(source=model)
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        if not (path / "config.json").is_file():
            raise UserError(f"--model {model}: no such model folder (a folder with config.json and weights)")
        return path.resolve(), ModelSource(source=model, path=str(path.resolve()))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = snapshot_download(model, revision=revision, allow_patterns=MODEL_PATTERNS)
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise UserError(f"--model {model}: {type(exc).__name__}: {exc}") from exc
    return Path(folder), ModelSource(source=model, revision=Path(folder).name, path=folder)


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


def hf_export_problem(location: str) -> str | None:
    """Why the Hugging Face export at ``location`` is not complete (None: config.json and safetensors weights
    are there): the one test of an export, for the run that writes it and the evaluation that reads it."""
    names = set(list_files(location))
    if "config.json" in names and any(n.endswith(".safetensors") for n in names):
        return None
    return f"the Hugging Face export {location} is missing or incomplete ({sorted(names)})"
