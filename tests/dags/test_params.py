"""The trigger form's Params: self-explanatory, production defaults, and invalid values rejected by the
same validation Airflow runs when a run is triggered (ParamsDict in the SDK, SerializedParamsDict in the
API server)."""

from __future__ import annotations

import pytest

from cpt_tasks.configs.evaluate_config import EvaluateConfig
from cpt_tasks.configs.plan_config import PlanConfig
from cpt_tasks.configs.train_config import TrainConfig
from cpt_tasks.mix import load_mix


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from conftest import ROOT

    with pytest.MonkeyPatch.context() as env:  # CPT_RUNNER as it was once the module's tests are done
        env.setenv("CPT_RUNNER", "kubernetes")
        yield DagBag(dag_folder=str(ROOT / "dags")).dags["cpt_dolmino"]


def fields_the_step_sets(step, *added: str) -> set[str]:
    """The config fields a step's argv sets: its ``--flag``s (and ``added``: what a runner appends), and the keys
    of its ``--config`` JSON rendered with empty options (so only what the DAG itself puts there)."""
    import json

    import jinja2

    argv = [*step.arguments, *added]
    flags = {a.removeprefix("--") for a in argv if a.startswith("--")} - {"config"}
    template = argv[argv.index("--config") + 1]
    params = {"train_options": {}, "evaluate_options": {}, "max_duration": "1ba"}
    return flags | set(json.loads(jinja2.Environment().from_string(template).render(params=params)))


def test_the_fields_set_by_the_dag_are_what_the_steps_pass():
    from cpt_pipeline.params import EVALUATE_FIELDS_SET_BY_THE_DAG, TRAIN_FIELDS_SET_BY_THE_DAG
    from cpt_pipeline.steps import evaluate_step, train_step
    from cpt_pipeline.indexed_job import node_arguments

    assert set(TRAIN_FIELDS_SET_BY_THE_DAG) == fields_the_step_sets(train_step(), *node_arguments(2, "nodes"))
    assert set(EVALUATE_FIELDS_SET_BY_THE_DAG) == fields_the_step_sets(evaluate_step())


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
    from cpt_pipeline.steps import evaluate_step, train_step
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
    set_by_dag = fields_the_step_sets(train_step(), *node_arguments(2, "nodes"))
    train_options = set(dag.params.get_param("train_options").schema["propertyNames"]["enum"])
    assert "lr" in train_options and not train_options & set_by_dag
    assert train_options | set_by_dag == set(TrainConfig.model_fields)
    assert {"dist_timeout", "sharding_strategy", "node_wait"} <= train_options  # multi-node options a run may set
    nodes = dag.params.get_param("nodes").schema
    assert (nodes["type"], nodes["minimum"], values["nodes"]) == ("integer", 1, 1)
    set_by_dag = fields_the_step_sets(evaluate_step())
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
]


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
