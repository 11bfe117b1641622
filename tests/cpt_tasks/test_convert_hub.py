"""The Hub read as production reads it: the real ``huggingface_hub`` client against a local Hub server
(tests/hub_server.py) holding the sample's files, with faults injected: 503s, a connection reset mid-file, a
stall, corrupt bytes of the right size, a vanished file and a dead server, each with its outcome."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import call_cli, read_rows
from hub_server import HubRepo, HubServer, dead_endpoint

from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.convert.convert_job import convert
from cpt_tasks.storage import network

DATASET = "allenai/dolmino-test"
SUBSET = "wiki"
COMMIT = HubRepo(DATASET, {}).commit
FIRST, SECOND = "data/wiki/0000/wiki-0000.json.zst", "data/wiki/0001/wiki-0001.json.zst"


@pytest.fixture
def hub(sample_dir, endpoint):
    """The sample's wiki and math subsets on a local Hub; the second wiki file is a plain git blob (non-LFS)."""
    server = HubServer(HubRepo.from_folder(DATASET, sample_dir, ["wiki", "math"], plain={SECOND})).start()
    endpoint(server.url)
    yield server
    server.stop()


def tree_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def options(tokenizer_dir, out, *extra) -> list:
    return ["convert", "--dataset", DATASET, "--data_subset", SUBSET, "--tokenizer", tokenizer_dir,
            "--out_root", out, "--concat_tokens", 256, "--num_workers", 0, *extra]


def config(tokenizer_dir, out, **kw) -> ConvertConfig:
    return ConvertConfig(dataset=DATASET, data_subset=SUBSET, tokenizer=str(tokenizer_dir), out_root=str(out),
                         concat_tokens=256, num_workers=0, **kw)


@pytest.fixture
def clean_rows(sample_dir, tokenizer_dir, tmp_path):
    """Rows of the same subset converted from the local copy of the files (no network)."""
    local = ConvertConfig(dataset=str(sample_dir), data_subset=SUBSET, tokenizer=str(tokenizer_dir),
                          out_root=str(tmp_path / "local"), concat_tokens=256, num_workers=0)
    convert(local, progress_interval=0)
    return read_rows(tmp_path / "local" / "train")


def test_hub_converts_like_its_local_copy(hub, tokenizer_dir, tmp_path, clean_rows):
    result = convert(config(tokenizer_dir, tmp_path / "hub"), progress_interval=0)
    assert np.array_equal(read_rows(tmp_path / "hub" / "train"), clean_rows)
    source = result.manifest.source
    assert source.kind == "hub" and source.revision == COMMIT
    assert [f.path for f in source.files] == [FIRST, SECOND]
    assert len(hub.requests("GET", f"/api/datasets/{DATASET}/tree/")) == 2  # the listing was paged
    assert not any(r[2] for r in hub.log)  # no Range request on a clean run


def test_shuffled_hub_conversion_is_byte_identical_to_the_local_one(hub, sample_dir, tokenizer_dir, tmp_path):
    """The listing (paged, in the server's order) is sorted, ``revision main`` is pinned to the commit, every LFS
    sha256 is the file's own, and the MDS folders are byte for byte those of the local copy."""
    common = dict(data_subset="math", tokenizer=str(tokenizer_dir), concat_tokens=256, shuffle=True, num_workers=1)
    result = convert(ConvertConfig(dataset=DATASET, revision="main", out_root=str(tmp_path / "hub"), **common),
                     progress_interval=0)
    convert(ConvertConfig(dataset=str(sample_dir), out_root=str(tmp_path / "local"), **common), progress_interval=0)
    assert tree_bytes(tmp_path / "hub") == tree_bytes(tmp_path / "local")
    files = result.manifest.source.files
    assert result.manifest.source.revision == COMMIT and [f.path for f in files] == sorted(f.path for f in files)
    assert [f.sha256 for f in files] == [hashlib.sha256((sample_dir / f.path).read_bytes()).hexdigest()
                                         for f in files]


def test_503s_are_retried_with_identical_rows(hub, tokenizer_dir, tmp_path, clean_rows):
    hub.faults.statuses = {"info": [503, 503], "cursor=": [502], "tree": [429], "cdn": [503],
                           f"resolve/{COMMIT}/{SECOND}": [500]}
    convert(config(tokenizer_dir, tmp_path / "hub"), progress_interval=0)
    assert np.array_equal(read_rows(tmp_path / "hub" / "train"), clean_rows)
    assert len(hub.requests("GET", f"/api/datasets/{DATASET}")) - len(hub.requests("GET", "/tree/")) == 3
    assert not any(hub.faults.statuses.values())  # every injected failure was met, and outlived


def test_reset_mid_file_resumes_by_range(hub, tokenizer_dir, tmp_path, clean_rows):
    hub.faults.cut_after = {FIRST: [20_000, 15_000], SECOND: [30_000]}
    convert(config(tokenizer_dir, tmp_path / "hub"), progress_interval=0)
    assert np.array_equal(read_rows(tmp_path / "hub" / "train"), clean_rows)
    ranges = [r[2] for r in hub.log if r[2] and (r[1].startswith("/cdn/") or r[1].endswith(SECOND))]
    assert ranges == ["bytes=20000-", "bytes=35000-", "bytes=30000-"]  # each resumed where it was cut
    assert hub.served == {FIRST: len(hub.repo.files[FIRST]), SECOND: len(hub.repo.files[SECOND])}


def test_corrupt_bytes_of_the_right_size_exit_3(hub, tokenizer_dir, tmp_path):
    hub.faults.corrupt = {FIRST}
    run = call_cli(*options(tokenizer_dir, tmp_path / "bad"))
    assert run.returncode == 3, run.stderr
    assert FIRST in run.stderr and "sha256" in run.stderr
    assert not (tmp_path / "bad" / "manifest.json").exists()


def test_corrupt_git_blob_is_checked_by_its_blob_id(hub, tokenizer_dir, tmp_path):
    hub.faults.corrupt = {SECOND}  # the non-LFS file: its listing gives the git blob id (sha1)
    run = call_cli(*options(tokenizer_dir, tmp_path / "bad"))
    assert run.returncode == 3, run.stderr
    assert SECOND in run.stderr and "sha1" in run.stderr
    assert not (tmp_path / "bad" / "manifest.json").exists()


def test_file_cut_short_by_the_budget_is_still_verified(hub, tokenizer_dir, tmp_path):
    hub.faults.corrupt_tail = {FIRST}  # the rows the budget needs come from its intact head
    run = call_cli(*options(tokenizer_dir, tmp_path / "cut", "--max_tokens", 2 * 256))
    assert run.returncode == 3, run.stderr
    assert FIRST in run.stderr and not (tmp_path / "cut" / "manifest.json").exists()
    # drained to its end; the next file never opened
    assert hub.served[FIRST] == len(hub.repo.files[FIRST]) and SECOND not in hub.served


def test_budget_met_mid_file_drains_and_passes(hub, tokenizer_dir, tmp_path):
    result = convert(config(tokenizer_dir, tmp_path / "ok", max_tokens=2 * 256), progress_interval=0)
    assert result.manifest.splits["train"].samples == 2
    assert hub.served == {FIRST: len(hub.repo.files[FIRST])}


def test_vanished_file_names_file_and_revision(hub, tokenizer_dir, tmp_path):
    hub.faults.missing = {SECOND}
    run = call_cli(*options(tokenizer_dir, tmp_path / "gone"))
    assert run.returncode == 3, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert SECOND in line and COMMIT in line and "404" in line and "Traceback" not in run.stderr
    assert not (tmp_path / "gone" / "manifest.json").exists()


def test_stall_fails_within_the_bound(hub, tokenizer_dir, tmp_path):
    hub.faults.stall = {"/cdn/"}
    started = time.monotonic()
    run = call_cli(*options(tokenizer_dir, tmp_path / "stall", "--connect_timeout", 0.5, "--read_timeout", 0.5,
                            "--max_retries", 2))
    took = time.monotonic() - started
    assert run.returncode == 1, run.stderr
    bound = network.Network(0.5, 0.5, 2).worst_case_seconds(hops=2)
    assert took < bound + 5, (took, bound)  # + the conversion's own start-up
    line = run.stderr.strip().splitlines()[-1]
    assert "127.0.0.1" in line and FIRST in line and "Traceback" not in run.stderr
    assert not (tmp_path / "stall" / "manifest.json").exists()


def test_stalled_listing_fails_within_the_bound(hub, tokenizer_dir, tmp_path):
    hub.faults.stall = {"info"}
    started = time.monotonic()
    run = call_cli(*options(tokenizer_dir, tmp_path / "stall", "--read_timeout", 0.3, "--max_retries", 1))
    assert run.returncode == 1, run.stderr
    assert time.monotonic() - started < 5  # 2 attempts of 0.3 s, not 2 × 60 s
    assert "dataset info" in run.stderr and DATASET in run.stderr


def test_dead_server_exits_1_naming_the_host(endpoint, tokenizer_dir, tmp_path):
    url = dead_endpoint()
    endpoint(url)
    started = time.monotonic()
    run = call_cli(*options(tokenizer_dir, tmp_path / "dead", "--max_retries", 3))
    assert run.returncode == 1, run.stderr
    assert time.monotonic() - started < 5
    line = run.stderr.strip().splitlines()[-1]
    assert url.removeprefix("http://") in line and DATASET in line and "4 attempts" in line
    assert "Traceback" not in run.stderr and not (tmp_path / "dead").exists()


def test_plan_honours_the_conversion_timeouts(hub, tokenizer_dir, tmp_path):
    hub.faults.stall = {"tree"}
    started = time.monotonic()
    run = call_cli("plan", "--dataset", DATASET, "--subsets", SUBSET, "--tokenizer", tokenizer_dir,
                   "--out_root", tmp_path / "root", "--total_tokens", 10 * 256, "--concat_tokens", 256,
                   "--val_fraction", 0,
                   "--convert_options", '{"read_timeout": 0.3, "max_retries": 1}')
    assert run.returncode == 1, run.stderr
    assert time.monotonic() - started < 5
    assert "listing of data/wiki" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(("extra", "named"), [(["--data_subset", "nosuch"], "data/nosuch"),
                                              (["--revision", "v9"], "revision v9")])
def test_unknown_subset_or_revision_is_a_user_error(hub, tokenizer_dir, tmp_path, extra, named):
    run = call_cli(*options(tokenizer_dir, tmp_path / "x"), *extra)
    assert run.returncode == 2, run.stderr
    assert named in run.stderr and "Traceback" not in run.stderr


def test_offline_mode_is_a_user_error_not_a_retry(hub, tokenizer_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    reset_sessions()
    run = call_cli(*options(tokenizer_dir, tmp_path / "x"))
    assert run.returncode == 2 and "HF_HUB_OFFLINE" in run.stderr, run.stderr
    assert not hub.log  # nothing was sent, nothing retried
