"""`cpt-tasks train --sweep_fraction`: one proxy run of a replay sweep trains on its fraction's draw from the
sweep's verified data. The YAML's streams choose exactly the draw's rows (a component drawing none has no
stream; the val splits of every component stay evaluated), one pass over the draw is the default length, and
mosaicml-streaming's epoch over those streams holds exactly the draw; a fraction the sweep lacks, or a report
that is not a sweep's, exits 2; a real short run on the tiny model records its fraction and trains the draw's rows.

The verify report of a sweep is made here from the shared small mix (``MIX``: dclm 13, flan 4 and math 5 train
rows of 128 tokens, one val row each) with a ``sweep`` added through its model, as verify writes one for a
sweep's plan."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONCAT, SUBSETS, call_cli

from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.documents import read_document, write_document
from cpt_tasks.documents.plan_docs import PlannedSweep, SweepDraw
from cpt_tasks.documents.train_docs import RunManifest
from cpt_tasks.documents.verify_docs import VerifyReport
from cpt_tasks.layout import sweep_run_id
from cpt_tasks.runs.status import find_finished_run, run_paths
from cpt_tasks.train.train_job import _dump_yaml
from cpt_tasks.train.train_yaml import YamlInputs, build_yaml, settings, settings_fingerprint, train_length

# math is the domain: fraction 0 repeats it (8 rows of its 5), 0.25 subsamples dclm (5 of 13), leaves flan out
# and repeats math (7 of 5), 0.5 draws from every component; 12 rows each: 3 steps of 4 rows
DRAWS = {0.0: {"dclm": 0, "flan": 0, "math": 12}, 0.25: {"dclm": 5, "flan": 0, "math": 7},
         0.5: {"dclm": 4, "flan": 2, "math": 6}}
FRACTION, BATCH = 0.25, 4


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory, mix_report) -> Path:
    """The shared mix's verify report with a replay sweep of three fractions, written beside it elsewhere."""
    report = read_document(str(mix_report), VerifyReport)[0]
    sweep = PlannedSweep(fractions=sorted(DRAWS), draws=[SweepDraw(fraction=f, rows=r) for f, r in DRAWS.items()])
    location = tmp_path_factory.mktemp("sweep") / "verify-report.json"
    write_document(str(location), report.model_copy(update={"sweep": sweep}))
    return location


def _config(report: Path, tmp_path: Path, **over) -> TrainConfig:
    values = dict(report=str(report), model="unused", save_root=str(tmp_path / "runs"), run_id="manual__sweep",
                  global_batch_size=BATCH, device_microbatch_size=2, num_workers=0, local_dir=str(tmp_path / "local"))
    return TrainConfig(**{**values, **over})


def _yaml(cfg: TrainConfig, scratch: Path) -> dict:
    report = read_document(cfg.report, VerifyReport)[0]
    where = YamlInputs(run=run_paths(cfg.save_root, report.plan.fingerprint, cfg.run_id),
                       length=train_length(cfg, report), model_dir="model", tokenizer_dir="tokenizer",
                       scratch=scratch, gpus=0)
    return build_yaml(cfg, report, where)


def test_the_streams_choose_the_draw_and_one_pass_over_it_is_the_default_length(sweep_report, tmp_path):
    cfg = _config(sweep_report, tmp_path, sweep_fraction=FRACTION)
    generated = _yaml(cfg, tmp_path / "scratch")
    streams = generated["train_loader"]["dataset"]["streams"]
    assert {name: stream["choose"] for name, stream in streams.items()} == {"dclm": 5, "math": 7}  # no flan
    assert not any("proportion" in stream for stream in streams.values())
    assert [e["label"] for e in generated["eval_loaders"]] == SUBSETS  # forgetting measured on every subset
    report = read_document(str(sweep_report), VerifyReport)[0]
    length = train_length(cfg, report)
    assert (length.max_duration, length.final_step) == (f"{12 * CONCAT}tok", 3)  # 12 rows, 4 a step
    assert generated["max_duration"] == f"{12 * CONCAT}tok"
    assert generated["variables"]["cpt_settings"]["sweep_fraction"] == FRACTION
    assert train_length(cfg.model_copy(update={"max_duration": "2ba"}), report).max_duration == "2ba"

    fingerprints = {f: settings_fingerprint(settings(c, train_length(c, report)))
                    for f in DRAWS for c in [cfg.model_copy(update={"sweep_fraction": f})]}
    assert len(set(fingerprints.values())) == len(DRAWS)  # each fraction's run is its own
    only_domain = _yaml(cfg.model_copy(update={"sweep_fraction": 0.0}), tmp_path / "scratch")
    assert {n: s["choose"] for n, s in only_domain["train_loader"]["dataset"]["streams"].items()} == {"math": 12}
    assert [e["label"] for e in only_domain["eval_loaders"]] == SUBSETS


def test_a_plain_run_of_a_sweeps_report_is_as_before(sweep_report, mix_report, tmp_path):
    """Without --sweep_fraction the report's sweep changes nothing: the YAML is byte for byte the plain mix's."""
    plain = _dump_yaml(_yaml(_config(mix_report, tmp_path), tmp_path / "scratch"))
    assert _dump_yaml(_yaml(_config(sweep_report, tmp_path), tmp_path / "scratch")) == plain
    body = yaml.safe_load(plain)
    assert "sweep_fraction" not in body["variables"]["cpt_settings"]
    assert all("proportion" in s for s in body["train_loader"]["dataset"]["streams"].values())
    assert train_length(_config(mix_report, tmp_path), read_document(str(mix_report), VerifyReport)[0]) \
        .max_duration == f"{22 * CONCAT}tok"  # the verified total


def test_streaming_draws_exactly_the_draw_in_one_epoch(sweep_report, tmp_path):
    """mosaicml-streaming's own dataset over the YAML's streams (what LLM-Foundry builds: Stream(**stream)):
    absolute weights, so an epoch is the sum of the choices, each stream's samples its own rows."""
    from streaming import Stream, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    streams = _yaml(_config(sweep_report, tmp_path, sweep_fraction=0.5), tmp_path / "scratch")[
        "train_loader"]["dataset"]["streams"]
    clean_stale_shared_memory()
    dataset = StreamingDataset(streams=[Stream(**s) for s in streams.values()], batch_size=BATCH, shuffle=True,
                               shuffle_seed=17)
    assert dataset.epoch_size == sum(DRAWS[0.5].values()) == 12
    _, sample_ids = dataset.resample_streams(0)
    shard = np.searchsorted(dataset.sample_offset_per_shard, sample_ids, side="right") - 1
    drawn = Counter(list(streams)[i] for i in dataset.stream_per_shard[shard])
    assert dict(drawn) == DRAWS[0.5]
    flan = list(streams).index("flan")  # 2 of its 4 rows, none twice
    assert len(set(sample_ids[dataset.stream_per_shard[shard] == flan])) == 2


@pytest.mark.parametrize("fraction, report, message", [
    (0.3, "sweep", "replay fraction 0.3 is not one of the sweep's (0, 0.25, 0.5)"),
    (0.25, "plain", "is not a replay sweep's (it has no sweep"),
])
def test_a_fraction_the_sweep_lacks_or_a_report_without_a_sweep_exits_2(sweep_report, mix_report, tmp_path,
                                                                     fraction, report, message):
    location = sweep_report if report == "sweep" else mix_report
    run = call_cli("train", "--report", location, "--model", tmp_path / "no-model", "--save_root",
                   tmp_path / "runs", "--run_id", "manual__sweep", "--sweep_fraction", fraction)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and f"--sweep_fraction {fraction:g}: the verify report {location}" in run.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written


@pytest.mark.slow
@pytest.mark.llmfoundry
def test_a_proxy_run_trains_its_draw_and_records_its_fraction(sweep_report, tiny_model, tmp_path):
    from train_helpers import run_train, train_flags

    save_root = str(tmp_path / "runs")
    run_id = sweep_run_id("manual__sweep", FRACTION)
    flags = train_flags(sweep_report, tiny_model, save_root, run_id, tmp_path / "local", sweep_fraction=FRACTION,
                        save_interval="1dur")
    store = f"file://{tmp_path / 'mlruns'}"
    result, _ = run_train(flags, env={"MLFLOW_TRACKING_URI": store})
    drawn = sum(DRAWS[FRACTION].values())
    assert result["status"] == "trained" and result["final_step"] == drawn // BATCH == 3
    assert result["train_tokens"] == drawn * CONCAT  # the draw's 12 rows, one pass
    manifest = read_document(result["run_manifest"], RunManifest)[0]
    assert manifest.sweep_fraction == FRACTION and manifest.settings["sweep_fraction"] == FRACTION
    assert manifest.planned_final_step == manifest.final_step == 3 and manifest.train_tokens == drawn * CONCAT
    assert manifest.run_id == run_id and manifest.run_name.endswith(f"-{run_id}")
    history = [json.loads(line) for line in open(manifest.metrics_history)]
    assert [r["step"] for r in history] == [1, 2, 3] and set(history[-1]["eval"]) == set(SUBSETS)
    generated = yaml.safe_load(open(manifest.train_yaml))
    assert {n: s["choose"] for n, s in generated["train_loader"]["dataset"]["streams"].items()} == \
        {"dclm": 5, "math": 7}
    assert find_finished_run(save_root, manifest.plan.fingerprint) is None  # a proxy run is found by its run id

    from mlflow import MlflowClient

    assert manifest.mlflow.status == "tracked"
    tracked = MlflowClient(store).get_run(manifest.mlflow.run_id).data
    assert tracked.params["sweep_fraction"] == "0.25" and tracked.tags["cpt.sweep_fraction"] == "0.25"
