"""The CLI surface: flags from the config model, --dry-run, --config files, strict keys."""

import argparse
import json

import pytest
from conftest import call_cli

from cpt_tasks.cli import build_parser
from cpt_tasks.cli_args import add_model_arguments
from cpt_tasks.configs.config_base import is_list
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.configs.evaluate_config import EvaluateConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.configs.verify_config import VerifyConfig


@pytest.mark.parametrize("job,model", [("convert", ConvertConfig), ("plan", PlanConfig), ("verify", VerifyConfig),
                                       ("train", TrainConfig), ("evaluate", EvaluateConfig)])
def test_every_config_field_is_a_flag_of_its_job(job, model):
    parser = build_parser()
    for name, field in model.model_fields.items():
        value = [] if field.annotation is bool else ["1"]
        plain = vars(parser.parse_args([job, f"--{name}", *value]))
        dashed = vars(parser.parse_args([job, f"--{name.replace('_', '-')}", *value]))  # the other spelling
        assert name in plain and dashed[name] == plain[name] == (True if field.annotation is bool else
                                                                ["1"] if is_list(field.annotation) else "1"), name


@pytest.mark.parametrize("job,model", [("convert", ConvertConfig), ("plan", PlanConfig), ("verify", VerifyConfig),
                                       ("train", TrainConfig), ("evaluate", EvaluateConfig)])
def test_help_shows_each_default_once_and_marks_the_required(job, model, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([job, "--help"])
    text = capsys.readouterr().out
    usage = text.split("\n\n")[0]
    for name, field in model.model_fields.items():
        assert (f"--{name} {name.upper()}" in usage) == field.is_required(), name
    described = " ".join(text.split())  # help lines are wrapped
    assert "(default: None)" not in described
    for option in described.split(" --")[1:]:
        assert option.count("(default") <= 1, option


def test_dashes_work_and_a_misspelt_option_names_the_closest(tmp_path):
    proc = call_cli("plan", "--total-tokens", "1000", "--out-root", tmp_path, "--dry-run", check=True)
    assert json.loads(proc.stdout)["total_tokens"] == 1000
    proc = call_cli("plan", "--total_tokns", "1000", "--out_root", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: cpt-tasks plan --out_root OUT_ROOT [options]")
    assert "unrecognized arguments: --total_tokns 1000 (did you mean --total_tokens?)" in proc.stderr
    proc = call_cli("convert-subset", "--plan", "p", "--subset", "s", "--already-complete-exitt", "99")
    assert proc.returncode == 2 and "(did you mean --already-complete-exit?)" in proc.stderr


def test_top_level_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "test" not in text.split("positional arguments")[0]
    steps = ("plan", "convert", "verify", "train", "evaluate")
    for command in steps:
        assert f"\n    {command} " in text
    listed = [line.split()[0] for line in text.split("COMMAND\n", 1)[1].split("\n\n")[0].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]
    assert [c for c in listed if c in steps] == list(steps), listed  # in pipeline order
    assert listed[:len(steps) + 1] == ["plan", "convert", "convert-subset", "verify", "train", "evaluate"], listed


@pytest.mark.parametrize("model", [ConvertConfig, PlanConfig, VerifyConfig, TrainConfig, EvaluateConfig])
def test_each_field_is_one_flag_that_sets_only_that_field_and_only_when_given(model):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser, model)
    assert vars(parser.parse_args([])) == {"config": None, "dry_run": False}  # unset flags never override --config
    for name, field in model.model_fields.items():
        value = ["--" + name] if field.annotation is bool else ["--" + name, "1"]
        assert set(vars(parser.parse_args(value))) == {"config", "dry_run", name}, name


def test_dry_run_prints_the_validated_config(tmp_path):
    proc = call_cli("convert", "--dataset", "allenai/dolmino-mix-1124", "--data_subset", "dclm", "--out_root",
                   "s3://b/dclm", "--tokenizer", "meta-llama/Llama-3.1-8B-Instruct", "--max_tokens", "23.6e9",
                   "--val_tokens", "4_720_000", "--shuffle", "--num_workers", "16", "--dry-run", check=True)
    cfg = json.loads(proc.stdout)
    assert cfg["max_tokens"] == 23_600_000_000 and cfg["val_tokens"] == 4_720_000 and cfg["shuffle"] is True
    assert cfg["concat_tokens"] == 8192 and cfg["compression"] == "zstd" and cfg["seed"] == 17


def test_config_file_with_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: x\nout_root: y\ntokenizer: z\nmax_tokns: 100\n")
    proc = call_cli("convert", "--config", path, "--dry-run")
    assert proc.returncode == 2 and "--max_tokns: Extra inputs are not permitted" in proc.stderr
    path.write_text("dataset: x\nout_root: y\ntokenizer: z\nmax_tokens: 100000\n")
    proc = call_cli("convert", "--config", path, "--max_tokens", "200000", "--dry-run", check=True)
    assert json.loads(proc.stdout)["max_tokens"] == 200000


def test_malformed_config_and_mix_files_are_user_errors(tmp_path):
    bad_yaml = tmp_path / "c.yaml"
    bad_yaml.write_text("dataset: [unclosed\n")
    proc = call_cli("convert", "--config", bad_yaml, "--dry-run")
    assert proc.returncode == 2 and "--config" in proc.stderr and "Traceback" not in proc.stderr
    mix = tmp_path / "mix.json"
    mix.write_text('{"version": "v2", "proportions": {"a": 1.0}}')
    proc = call_cli("plan", "--mix", mix, "--out_root", tmp_path, "--dataset", tmp_path, "--tokenizer", tmp_path)
    assert proc.returncode == 2 and "'version' must be an integer" in proc.stderr
