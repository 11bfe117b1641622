"""A subset converted in parts: exact rows through the merged index, no document in two parts, byte-identical
reruns, a lost part redone alone, and a part whose files run out stopped by verify before training."""

import shutil
from pathlib import Path

import orjson
import pytest
import zstandard
from conftest import call_cli, read_rows

from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.verify_config import VerifyConfig
from cpt_tasks.data.parts import shares, slices
from cpt_tasks.documents import write_document
from cpt_tasks.documents.convert_docs import read_manifest
from cpt_tasks.plan.plan_job import plan, plan_entries
from cpt_tasks.verify.verify_job import verify

CONCAT = 128
WEIGHTS = (3, 1, 2, 1, 2, 1)  # six input files of unequal sizes


def records(sample_dir, subset):
    out = []
    for path in sorted((sample_dir / "data" / subset).rglob("*.json.zst")):
        out += [orjson.loads(x) for x in zstandard.ZstdDecompressor().decompress(path.read_bytes()).splitlines()]
    return out


def write_subset(root: Path, docs: list[dict], weights=WEIGHTS) -> Path:
    """``docs`` cut into files of the given relative sizes, in the hub layout (data/dclm/000N/dclm-000N.jsonl)."""
    bounds = [0]
    for w in weights:
        bounds.append(bounds[-1] + len(docs) * w // sum(weights))
    bounds[-1] = len(docs)
    for n, (a, b) in enumerate(zip(bounds, bounds[1:])):
        path = root / "data" / "dclm" / f"{n:04d}" / f"dclm-{n:04d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs[a:b]))
    return root


def plan_cfg(source, tokenizer_dir, out, **kw) -> PlanConfig:
    values = dict(dataset=str(source), subsets=["dclm"], tokenizer=str(tokenizer_dir), out_root=str(out),
                  total_tokens=40_000, concat_tokens=CONCAT, val_fraction=0.1, part_tokens=12_000, num_workers=1)
    return PlanConfig(**{**values, **kw})


def convert_all(location, sub, parts=None) -> list[str]:
    statuses = []
    for part in range(sub.part_count) if parts is None else parts:
        run = call_cli("convert-subset", "--plan", location, "--subset", sub.name, "--part", part, check=True)
        statuses.append("already_complete" if "already complete:" in run.stdout else "converted")
    return statuses


def tree(root) -> dict[str, bytes]:
    """The shards and indexes (not the manifests: they hold timings; not the shards streaming decompressed in place
    when a test read them), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and (p.suffix == ".zstd" or p.name == "index.json")}


@pytest.fixture(scope="module")
def source(tmp_path_factory, sample_dir):
    docs = records(sample_dir, "dclm") + records(sample_dir, "flan")
    return write_subset(tmp_path_factory.mktemp("parts-src"), docs)


@pytest.fixture(scope="module")
def parted(tmp_path_factory, source, tokenizer_dir):
    out = tmp_path_factory.mktemp("parts-out")
    body = plan(plan_cfg(source, tokenizer_dir, out / "data"))
    location = str(out / "plan.json")
    write_document(location, body)
    sub = body.subsets[0]
    convert_all(location, sub)
    return body, sub, location, out


def test_the_plan_cuts_a_big_component_into_parts_with_exact_shares(parted):
    body, sub, location, _ = parted
    assert sub.part_count == 4 and sub.convert.parts == 4
    assert sum(p.max_tokens for p in sub.parts) == sub.train_rows * CONCAT == sub.max_tokens // CONCAT * CONCAT
    assert sum(p.val_tokens for p in sub.parts) == sub.val_rows * CONCAT
    assert sum(p.files for p in sub.parts) == 6 and len({p.fingerprint for p in sub.parts}) == 4
    entries = plan_entries(body, location)
    assert [e.label for e in entries] == ["dclm/0", "dclm/1", "dclm/2", "dclm/3"]
    assert [e.max_tokens for e in entries] == [p.max_tokens for p in sub.parts]


def test_four_parts_give_exactly_the_planned_rows_through_the_merged_index(parted, tmp_path):
    body, sub, location, _ = parted
    root = Path(sub.out_root)
    manifest = read_manifest(sub.out_root)
    assert manifest is not None and manifest.fingerprint == sub.fingerprint and len(manifest.parts) == 4
    for split, rows in (("train", sub.train_rows), ("val", sub.val_rows)):
        merged = read_rows(root / split)  # streaming's own reader, through the merged index.json
        assert merged.shape == (rows, CONCAT) and manifest.splits[split].samples == rows
        pieces = [read_rows(root / split / f"part-{n:05d}") for n in range(4)]
        assert sum(len(p) for p in pieces) == rows
        assert (merged == __import__("numpy").concatenate(pieces)).all()  # the parts' rows, in part order
    files = [set(p.files) for p in manifest.parts]
    assert all(not (a & b) for i, a in enumerate(files) for b in files[i + 1:])  # no document in two parts
    result = verify(VerifyConfig(plan=location, report_dir=str(tmp_path), num_workers=2))
    checks = {c.check: c for c in result.report.subsets[0].checks}
    assert result.ok, [c for c in checks.values() if not c.ok]
    assert {"parts", "parts:rows", "parts:files", "parts:index:train", "parts:index:val", "disjoint"} <= set(checks)


@pytest.mark.llmfoundry
def test_llmfoundry_reads_the_merged_parts_as_one_dataset(parted):
    from llmfoundry.data.text_data import StreamingTextDataset
    from streaming.base.util import clean_stale_shared_memory
    from transformers import AutoTokenizer

    _, sub, _, _ = parted
    clean_stale_shared_memory()
    tokenizer = AutoTokenizer.from_pretrained(sub.convert.tokenizer)
    ds = StreamingTextDataset(tokenizer=tokenizer, max_seq_len=CONCAT, local=sub.out_root, split="train",
                              shuffle=False, batch_size=1)
    assert len(ds) == sub.train_rows
    rows = read_rows(Path(sub.out_root) / "train")
    assert all((ds[i].numpy() == rows[i]).all() for i in (0, len(ds) // 2, len(ds) - 1))


def test_two_runs_are_byte_identical_and_a_lost_part_is_redone_alone(parted, source, tokenizer_dir, tmp_path):
    body, sub, _, _ = parted
    again = plan(plan_cfg(source, tokenizer_dir, tmp_path / "data"))
    assert again.subsets[0].fingerprint == sub.fingerprint  # parts are part of the plan's fingerprint: same N
    location = str(tmp_path / "plan.json")
    write_document(location, again)
    convert_all(location, again.subsets[0])
    first, second = Path(sub.out_root), Path(again.subsets[0].out_root)
    assert tree(first) == tree(second)
    # part 2 killed mid-way: its marker never written, a shard cut short, so nothing merged yet
    part2 = second / "train" / "part-00002"
    shard = sorted(part2.glob("shard.*"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    for gone in (second / "parts" / "part-00002.json", second / "manifest.json"):
        gone.unlink()
    statuses = convert_all(location, again.subsets[0])
    assert statuses == ["already_complete", "already_complete", "converted", "already_complete"]
    assert tree(second) == tree(first) and read_manifest(str(second)) is not None


def test_more_parts_change_the_fingerprint_and_one_part_keeps_todays(source, tokenizer_dir, tmp_path):
    four = plan(plan_cfg(source, tokenizer_dir, tmp_path)).subsets[0]
    two = plan(plan_cfg(source, tokenizer_dir, tmp_path, part_tokens=30_000)).subsets[0]
    one = plan(plan_cfg(source, tokenizer_dir, tmp_path, part_tokens=10**9)).subsets[0]
    assert (four.part_count, two.part_count, one.part_count) == (4, 2, 1)
    assert len({four.fingerprint, two.fingerprint, one.fingerprint}) == 3
    assert one.parts is None and one.convert.parts == 1 and one.part_config(0) == one.convert
    assert "part" not in one.convert.model_dump(exclude_defaults=True)


def test_a_part_whose_files_run_out_stops_verify_naming_it(sample_dir, tokenizer_dir, tmp_path):
    docs = records(sample_dir, "wiki")
    third = len(docs) // 3
    # the second file is big in bytes but holds little text: its part's share (by bytes) cannot be met
    padded = docs[third:third + 3] + [{"text": "", "meta": "x" * 4000} for _ in range(len(docs))]
    files = (docs[:third], padded, docs[third + 3:2 * third], docs[2 * third:])
    source = write_subset(tmp_path / "src", [d for f in files for d in f], weights=tuple(map(len, files)))
    body = plan(plan_cfg(source, tokenizer_dir, tmp_path / "data", total_tokens=20_000, part_tokens=6_000))
    sub = body.subsets[0]
    location = str(tmp_path / "plan.json")
    write_document(location, body)
    assert sub.part_count == 4
    convert_all(location, sub)
    result = verify(VerifyConfig(plan=location, report_dir=str(tmp_path), num_workers=0))
    rows = next(c for c in result.report.subsets[0].checks if c.check == "parts:rows")
    assert not result.ok and not rows.ok and "ran out" in rows.detail and "part " in rows.detail, rows


@pytest.mark.parametrize("sizes,parts", [([5, 5, 5, 5], 4), ([100, 1, 1, 1, 1], 3), ([1, 1, 100], 2),
                                         ([0, 0, 0], 3), ([7, 3, 9, 1, 4, 4, 2], 5)])
def test_slices_are_contiguous_non_empty_and_cover_every_file(sizes, parts):
    cut = slices(sizes, parts)
    assert len(cut) == parts and all(len(r) for r in cut)
    assert [i for r in cut for i in r] == list(range(len(sizes)))


def test_slices_cut_at_the_boundary_nearest_an_even_share():
    assert [len(r) for r in slices([999, 1000, 1000, 1000, 1000, 1000, 1000, 1001], 4)] == [2, 2, 2, 2]
    assert [len(r) for r in slices([3, 1, 2, 1, 2, 1], 2)] == [2, 4]  # 4 of 10 bytes, then 6: nearest to 5
    assert [len(r) for r in slices([1, 1, 1, 1, 1, 1, 1, 1, 1], 3)] == [3, 3, 3]


def test_shares_add_up_exactly_and_follow_the_weights():
    assert shares(10, [1, 1, 1]) == [4, 3, 3]
    assert shares(7, [0, 0]) == [4, 3]
    assert sum(shares(1_000_003, [13, 7, 991, 2])) == 1_000_003
    assert shares(100, [3, 1]) == [75, 25]
    with pytest.raises(ValueError):
        slices([1, 2], 3)
