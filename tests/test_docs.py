"""The documentation against the code: the README stays a short front door, every relative link in the README and
docs/ leads to a file of the repository, docs/cli.md names every option of every job with the config's own
default, and the defaults the README quotes are the configs' defaults."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from cpt_tasks.cli import build_parser
from cpt_tasks.configs.plan_config import CONVERT_OPTIONS, PlanConfig
from cpt_tasks.jobs import JOBS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CLI_DOC = REPO / "docs" / "cli.md"
MARKDOWN = [README, REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
JOB_CONFIGS: dict[str, type[BaseModel]] = {job.name: job.config for job in JOBS}
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<img\s[^>]*src=\"([^\"]+)\"")
CELL_SPLIT = re.compile(r"(?<!\\)\|")


def relative_links(text: str) -> list[str]:
    """The link and image targets of a markdown text that are paths in the repository (no URL, no #anchor)."""
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", t)]


def job_sections(text: str) -> dict[str, str]:
    """docs/cli.md's ``## `cpt-tasks <job>` `` sections: job name -> the text up to the next ``## ``."""
    sections: dict[str, str] = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        found = re.match(r"`cpt-tasks ([a-z-]+)`", part)
        if found:
            sections[found.group(1)] = part
    return sections


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row (``\\|`` inside a cell unescaped)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| :]+\|$", line):
            rows.append([c.strip().replace("\\|", "|") for c in CELL_SPLIT.split(line.strip())[1:-1]])
    return rows


def same_value(written: str, default: object) -> bool:
    """A default as the docs write it (in backticks) against the model's: numbers may carry `_` or `,`."""
    if isinstance(default, bool):
        return written == ("true" if default else "false")
    if isinstance(default, list):
        return written.split() == [str(v) for v in default]
    if isinstance(default, (int, float)):
        try:
            return float(written.replace("_", "").replace(",", "")) == float(default)
        except ValueError:
            return False
    return written == str(default)


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; move detail into docs/"
    head = "\n".join(lines[:60])
    assert "make demo" in head and "make test" in head, "the two commands belong near the top"


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files(doc):
    missing = []
    for target in relative_links(doc.read_text()):
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve()
        if not path.exists():
            missing.append(target)
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path.read_text()):
            missing.append(target)
    assert not missing, f"{doc.relative_to(REPO)} links to missing files or headings: {missing}"


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a markdown file's headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_heading_anchors_follow_github():
    assert heading_anchors("# x\n## Params (the trigger form)\n```\n# not a heading\n```\n### `cpt-tasks train`\n") \
        == {"x", "params-the-trigger-form", "cpt-tasks-train"}


def test_link_finder_sees_links_and_images():
    text = 'see [cli](docs/cli.md#plan), [web](https://x.org), [top](#a) <img src="docs/ui/a.png" width="3">'
    assert relative_links(text) == ["docs/cli.md#plan", "docs/ui/a.png"]


@pytest.mark.parametrize("job", JOB_CONFIGS)
def test_cli_reference_names_every_option_with_its_default(job):
    model = JOB_CONFIGS[job]
    section = job_sections(CLI_DOC.read_text()).get(job)
    assert section is not None, f"docs/cli.md has no '## `cpt-tasks {job}`' section"
    rows = {row[0].strip("`"): row for row in table_rows(section) if row and row[0].startswith("`--")}
    for name, field in model.model_fields.items():
        assert f"--{name}" in section, f"docs/cli.md, cpt-tasks {job}: --{name} is not described"
        row = rows.get(f"--{name}")
        assert row is not None and len(row) >= 3, f"docs/cli.md, cpt-tasks {job}: no table row for --{name}"
        written = row[1]
        if field.is_required():
            assert written == "required", f"cpt-tasks {job} --{name} is required, docs say {written!r}"
            continue
        assert written != "required", f"cpt-tasks {job} --{name} is optional, docs say required"
        default = field.get_default(call_default_factory=False)
        code = re.fullmatch(r"`([^`]*)`", written)
        if default in (None, "") or field.default_factory is not None:
            continue  # no fixed value (none, computed where it runs, or derived): the docs say it in words
        assert code, f"cpt-tasks {job} --{name}: write the default {default!r} in backticks, not {written!r}"
        assert same_value(code.group(1), default), f"cpt-tasks {job} --{name}: docs say {written}, the config " \
                                                   f"says {default!r}"


def test_cli_reference_covers_every_command_and_flag():
    parser = build_parser()
    text = CLI_DOC.read_text()
    sections = job_sections(text)
    common = text.split("\n## ", 1)[0]  # --config and --dry-run of the config jobs are described once, on top
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for command, sub in subparsers.choices.items():
        assert command in sections, f"docs/cli.md has no section for cpt-tasks {command}"
        for action in sub._actions:
            flags = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            if flags:  # any one spelling (the docs write the underscore one; the dashed one is the same option)
                where = sections[command] + (common if command in JOB_CONFIGS else "")
                assert any(re.search(re.escape(f) + r"(?![\w-])", where) for f in flags), \
                    f"docs/cli.md, cpt-tasks {command}: {flags[0]} is not described"


def test_cli_reference_covers_cpt_samples():
    """``cpt-samples`` (the laptop tooling's samples) has a ``### `cpt-samples <command>` `` section per command that
    names each of its options."""
    from cpt_local.samples.samples_cli import build_parser as samples_parser

    text = CLI_DOC.read_text()
    subparsers = next(a for a in samples_parser()._actions if a.choices and isinstance(a.choices, dict))
    assert set(subparsers.choices) == {"sample", "small-tokenizer", "tiny-model"}
    for command, sub in subparsers.choices.items():
        section = text.split(f"### `cpt-samples {command}`", 1)[1].split("\n#", 1)[0] if \
            f"### `cpt-samples {command}`" in text else None
        assert section, f"docs/cli.md has no section for cpt-samples {command}"
        for action in sub._actions:
            flags = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            if flags:
                assert any(f"`{f}`" in section for f in flags), f"docs/cli.md, cpt-samples {command}: {flags[0]}"


def test_pipeline_doc_lists_every_param():
    """docs/pipeline.md has a table row for every Param of each DAG's trigger form, under its section's heading."""
    from cpt_pipeline.params import param_schemas

    from cpt_pipeline.dag_shapes import SHAPES

    text = (REPO / "docs" / "pipeline.md").read_text()
    for name, spec in {k: v for shape in SHAPES for k, v in param_schemas("s3://bucket", shape).items()}.items():
        section = re.search(rf"^\*\*{spec['section']}\*\*$(.*?)(?=^\*\*|^## )", text, flags=re.M | re.S)
        assert section, f"docs/pipeline.md has no **{spec['section']}** part of the Params"
        assert re.search(rf"^\| `{name}` \|", section.group(1), flags=re.M), \
            f"docs/pipeline.md: Param {name} is not in its section {spec['section']}"


def test_readme_quotes_the_configs_defaults():
    """Every row of the README's defaults table (| job | `option` | `value` | ...) holds the config's default."""
    rows = [r for r in table_rows(README.read_text()) if len(r) >= 3 and r[0] in JOB_CONFIGS]
    assert rows, "the README's table of the defaults that matter is missing"
    for job, option, value, *_ in rows:
        name = option.strip("`").lstrip("-")
        field = JOB_CONFIGS[job].model_fields.get(name)
        assert field is not None, f"README: cpt-tasks {job} has no option {name}"
        assert same_value(value.strip("`"), field.get_default(call_default_factory=True)), \
            f"README says {job} {name} defaults to {value}; the config says {field.default!r}"


def test_cli_reference_lists_exactly_the_convert_options_keys():
    """The plan section's sentence on `--convert_options` names exactly the keys PlanConfig accepts there."""
    section = job_sections(CLI_DOC.read_text())["plan"]
    sentence = re.search(r"`--convert_options` accepts exactly the `convert` options[^:]*:(.*?); any other key",
                         section, flags=re.S)
    assert sentence, "docs/cli.md, cpt-tasks plan: the sentence listing --convert_options' keys is missing"
    assert re.findall(r"`(\w+)`", sentence.group(1)) == list(CONVERT_OPTIONS)


def test_every_option_takes_both_spellings_as_the_cli_reference_says():
    """docs/cli.md: every option is `--name_with_underscores` and `--name-with-dashes`, the same option."""
    assert "being added" not in CLI_DOC.read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            for flag in action.option_strings:
                if not flag.startswith("--"):
                    continue
                negated = flag.startswith("--no-") and isinstance(action, argparse.BooleanOptionalAction)
                prefix = "--no-" if negated else "--"  # a switch's negation: --no-<either spelling>
                name = flag[len(prefix):]
                for other in (prefix + name.replace("_", "-"), prefix + name.replace("-", "_")):
                    assert other in action.option_strings, f"cpt-tasks {command}: {flag} without {other}"


def test_continual_pretraining_doc_quotes_the_smallest_total_of_the_default_rows():
    """The smallest total the doc quotes for a domain at the default rows is the one the plan's message names."""
    from cpt_tasks.plan.plan_components import smallest_total
    from cpt_tasks.plan.plan_job import effective_mix

    text = (REPO / "docs" / "continual-pretraining.md").read_text()
    quoted = re.search(r"0\.25 replay, that takes a total of at least ([\d,]+) tokens", text)
    assert quoted, "docs/continual-pretraining.md: the smallest total at the default rows is not quoted"
    cfg = PlanConfig(out_root="-", domain="corpus", replay_fraction=0.25)
    mix, proportions, _ = effective_mix(cfg)
    assert int(quoted.group(1).replace(",", "")) == smallest_total(cfg, mix, proportions)
