"""The trigger form's Params: self-explanatory, production defaults, and invalid values rejected by the
same validation Airflow runs when a run is triggered (ParamsDict in the SDK, SerializedParamsDict in the
API server)."""

from __future__ import annotations

import pytest

from cpt_tasks.configs.evaluate_config import EvaluateConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.layout import safe_run_id
from cpt_tasks.mix import load_mix


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from conftest import ROOT

    with pytest.MonkeyPatch.context() as env:  # CPT_RUNNER as it was once the module's tests are done
        env.setenv("CPT_RUNNER", "kubernetes")
        yield DagBag(dag_folder=str(ROOT / "dags")).dags["cpt_dolmino"]


def rendered_config(step, params: dict) -> dict:
    """The JSON object a step's ``--config`` renders to for ``params`` (as Airflow renders it: the DAG's filter)."""
    import json

    import jinja2

    from cpt_tasks.layout import safe_run_id

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["cpt_safe"] = safe_run_id
    template = step.arguments[step.arguments.index("--config") + 1]
    return json.loads(env.from_string(template).render(params=params, run_id="manual__2026-01-01T00:00:00+00:00",
                                                       dag={"dag_id": "cpt_dolmino"}))


def fields_the_step_sets(step, params: dict, *added: str) -> set[str]:
    """The config fields a step's argv sets: the keys of its ``--config`` rendered with empty options (so only
    what the DAG itself puts there), and the ``--flag``s a runner appends (``added``)."""
    empty = {name: {} for name in ("train_options", "evaluate_options")}
    return {a.removeprefix("--") for a in added if a.startswith("--")} | set(rendered_config(step, params | empty))


def test_the_fields_set_by_the_dag_are_what_the_steps_pass(dag):
    from cpt_pipeline.indexed_job import node_arguments
    from cpt_pipeline.steps import step
    from cpt_tasks.jobs import job

    values = dag.params.validate()
    train = fields_the_step_sets(step("train"), values, *node_arguments(2, "nodes"))
    assert job("train").fields_set_by_the_dag() == train
    assert {"report", "model", "nnodes", "node_rank", "master_port", "max_duration"} <= train
    assert job("evaluate").fields_set_by_the_dag() == fields_the_step_sets(step("evaluate"), values)
    assert job("plan").fields_set_by_the_dag() == fields_the_step_sets(step("plan"), values)
    assert job("verify").fields_set_by_the_dag() == fields_the_step_sets(step("verify"), values) == {
        "plan", "num_workers", "save_root"}


def test_a_step_passes_the_run_s_params_to_its_job(dag):
    """One --config object, rendered per run: the Params that feed the job, its options Param, what the DAG sets;
    the job's own model takes it as it is."""
    from cpt_pipeline.steps import step
    from cpt_tasks.configs.train_config import TrainConfig

    values = dag.params.validate() | {"train_options": {"lr": 1e-5}, "gpus": 0, "max_duration": "10ba"}
    config = rendered_config(step("train"), values)
    assert config["lr"] == 1e-5 and config["nprocs"] == 1 and config["max_duration"] == "10ba"
    from cpt_tasks.layout import safe_run_id

    assert config["report"] == (f"{values['storage_root']}/runs/cpt_dolmino/"
                                f"{safe_run_id('manual__2026-01-01T00:00:00+00:00')}/verify-report.json")
    assert TrainConfig(**config).global_batch_size == values["global_batch_size"]
    plan = rendered_config(step("plan"), values | {"proportions": {"wiki": 1.0}, "subsets": ["wiki"]})
    assert plan["proportions"] == {"wiki": 1.0} and plan["num_workers"] == values["convert_cpu"]
    assert plan["total_tokens"] == values["total_tokens"] and plan["domain"] is None


def test_every_param_has_a_title_and_description(dag):
    for name, param in dag.params.items():
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name


CONFIG_PARAMS = {  # Param -> (config, field) whose default, bounds and description it shows
    "total_tokens": (PlanConfig, "total_tokens"), "mix": (PlanConfig, "mix"), "revision": (PlanConfig, "revision"),
    "tokenizer": (PlanConfig, "tokenizer"), "concat_tokens": (PlanConfig, "concat_tokens"),
    "val_fraction": (PlanConfig, "val_fraction"), "seed": (PlanConfig, "seed"),
    "allow_short": (PlanConfig, "allow_short"), "model": (TrainConfig, "model"),
    "global_batch_size": (TrainConfig, "global_batch_size"),
    "device_microbatch_size": (TrainConfig, "device_microbatch_size"), "max_duration": (TrainConfig, "max_duration"),
    "nodes": (TrainConfig, "nnodes"),
    "icl_tasks": (EvaluateConfig, "icl_tasks"),
}


def test_params_of_job_options_say_what_the_configs_say(dag):
    from cpt_pipeline.steps import step
    from cpt_pipeline.indexed_job import node_arguments

    values = dag.params.validate()
    for name, (config, field) in CONFIG_PARAMS.items():
        info = config.model_fields[field]
        assert values[name] == info.get_default(call_default_factory=True), name
        assert dag.params.get_param(name).description == info.description, name
    assert values["tokenizer"] == "meta-llama/Llama-3.1-8B-Instruct"  # the reference recipe's tokenizer
    assert values["model"] == "meta-llama/Llama-3.1-8B"  # continues pretraining the base model
    schema = dag.params.get_param("concat_tokens").schema
    assert schema["exclusiveMinimum"] == 0 and schema["maximum"] == PlanConfig.model_fields["context_length"].default
    set_by_dag = fields_the_step_sets(step("train"), values, *node_arguments(2, "nodes"))
    train_options = set(dag.params.get_param("train_options").schema["propertyNames"]["enum"])
    assert "lr" in train_options and not train_options & set_by_dag
    from cpt_pipeline.dag_shapes import set_by_some_dag

    assert set_by_some_dag("train") == {"run_id", "sweep_fraction"}  # the replay sweep's proxy runs
    assert train_options | set_by_dag | set_by_some_dag("train") == set(TrainConfig.model_fields)
    assert {"dist_timeout", "sharding_strategy", "node_wait"} <= train_options  # multi-node options a run may set
    nodes = dag.params.get_param("nodes").schema
    assert (nodes["type"], nodes["minimum"], values["nodes"]) == ("integer", 1, 1)
    set_by_dag = fields_the_step_sets(step("evaluate"), values)
    evaluate_options = set(dag.params.get_param("evaluate_options").schema["propertyNames"]["enum"])
    assert "device_eval_batch_size" in evaluate_options and not evaluate_options & set_by_dag
    assert evaluate_options | set_by_dag == set(EvaluateConfig.model_fields)


def test_defaults_reproduce_the_reference_plan(dag):
    values = dag.params.validate()
    assert values["total_tokens"] == 50_000_000_000 and values["val_fraction"] == 0.0002
    assert values["proportions"] == load_mix("dolmino-mix-1124").proportions
    assert values["subsets"] == ["dclm", "flan", "pes2o", "wiki", "stackexchange", "math"]
    assert values["concat_tokens"] == 8192 and values["train"] == "if_changed"
    assert values["evaluate"] == "if_trained" and values["icl_tasks"] == "default" and values["evaluate_options"] == {}


BAD = [
    ("proportions", {"dclm": 0.5, "flan": 0.3}, "proportions-sum-to-1"),
    ("proportions", {"dclm": 0.5, "flan": 0.3, "wiki": 0.3}, "proportions-sum-to-1"),
    ("proportions", {"dclm": 1.0, "reddit": 0.0}, "reddit"),
    ("proportions", {"dclm": -0.5, "flan": 1.5}, "is not a 'proportions-sum-to-1'"),  # sums to 1, out of bounds
    ("subsets", ["dclm", "dclm"], "non-unique"),
    ("subsets", ["c4"], "c4"),
    ("subsets", [], "[] should be non-empty"),
    ("total_tokens", 0, "minimum"),
    ("total_tokens", "lots", "integer"),
    ("storage_root", "relative/path", "does not match"),
    ("max_duration", "10 epochs", "does not match"),
    ("train", "sometimes", "is not one of"),
    ("convert_memory", "lots", "does not match"),
    ("gpus", -1, "minimum"),
    ("nodes", 0, "minimum"),
    ("train_options", {"node_rank": 1}, "'node_rank' is not one of"),
    ("train_options", {"lrr": 1e-5}, "'lrr' is not one of ['model_revision'"),
    ("convert_options", {"max_tokens": 5}, "'max_tokens' is not one of ['splits'"),
    ("evaluate", "maybe", "is not one of"),
    ("icl_tasks", "", "should be non-empty"),
    ("evaluate_options", {"icl_tasks": "none"}, "'icl_tasks' is not one of ['run_manifest'"),
    ("replay_fraction", "recommend", "does not match '^recommended$'"),
    ("replay_fraction", 1.0, "maximum"),
    ("train_options", {"sweep_fraction": 0.1}, "'sweep_fraction' is not one of"),
]


def test_replay_fraction_takes_a_number_or_the_replay_sweep_s_recommendation(dag):
    import copy

    for value in (0.1, "recommended"):
        params = copy.deepcopy(dag.params)
        params["replay_fraction"] = value
        assert params.validate()["replay_fraction"] == value


@pytest.mark.parametrize(("name", "value", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_invalid_values_are_rejected_by_the_sdk(dag, name, value, message):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError) as err:
        params[name] = value
        params.validate()
    assert message in str(err.value)


@pytest.mark.parametrize(("name", "value", "message"), BAD[:3], ids=["sum-low", "sum-high", "unknown-subset"])
def test_the_api_server_rejects_a_bad_mix(dag, name, value, message):
    """The API server validates with the serialized DAG's params: the mix format must work there too."""
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    params = served.params.deep_merge({name: value})
    with pytest.raises(ParamValidationError) as err:
        params.validate()
    assert message in str(err.value)
    served.params.deep_merge({"proportions": {"dclm": 0.4725, "flan": 0.5275}}).validate()  # a good mix passes


def test_a_valid_custom_mix_passes(dag):
    import copy

    params = copy.deepcopy(dag.params)
    params.update({"proportions": {"dclm": 0.6, "math": 0.4}, "subsets": ["dclm", "math"], "total_tokens": 1000})
    assert params.validate()["proportions"] == {"dclm": 0.6, "math": 0.4}


def test_no_param_defaults_to_an_empty_string():
    """The trigger form sends an emptied text field as null: an optional text Param is ["string", "null"] with
    default null, never "" (a "" default makes the untouched form invalid and its Trigger button disabled)."""
    from cpt_pipeline.params import param_schemas

    empty = [name for name, spec in param_schemas("s3://bucket").items() if spec["default"] == ""]
    assert empty == []


def test_a_made_up_job_in_the_registry_is_a_step_with_its_params(monkeypatch):
    """One registry entry (and the job's own config) is all a new step needs: its Params come with the field's
    default and description, its options Param takes exactly its other fields, and its argv renders them (a DAG
    that runs the step has them: here a made-up one)."""
    from pydantic import Field

    from cpt_pipeline import params as form
    from cpt_pipeline.steps import step
    from cpt_tasks import jobs
    from cpt_tasks.configs.config_base import StrictModel

    class CountConfig(StrictModel):
        text: str = Field("hello world", description="The text whose words are counted")
        minimum: int = Field(1, ge=0, description="Exit 3 below this many words")
        out: str = Field(description="Where the count goes")

    entry = jobs.Job("count", "Count words", CountConfig, None, "count_job:command", step="count",
                     params={"count_text": jobs.Param("text", "Text to count", jobs.DATA)},
                     options=jobs.Options("count_options", "More counting options", jobs.DATA, "Other options."),
                     set_by_dag={"out": f"{jobs.RUN_DIR}/count.json"}, pod=jobs.Pod("cpu"))
    monkeypatch.setattr(jobs, "JOBS", (*jobs.JOBS, entry))
    monkeypatch.setattr(form, "JOBS", jobs.JOBS)
    from cpt_pipeline.dag_shapes import DagShape

    schemas = form.param_schemas("s3://bucket/root", DagShape("cpt_count", ("count",)))
    assert schemas["count_text"] == {"default": "hello world", "description": "The text whose words are counted",
                                          "type": "string", "title": "Text to count", "section": jobs.DATA}
    assert schemas["count_options"]["propertyNames"] == {"enum": ["minimum"]}
    assert schemas["count_timeout"]["default"] == 12.0  # every step has a deadline
    params = {"count_text": "a b c", "count_options": {"minimum": 2}, "storage_root": "s3://bucket/root"}
    assert rendered_config(step("count"), params) == {
        "text": "a b c", "minimum": 2,
        "out": f"s3://bucket/root/runs/cpt_dolmino/{safe_run_id('manual__2026-01-01T00:00:00+00:00')}/count.json"}
