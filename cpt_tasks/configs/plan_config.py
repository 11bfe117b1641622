"""``PlanConfig``: the inputs of ``cpt-tasks plan``, validated when built (light core: no heavy imports)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from cpt_tasks.configs.config_base import StrictModel, TokenCount
from cpt_tasks.configs.convert_config import ConvertConfig
from cpt_tasks.mix import DEFAULT_MIX, DEFAULT_TOTAL_TOKENS, DEFAULT_VAL_FRACTION

LLAMA31_CONTEXT = 131072
# Ibrahim et al. 2024 ("Simple and Scalable Strategies to Continually Pre-train LLMs"): 1-5% replay suffices for a
# weak shift, a strong one needs up to 50%; a user's own corpus is usually a strong shift, so a quarter replays.
DEFAULT_REPLAY_FRACTION = 0.25
# Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"): up to ~4 epochs is nearly as good as new data.
DEFAULT_MAX_DOMAIN_EPOCHS = 4.0
# A part of ~2B tokens tokenizes in about a minute in a default convert pod (8 cores at the ~4M tokens/s per core
# make bench-scale measured: docs/performance.md), plus reading its ~9 GB of input: long enough that a part's fixed
# start (under a second) is noise, and the reference 50B plan is 28 parts: one wave on 32 pods.
DEFAULT_PART_TOKENS = 2_000_000_000
DEFAULT_TOKENIZER = "meta-llama/Llama-3.1-8B-Instruct"  # the reference recipe tokenizes with the Instruct one
# ConvertConfig fields the plan derives for every subset; the others may be set with convert_options.
PLANNED_CONVERT_FIELDS = frozenset({"dataset", "data_subset", "revision", "out_root", "tokenizer",
                                    "tokenizer_revision", "num_workers", "text_field", "concat_tokens", "max_tokens",
                                    "val_tokens", "shuffle", "seed", "val_first", "parts", "part"})
CONVERT_OPTIONS = tuple(f for f in ConvertConfig.model_fields if f not in PLANNED_CONVERT_FIELDS)


class SubsetOverride(StrictModel):
    """Per-subset budget overrides (tokens); unset fields keep the derived value."""

    max_tokens: TokenCount | None = Field(None, description="Train budget of this subset")
    val_tokens: TokenCount | None = Field(None, description="Val budget of this subset")


class PlanConfig(StrictModel):
    """Arguments of ``cpt-tasks plan``."""

    out_root: str = Field(description="Storage root: outputs go to <root>/<mix>/<fingerprint>/<subset>/")
    dataset: str | None = Field(None, description="HF hub id or local folder (default: the mix's dataset)")
    revision: str | None = Field(None, description="Hub revision of the dataset (resolved to a commit)")
    text_field: str = Field("text", min_length=1, description="The records' field that holds each document's text")
    tokenizer: str = Field(DEFAULT_TOKENIZER, description="HF hub id or local folder of the tokenizer")
    tokenizer_revision: str | None = Field(None, description="Hub revision of the tokenizer (pinned to a commit)")
    total_tokens: TokenCount = Field(DEFAULT_TOTAL_TOKENS, gt=0, description="Train tokens over all subsets")
    concat_tokens: int = Field(8192, gt=0, description="Tokens per row (the training sequence length)")
    mix: str = Field(DEFAULT_MIX, description="Shipped mix name or path to a mix JSON file")
    proportions: dict[str, float] | None = Field(None, description="Replace the mix's proportions (JSON object)")
    subsets: list[str] | None = Field(None, description="Only these subsets; when some of the mix's are "
                                        "left out, the kept proportions are renormalized to sum to 1")
    overrides: dict[str, SubsetOverride] | None = Field(None, description="Per-subset budgets, JSON: "
                                                        '{"dclm": {"max_tokens": 1e9}}')
    val_fraction: float = Field(DEFAULT_VAL_FRACTION, ge=0, lt=1, description="val_tokens = max_tokens × val_fraction")
    seed: int = Field(17, description="Shuffle seed of every conversion")
    shuffle: bool = Field(True, description="Shuffle document order in every conversion")
    context_length: int = Field(LLAMA31_CONTEXT, gt=0,
                                description="The model's context; concat_tokens may not exceed it")
    allow_short: bool = Field(False, description="Accept subsets whose source runs out before their budget")
    num_workers: int | None = Field(None, ge=0, description="Converter processes per pod (default: the pod's cores)")
    convert_options: dict[str, Any] | None = Field(None, description="Other `cpt-tasks convert` options for "
                                                   'every subset (JSON), e.g. {"compression": "zstd:7"}')
    output: str | None = Field(None, description="Also write the plan JSON to this file")
    domain: str | None = Field(None, description="Your corpus to continue pretraining on: a local path, "
                               "object-storage prefix or hub id (none: the mix alone)")
    domain_subset: str | None = Field(None, description="Subset (folder) of --domain to read")
    domain_text_field: str = Field("text", min_length=1, description="The field of --domain's records that holds "
                                   "each document's text")
    domain_source_format: Literal["auto", "files", "datasets"] | None = Field(
        None, description="How --domain is read (convert's --source_format: files, datasets or auto; default: "
        "--convert_options' source_format, else auto)")
    domain_name: str = Field("domain", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                             description="The domain component's name (its folder, stream and report row)")
    replay_fraction: Annotated[float, Field(gt=0, lt=1)] | Literal["recommended"] = Field(
        DEFAULT_REPLAY_FRACTION, description="With --domain: the mix's share of total_tokens (replay against "
        "forgetting); the domain gets the rest. 'recommended': the newest replay sweep's recommendation for this "
        "corpus, mix and tokenizer (the DAG cpt_replay_sweep; found under --sweeps_root)")
    sweep_fractions: list[Annotated[float, Field(ge=0, lt=1)]] | None = Field(
        None, description="A replay sweep's plan (the DAG cpt_replay_sweep): these replay fractions, each component "
        "converted once at the largest budget any of them needs, and each proxy run's draw recorded (with --domain; "
        "replay_fraction is then ignored)")
    sweeps_root: str | None = Field(None, description="Where replay sweeps keep their pointers (the DAG: "
                                    "<storage_root>/sweeps); needed by replay_fraction 'recommended'")
    part_tokens: TokenCount = Field(DEFAULT_PART_TOKENS, gt=0, description="A component whose train + val budget "
                                    "exceeds this many tokens is converted in parts of about this size, each its "
                                    "own conversion (a convert task of the DAG): at most one part per input file")
    max_domain_epochs: float = Field(DEFAULT_MAX_DOMAIN_EPOCHS, ge=1, description="A domain corpus smaller than "
                                     "its budget is repeated in training up to this many epochs; beyond, the plan "
                                     "refuses")

    @field_validator("subsets")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            dupes = sorted({s for s in value if value.count(s) > 1})
            if dupes:
                raise ValueError(f"duplicate subsets: {', '.join(dupes)}")
            if not value:
                raise ValueError("give at least one subset")
        return value

    @field_validator("sweep_fractions")
    @classmethod
    def _distinct(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one replay fraction")
            dupes = sorted({f for f in value if value.count(f) > 1})
            if dupes:
                raise ValueError(f"duplicate fractions: {', '.join(f'{f:g}' for f in dupes)}")
        return value

    @field_validator("convert_options")
    @classmethod
    def _convert_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in value or {}:
            if key in PLANNED_CONVERT_FIELDS:
                raise ValueError(f"{key} is set by the plan itself; options here: {', '.join(CONVERT_OPTIONS)}")
            if key not in CONVERT_OPTIONS:
                raise ValueError(f"{key} is not a `cpt-tasks convert` option; options here: "
                                 f"{', '.join(CONVERT_OPTIONS)}")
        return value

    @model_validator(mode="after")
    def _context(self) -> PlanConfig:
        if self.concat_tokens > self.context_length:
            raise ValueError(f"concat_tokens ({self.concat_tokens}) is larger than the model's context "
                             f"({self.context_length})")
        return self
