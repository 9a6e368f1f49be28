"""Every knob of dense-reward, as pydantic models loaded from YAML.

Unknown keys are rejected and every error names the full field path and the bad value, e.g.
``ppo.kl_coef: must be >= 0, got -1``. Loading never touches models or data: it only checks the file.
"""

from __future__ import annotations

import warnings
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dense_reward.errors import ConfigWarning, UserError
from dense_reward.simplex import check_sources, check_weights

SWEEP_SECTIONS = ("search", "tracking", "resources")
"""Top-level sections of a sweep file that the service reads (`tune_jobs.config`), named here only so
that loading a sweep file as a library config says where they belong."""


class ConfigError(UserError, ValueError):
    """A config file or value is wrong; the message names the field path and the value."""


class StrictSection(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


class ModelSpec(StrictSection):
    """Where a model comes from and how it is placed."""

    path: str = Field(description="Hugging Face hub id, local folder, or `builtin:<name>` (built offline).")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto = bf16 on CUDA, fp32 on CPU."
    )
    device: str = Field(default="auto", description="auto = cuda when present, else cpu; or e.g. `cuda:1`.")
    trust_remote_code: bool = Field(default=False, description="Run code shipped with the model (off by default).")


class RewardModelSpec(ModelSpec):
    """The sequence-level reward model (num_labels=1) with its own tokenizer."""

    max_length: int = Field(default=512, ge=8, description="Longest RM input; the prompt is cut before the response.")
    batch_size: int = Field(default=64, ge=1, description="Largest RM forward batch (perturbed texts included).")
    separator: str = Field(default="\n", description="Joins prompt and response when the RM has no chat template.")
    use_chat_template: bool = Field(default=True, description="Use the RM tokenizer's chat template when it has one.")
    head: Literal["auto", "sequence", "causal"] = Field(
        default="auto",
        description=(
            "How the score is read: `sequence` = the model's logits only; `causal` = a `score` head applied at "
            "every position of a causal model (prefix scores in one forward); auto = causal when the model "
            "passes that check, else sequence."
        ),
    )


class LoraSpec(StrictSection):
    """LoRA adapters (peft) for the policy and the critic."""

    enabled: bool = Field(default=False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(default=8, ge=1, description="Adapter rank.")
    alpha: int = Field(default=16, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] | None = Field(default=None, description="Module names; None = peft's default.")


class ValueSpec(StrictSection):
    """The critic."""

    init: Literal["policy", "reward"] = Field(
        default="policy", description="Backbone the separate critic starts from."
    )
    head_on_policy: bool = Field(default=False, description="A value head on the policy instead of a critic.")


class ModelsConfig(StrictSection):
    """Policy, reference, reward and value models."""

    policy: ModelSpec = Field(description="The causal LM being trained.")
    reference: ModelSpec | None = Field(
        default=None, description="Frozen reference; None = a frozen copy of the policy (or adapters off)."
    )
    reward: RewardModelSpec = Field(description="The sequence-level reward model.")
    value: ValueSpec = Field(default_factory=ValueSpec, description="The critic.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA for policy and critic.")


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


class DataConfig(StrictSection):
    """Prompt dataset and its train/validation split."""

    source: str = Field(description="Hub id, local .jsonl/.json/.parquet file, or `builtin:<name>`.")
    format: Literal["auto", "plain", "hh_rlhf", "ultrafeedback"] = Field(
        default="auto", description="Row format; auto guesses from the columns."
    )
    split: str = Field(default="train", description="Dataset split to read (hub datasets).")
    subset: str | None = Field(default=None, description="Dataset config name (hub datasets).")
    max_prompts: int | None = Field(default=None, ge=1, description="Keep at most this many prompts (after shuffle).")
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0, description="Share held out for val_reward.")
    seed: int = Field(default=0, description="Seed of the shuffle that makes the split.")
    chat_template: Literal["auto", "on", "off"] = Field(
        default="auto", description="Wrap prompts in the policy's chat template (auto: when it has one)."
    )
    system_prompt: str | None = Field(
        default=None,
        description=(
            "System message put before every prompt in the chat template; '' for an empty one. Unset: the "
            "template's own default (SmolLM2's adds a 16-token system message to every sequence)."
        ),
    )
    max_prompt_chars: int = Field(default=2000, ge=1, description="Longer prompts are cut from the left.")


# --------------------------------------------------------------------------------------------------
# shaping
# --------------------------------------------------------------------------------------------------


SHAP_BUDGET_SHARE = 0.25
"""`shaping.shap.max_evals` below this share of M^2 (M response tokens) draws a warning (`shap_budget_warning`)."""


def shap_budget_warning(max_evals: int, response_tokens: int) -> str | None:
    """The warning for a SHAP budget far below what exact Owen values of `response_tokens` tokens need, else None.

    shap's PartitionExplainer expands its binary partition tree of the M response tokens node by node
    until ``max_evals`` is spent; about M^2 evaluations expand all of it (exact Owen values, which are
    the Shapley values of an additive reward). With far fewer it stops at coarse runs of tokens, and
    every token of a run shares the run's credit.
    """
    needed = response_tokens**2
    if max_evals >= SHAP_BUDGET_SHARE * needed:
        return None
    return (
        f"shaping.shap.max_evals={max_evals} is far below the ~{needed} RM evaluations (M^2 for M={response_tokens} "
        f"response tokens, ppo.max_new_tokens) that exact Owen values need: shap credits coarse runs of tokens "
        f"instead of single tokens; raise shaping.shap.max_evals towards {needed} if token-level SHAP credit matters"
    )


class ShapConfig(StrictSection):
    max_evals: int = Field(default=64, ge=4, description="RM evaluations per response (PartitionExplainer).")


class LimeConfig(StrictSection):
    num_samples: int = Field(default=64, ge=4, description="Perturbed samples per response.")


class IntegratedGradientsConfig(StrictSection):
    n_steps: int = Field(default=16, ge=1, description="Quadrature points on the path from the baseline.")
    baseline: Literal["mask", "pad", "zero"] = Field(
        default="mask",
        description="Embedding the response tokens start from (prompt and special tokens kept): mask, pad or zero.",
    )
    method: Literal["gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"] = Field(
        default="gausslegendre", description="Captum's quadrature rule."
    )


class LogRatioConfig(StrictSection):
    policy: ModelSpec | None = Field(
        default=None, description="The DPO-tuned causal LM pi_dpo (required when `log_ratio` is a source)."
    )
    reference: ModelSpec | None = Field(
        default=None, description="The reference pi_ref it was tuned from (required when `log_ratio` is a source)."
    )
    batch_size: int = Field(default=16, ge=1, description="Responses per forward of each model.")


class ShapingConfig(StrictSection):
    """Which attribution sources are mixed and how they are normalised."""

    sources: list[str] = Field(
        default_factory=lambda: ["sparse", "attention", "redistribution", "shap", "lime"],
        description="Sources in the mix (the simplex the search runs on).",
    )
    normalize: Literal["softmax", "scaled-softmax", "l1", "signed"] = Field(
        default="softmax",
        description=(
            "Per-source normaliser: softmax(a / tau) as in the paper; scaled-softmax = softmax(a / (tau * sd(a))), "
            "tau in units of the credit's own spread over the response; l1 = |a| / sum |a|; signed = a / sum a."
        ),
    )
    tau: float = Field(
        default=1.0,
        gt=0.0,
        description="Softmax temperature: of softmax in the credit's units, of scaled-softmax in units of its sd.",
    )
    weights: dict[str, float] | None = Field(
        default=None, description="Fixed mixing weights (used outside a sweep, e.g. `explain`, `final`)."
    )
    shap: ShapConfig = Field(default_factory=ShapConfig)
    lime: LimeConfig = Field(default_factory=LimeConfig)
    integrated_gradients: IntegratedGradientsConfig = Field(default_factory=IntegratedGradientsConfig)
    log_ratio: LogRatioConfig = Field(default_factory=LogRatioConfig)
    attention_query: Literal["auto", "final", "first"] = Field(
        default="auto",
        description="Attention row read by `attention`: auto = final token of a causal RM, [CLS] of an encoder.",
    )

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        return check_sources(value, field="shaping.sources")

    @field_validator("weights")
    @classmethod
    def _weights_on_simplex(cls, value: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        if value is None:
            return value
        sources = info.data.get("sources")
        if sources is None:  # the sources failed their own check, which reports it
            return value
        return check_weights(value, sources, field="shaping.weights")

    @model_validator(mode="after")
    def _log_ratio_models(self) -> ShapingConfig:
        if "log_ratio" in self.sources and (self.log_ratio.policy is None or self.log_ratio.reference is None):
            raise ValueError(
                "shaping.log_ratio: 'log_ratio' is in shaping.sources, so shaping.log_ratio.policy (the DPO-tuned "
                "model) and shaping.log_ratio.reference (the model it was tuned from) must both be set"
            )
        return self


# --------------------------------------------------------------------------------------------------
# PPO
# --------------------------------------------------------------------------------------------------


class PPOConfig(StrictSection):
    """PPO hyperparameters (names follow the N+ implementation details paper)."""

    epochs: int = Field(default=10, ge=1, description="Passes over the training prompts per trial.")
    steps_per_epoch: int | None = Field(default=None, ge=1, description="Cap on PPO steps per epoch.")
    batch_size: int = Field(default=16, ge=1, description="Prompts per rollout (one PPO step).")
    mini_batch_size: int = Field(default=8, ge=1, description="Responses per optimiser step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Micro-batches per mini-batch.")
    update_epochs: int = Field(default=4, ge=1, description="Passes over one rollout batch.")
    learning_rate: float = Field(default=1e-5, gt=0.0, description="AdamW learning rate.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(default="linear", description="LR decay.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up optimiser steps.")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay.")
    adam_eps: float = Field(default=1e-5, gt=0.0, description="AdamW epsilon (1e-5 as in the N+ details).")
    max_new_tokens: int = Field(default=48, ge=1, description="Response length cap.")
    temperature: float = Field(default=1.0, gt=0.0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    kl_coef: float = Field(default=0.05, ge=0.0, description="beta in reward_t = dense_t - beta * KL_t.")
    kl_estimator: Literal["k1", "k3"] = Field(default="k1", description="Per-token KL estimator.")
    gamma: float = Field(default=1.0, ge=0.0, le=1.0, description="Discount.")
    lam: float = Field(default=0.95, ge=0.0, le=1.0, description="GAE lambda.")
    clip_range: float = Field(default=0.2, gt=0.0, description="Policy ratio clip.")
    clip_range_value: float = Field(default=0.2, gt=0.0, description="Value clip.")
    vf_coef: float = Field(default=0.1, ge=0.0, description="Value loss weight.")
    ent_coef: float = Field(default=0.0, ge=0.0, description="Entropy bonus weight.")
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="Gradient clipping norm.")
    whiten_rewards: bool = Field(default=False, description="Whiten per-token rewards over the batch.")
    whiten_advantages: bool = Field(default=True, description="Whiten advantages over the batch.")
    missing_eos_penalty: float | None = Field(default=None, description="Subtracted from r when no EOS.")
    seed: int = Field(default=0, description="Seed of sampling and initialisation.")


class EvaluationConfig(StrictSection):
    """How val_reward (the search objective) is measured."""

    max_prompts: int | None = Field(default=None, ge=1, description="Cap on validation prompts.")
    batch_size: int = Field(default=16, ge=1, description="Prompts per generation batch.")
    greedy: bool = Field(default=True, description="Greedy decoding for validation.")
    gold_scorer: Literal["none", "vader", "credit-gym"] = Field(default="none", description="Gold reward beside the RM.")
    heatmap_samples: int = Field(default=3, ge=0, description="Validation samples drawn as token heatmaps.")
    heatmap_epochs: Literal["every", "last"] = Field(
        default="every",
        description=(
            "Epochs whose heatmaps a sweep trial draws: `every` epoch, or only the `last` (each page runs "
            "every source on every sample, which can cost as much as a PPO step)."
        ),
    )


class Config(StrictSection):
    """The library's sections of a run: models, data, shaping, PPO, evaluation.

    A sweep file adds `search`, `tracking` and `resources`, which belong to the service
    (`tune_jobs.config.SweepConfig`); the YAML format is one file for both."""

    name: str = Field(default="dense-reward", description="Run name (also the default run directory).")
    seed: int = Field(default=0, description="Global seed.")
    models: ModelsConfig
    data: DataConfig
    shaping: ShapingConfig = Field(default_factory=ShapingConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.ppo.mini_batch_size > self.ppo.batch_size:
            raise ValueError(
                f"ppo.mini_batch_size ({self.ppo.mini_batch_size}) must be <= ppo.batch_size ({self.ppo.batch_size})"
            )
        if self.ppo.mini_batch_size % self.ppo.gradient_accumulation_steps:
            raise ValueError(
                "ppo.mini_batch_size must be a multiple of ppo.gradient_accumulation_steps, got "
                f"{self.ppo.mini_batch_size} and {self.ppo.gradient_accumulation_steps}"
            )
        if "shap" in self.shaping.sources:
            message = shap_budget_warning(self.shaping.shap.max_evals, self.ppo.max_new_tokens)
            if message is not None:
                warnings.warn(message, ConfigWarning, stacklevel=2)
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """A copy with dotted-path fields replaced, e.g. ``{"ppo.kl_coef": 0.1}``; validated again."""
        data = self.model_dump()
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"{dotted}: no such field")
                node = node[part]
            if not isinstance(node, dict) or leaf not in node:
                raise ConfigError(f"{dotted}: no such field")
            node[leaf] = value
        return validate_config(data, source="overrides", schema=type(self))


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------


def _sibling_keys(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``loc[:-1]`` of `schema` accepts (empty when it is not a config section)."""
    model: Any = schema
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        candidates = [field.annotation, *get_args(field.annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _format_error(error: ValidationError, source: str, schema: type[BaseModel]) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "<top level>"
        kind = item["type"]
        if kind == "extra_forbidden" and path in SWEEP_SECTIONS:
            message = "a sweep section, not read by the library's Config; load a sweep file with " \
                "tune_jobs.config.load_sweep_config (or SweepConfig.library_config() for the library's part)"
        elif kind == "extra_forbidden":
            close = get_close_matches(str(item["loc"][-1]), _sibling_keys(schema, item["loc"]), n=1)
            hint = f"did you mean {close[0]!r}? " if close else "check the spelling; "
            message = f"unknown key ({hint}see `dense-reward config show`)"
        elif kind == "missing":
            message = "required field is missing"
        else:
            # Our own checks name the field themselves; keep the one prefix.
            message = item["msg"].removeprefix("Value error, ").removeprefix(f"{path}: ")
            message = message.replace("Input should be greater than or equal to", "must be >=")
            message = message.replace("Input should be greater than", "must be >")
            message = message.replace("Input should be less than or equal to", "must be <=")
            message = message.replace("Input should be less than", "must be <")
            message = message.replace("Input should be", "must be")
        if kind not in ("extra_forbidden", "missing") and "input" in item and not isinstance(item["input"], dict):
            message += f", got {item['input']!r}"
        lines.append(f"{path}: {message}")
    return f"invalid config {source}:\n  " + "\n  ".join(lines)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def validate_config(data: Any, source: str = "<dict>", schema: type[ConfigT] = Config) -> ConfigT:
    """Validate a plain mapping into `schema` (a :class:`Config` by default); raise :class:`ConfigError`
    naming each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_error(error, source, schema)) from None


def load_config(path: str | Path, schema: type[ConfigT] = Config) -> ConfigT:
    """Read and validate a YAML config file into `schema` (a sweep file: `tune_jobs.config.SweepConfig`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    return validate_config(data, source=str(path), schema=schema)
