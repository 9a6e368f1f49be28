"""The service's sections of a sweep file: search, tracking, resources; and the search objective.

One YAML file holds a whole sweep: the library's sections (`dense_reward.config.Config`: models,
data, shaping, ppo, evaluation) and these. :class:`SweepConfig` is both together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, field_validator, model_validator

from dense_reward.config import Config, StrictSection, load_config, validate_config

METRIC = "val_reward"
"""The metric every trial reports and the search maximises."""
MODE = "max"
"""`METRIC` is maximised."""


class KnobSpec(StrictSection):
    """A box-constrained knob searched beside the weights (e.g. `shaping.tau`, `ppo.kl_coef`)."""

    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")
    log: bool = Field(default=False, description="Search on a log scale.")

    @model_validator(mode="after")
    def _ordered(self) -> KnobSpec:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale knob needs low > 0, got {self.low}")
        return self


KNOBS = ("shaping.tau", "ppo.kl_coef", "ppo.learning_rate", "ppo.ent_coef")
"""Config fields a sweep may search beside the weights."""


class SearchConfig(StrictSection):
    """The outer loop: which searcher proposes weights (and knobs), and how many trials."""

    searcher: Literal["botorch", "optuna-tpe", "optuna-gp", "random"] = Field(default="botorch")
    trials: int = Field(default=25, ge=1, description="Trials in the sweep.")
    n_init: int = Field(default=5, ge=1, description="Quasi-random trials before the GP.")
    max_concurrent: int = Field(default=1, ge=1, description="Trials running at once.")
    seed: int = Field(default=0, description="Searcher seed.")
    points_to_evaluate: list[dict[str, float]] = Field(
        default_factory=list, description="Weights to try first (count toward n_init)."
    )
    knobs: dict[str, KnobSpec] = Field(default_factory=dict, description="Box knobs searched with the weights.")
    early_stopping: bool = Field(default=False, description="ASHA early stopping on val_reward.")
    grace_period: int = Field(default=2, ge=1, description="ASHA: epochs before a trial may be stopped.")
    confirm_top_k: int = Field(
        default=0, ge=0, description="After the search, re-run this many recommended candidates (0 = no confirmation)."
    )
    confirm_seeds: int = Field(
        default=3, ge=1, description="Fresh seeds per candidate (and the sparse baseline) in the confirmation phase."
    )

    @field_validator("knobs")
    @classmethod
    def _known_knobs(cls, value: dict[str, KnobSpec]) -> dict[str, KnobSpec]:
        unknown = [k for k in value if k not in KNOBS]
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; known: {list(KNOBS)}")
        return value


class TrackingConfig(StrictSection):
    """MLflow."""

    uri: str | None = Field(default=None, description="Tracking URI; None = sqlite:///<run dir>/mlflow.db.")
    experiment: str = Field(default="dense-reward", description="MLflow experiment name.")
    register_model: str | None = Field(default=None, description="Registry name for `final` (default: run name).")


class ResourcesConfig(StrictSection):
    """What a trial asks Ray for, and how faults are handled."""

    cpus_per_trial: float = Field(default=1.0, gt=0.0, description="CPUs per trial (fractions allowed).")
    gpus_per_trial: float = Field(default=0.0, ge=0.0, description="GPUs per trial (fractions allowed).")
    custom_per_trial: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="Extra Ray resources per trial, e.g. {trial_slot: 1}; nodes offer them with `ray start --resources`.",
    )
    max_failures: int = Field(default=2, ge=0, description="Retries of a failed trial (from its checkpoint).")
    storage_path: str | None = Field(default=None, description="Ray storage; None = ./runs/<name>.")
    checkpoints_to_keep: int = Field(default=2, ge=1, description="Best checkpoints kept per trial.")
    torch_threads: int | None = Field(default=None, ge=1, description="torch threads per trial.")


class SweepConfig(Config):
    """A whole sweep: the library's sections plus search, tracking and resources."""

    search: SearchConfig = Field(default_factory=SearchConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    @model_validator(mode="after")
    def _start_points_in_sources(self) -> SweepConfig:
        unknown = [k for p in self.search.points_to_evaluate for k in p if k not in self.shaping.sources]
        if unknown:
            raise ValueError(f"search.points_to_evaluate names source(s) {unknown} not in shaping.sources")
        return self

    def library_config(self) -> Config:
        """The library's sections alone (what `dense_reward.run.Run` takes)."""
        return Config.model_validate(self.model_dump(exclude={"search", "tracking", "resources"}))


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file; errors name the field path and the bad value."""
    return load_config(path, schema=SweepConfig)


def validate_sweep_config(data: Any, source: str = "<dict>") -> SweepConfig:
    """Validate a plain mapping into a :class:`SweepConfig`."""
    return validate_config(data, source=source, schema=SweepConfig)
