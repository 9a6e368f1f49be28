"""The plan of a confirmation phase: which points re-run (the top-k by GP posterior mean, and the
sparse-only baseline) and with which fresh seeds."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dense_reward.config import ConfigError
from dense_reward.errors import UserError
from tune_jobs.config import SweepConfig
from tune_jobs.files import write_atomically
from tune_jobs.results import SweepResults
from tune_jobs.search.space import WEIGHTS_KEY

PLAN_FILE = "confirmation.json"
"""The plan, in the run dir: written before the first re-run starts, read back on resume."""
BASELINE = "sparse"
BASELINE_LABEL = "sparse-only"
SEED_STREAM = 0xC0F1
"""Mixed into the seeds' generator so the fresh seeds are a stream of their own."""


def check_config(config: SweepConfig) -> None:
    """Refuse a confirmation phase that could not run its baseline (before the search starts)."""
    if config.search.confirm_top_k and BASELINE not in config.shaping.sources:
        raise ConfigError(
            f"search.confirm_top_k: the confirmation phase compares candidates with the sparse-only baseline, "
            f"so shaping.sources must include {BASELINE!r} (got {list(config.shaping.sources)}); "
            "or set search.confirm_top_k: 0"
        )


@dataclass
class Candidate:
    """A point the phase re-runs."""

    label: str
    """``#1`` .. ``#k`` in GP rank order, or `BASELINE_LABEL`."""
    config: dict[str, Any]
    """Trial config without seed: ``{"weights": {...}, <knobs>}``."""
    trial_id: str | None = None
    """The search trial at this point (its checkpoint is what `final` trains on); None for the baseline."""
    posterior_mean: float | None = None
    """The GP posterior mean of val_reward there, from the search (the observed value when no GP was fitted)."""

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.config[WEIGHTS_KEY])

    @property
    def knobs(self) -> dict[str, float]:
        return {k: v for k, v in self.config.items() if k != WEIGHTS_KEY}


def config_key(config: Mapping[str, Any]) -> str:
    """A trial config as canonical JSON: how a Ray trial is matched to its place in the plan."""
    return json.dumps(config, sort_keys=True)


@dataclass
class Rerun:
    """One re-run: a point at a seed, and the trial config handed to Ray."""

    label: str
    seed: int
    config: dict[str, Any]
    """The point's config plus ``"seed": seed`` (`tune_jobs.trainable.SEED_KEY`)."""


@dataclass
class ConfirmationPlan:
    """The candidates (GP rank order), the baseline, the fresh seeds every one of them runs, and the re-runs."""

    seeds: list[int]
    candidates: list[Candidate]
    baseline: Candidate
    reruns: list[Rerun]
    """Seed by seed, so each seed's pairs finish close together; empty without candidates."""
    note: str | None = None
    """Why fewer than ``confirm_top_k`` candidates were found, if so."""

    @property
    def points(self) -> list[Candidate]:
        """Candidates, then the baseline."""
        return [*self.candidates, self.baseline]

    def trial_configs(self) -> list[dict[str, Any]]:
        """Every re-run's trial config, in order."""
        return [copy.deepcopy(r.config) for r in self.reruns]

    def locate(self, trial_config: Mapping[str, Any]) -> Rerun | None:
        """The re-run a Ray trial config belongs to, or None."""
        key = config_key(trial_config)
        return next((r for r in self.reruns if config_key(r.config) == key), None)

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ConfirmationPlan:
        try:
            data = json.loads(path.read_text())
            return cls(
                seeds=[int(s) for s in data["seeds"]],
                candidates=[Candidate(**c) for c in data["candidates"]],
                baseline=Candidate(**data["baseline"]),
                reruns=[Rerun(**r) for r in data["reruns"]],
                note=data.get("note"),
            )
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise UserError(f"{path} is not a confirmation plan ({error}); was it edited by hand?") from None


def fresh_seeds(config: SweepConfig, count: int) -> list[int]:
    """``count`` distinct seeds the search never used (not ``seed``, not ``ppo.seed``), from the sweep's seeds."""
    used = {config.seed, config.ppo.seed}
    rng = np.random.default_rng([config.seed, config.search.seed, SEED_STREAM])
    seeds: list[int] = []
    while len(seeds) < count:
        seed = int(rng.integers(2**31))
        if seed not in used and seed not in seeds:
            seeds.append(seed)
    return seeds


def make_plan(config: SweepConfig, results: SweepResults) -> ConfirmationPlan:
    """The top ``search.confirm_top_k`` distinct evaluated points by GP posterior mean, the baseline, the seeds.

    Only trials that ran every epoch are ranked, each by its last val_reward and standard error (as for
    the recommendation); a point equal to the baseline is not a candidate (it runs as the baseline).
    """
    from tune_jobs.search import SearchSpace, recommend
    from tune_jobs.trainable import SEED_KEY

    space = SearchSpace.from_config(config)
    baseline = Candidate(BASELINE_LABEL, space.point({BASELINE: 1.0}))
    seeds = fresh_seeds(config, config.search.confirm_seeds)
    done = [row for row in results.trials if row.val_reward is not None and row.epoch >= config.ppo.epochs]
    if not done:
        return ConfirmationPlan(seeds, [], baseline, [], note="no search trial ran every epoch")
    points = [space.point(row.weights, {k: row.knobs[k] for k in space.knob_names}) for row in done]
    answer = recommend(space, points, [row.val_reward for row in done], [row.val_reward_sem for row in done])
    taken = [space.to_vector(baseline.config)]  # (D,) each
    chosen: list[Candidate] = []
    # A stable sort keeps tied points in trial order.
    for position in np.argsort(-np.asarray(answer.means), kind="stable"):
        vector = space.to_vector(points[position])
        if any(np.allclose(vector, other, atol=1e-9) for other in taken):
            continue
        taken.append(vector)
        label = f"#{len(chosen) + 1}"
        chosen.append(Candidate(label, points[position], done[position].trial_id, answer.means[position]))
        if len(chosen) == config.search.confirm_top_k:
            break
    note = None
    if len(chosen) < config.search.confirm_top_k:
        note = (
            f"{len(chosen)} distinct evaluated point(s) besides the baseline ran every epoch, "
            f"fewer than search.confirm_top_k = {config.search.confirm_top_k}"
        )
    reruns = [
        Rerun(point.label, seed, {**point.config, SEED_KEY: seed})
        for seed in seeds
        for point in [*chosen, baseline]
    ]
    return ConfirmationPlan(seeds, chosen, baseline, reruns if chosen else [], note=note)
