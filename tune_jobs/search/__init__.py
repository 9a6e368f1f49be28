"""Searchers that propose trial configs on a :class:`~tune_jobs.search.space.SearchSpace` for Ray Tune.

- :class:`BoTorchSearcher`: ``n_init`` quasi-random points (user start points first), then a GP
  (SingleTaskGP) and qLogNoisyExpectedImprovement optimised on the simplex, running trials pending.
- :class:`SimplexOptunaSearch`: Ray's ``OptunaSearch`` (TPE or GP sampler) on the unit cube of
  :meth:`SearchSpace.from_unit`, whose warped stick-breaking lands every point on the simplex.
- :class:`RandomSimplexSearcher`: Dirichlet(1) weights, uniform knobs.

:func:`make_searcher` builds the one named by ``config.search.searcher``, wrapped in a
``ConcurrencyLimiter``. Every searcher maximises ``val_reward`` by default.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import torch
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import parse_spec_vars

from dense_reward.config import ConfigError
from tune_jobs.config import SweepConfig as Config
from tune_jobs.search.space import WEIGHTS_KEY, SearchSpace

METRIC = "val_reward"
MODE = "max"
STATE_FORMAT = "dense-reward/searcher-state"
STATE_VERSION = 1
LOCAL_CENTRES = 3
"""Best observed points around which acquisition restarts are also sought."""
LOCAL_SAMPLES = 32
"""Jittered points drawn around each of them."""

logger = logging.getLogger(__name__)

TrialStatus = Literal["pending", "completed", "failed"]


@dataclass
class TrialRecord:
    """What a searcher knows about one trial it proposed (or was told about)."""

    trial_id: str
    config: dict[str, Any]
    status: TrialStatus = "pending"
    value: float | None = None
    """The final metric value of a completed trial (as reported, not sign-flipped)."""
    reason: str | None = None
    """Why a trial failed: it raised, or its metric was missing, NaN or infinite."""
    results_seen: int = 0
    """Intermediate results received through ``on_trial_result``."""


# --------------------------------------------------------------------------------------------------
# shared bookkeeping
# --------------------------------------------------------------------------------------------------


class SimplexSearcher(Searcher):
    """Bookkeeping shared by the searchers that own their trial history (BoTorch, random).

    Subclasses implement :meth:`_propose`, a pure function of the seed, the suggestion index and the
    trial history, so that a restored searcher proposes what the uninterrupted one would have.

    Args:
        space: The search space.
        metric: Result key of the objective.
        mode: ``"max"`` or ``"min"``.
        points_to_evaluate: Full trial configs (see :meth:`SearchSpace.point`) proposed first, in order.
        seed: Seed of every random choice.
    """

    CKPT_FILE_TMPL = "searcher-state-{}.json"
    kind = "simplex"

    def __init__(
        self,
        space: SearchSpace,
        metric: str = METRIC,
        mode: str = MODE,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.seed = int(seed)
        self.points_to_evaluate = [self._checked_point(p, i) for i, p in enumerate(points_to_evaluate or [])]
        self.trials: dict[str, TrialRecord] = {}
        self.num_suggested = 0

    # ----------------------------------------------------------------------------------------------
    # Ray Tune Searcher API
    # ----------------------------------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Take Tune's metric and mode; refuse a ``param_space`` that holds search domains of its own."""
        _, domain_vars, grid_vars = parse_spec_vars(config or {})
        if domain_vars or grid_vars:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next trial config ``{"weights": {...}, <knobs>}``; always on the simplex and in the box."""
        if trial_id in self.trials:
            return copy.deepcopy(self.trials[trial_id].config)
        config = self._propose(self.num_suggested)
        self.num_suggested += 1
        self.trials[trial_id] = TrialRecord(trial_id=trial_id, config=config)
        return copy.deepcopy(config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        record = self.trials.get(trial_id)
        if record is not None:
            record.results_seen += 1

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record the final value; errors and missing or non-finite values make the trial failed.

        A failed trial that Tune resumes (``resume_errored``) and that then completes is recorded
        as completed; a completed trial is never changed.
        """
        record = self.trials.get(trial_id)
        if record is None:
            logger.warning("searcher: completion of unknown trial %s ignored", trial_id)
            return
        if record.status == "completed":
            return
        value = None if result is None else result.get(self.metric)
        if error:
            reason = "error"
        elif value is None:
            reason = f"no `{self.metric}` in the final result"
        elif not isinstance(value, int | float) or not math.isfinite(float(value)):
            reason = f"`{self.metric}` is {value!r}"
        else:
            record.status, record.value, record.reason = "completed", float(value), None
            return
        if record.status == "pending":
            record.status, record.reason = "failed", reason
            logger.warning("searcher: trial %s failed (%s); kept out of the model", trial_id, reason)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Add a trial evaluated elsewhere (e.g. a previous sweep) to the history."""
        if not self.space.contains(parameters, atol=1e-6):
            raise ValueError(f"evaluated point is not in the search space: {parameters}")
        config = self.space.point(parameters[WEIGHTS_KEY], {k: parameters[k] for k in self.space.knob_names})
        trial_id = f"evaluated-{len(self.trials)}"
        self.trials[trial_id] = TrialRecord(trial_id=trial_id, config=config)
        self.on_trial_complete(trial_id, None if pruned else {self.metric: value}, error=error)

    # ----------------------------------------------------------------------------------------------
    # history
    # ----------------------------------------------------------------------------------------------

    def records(self, status: TrialStatus | None = None) -> list[TrialRecord]:
        """Trial records in suggestion order, optionally only those with ``status``."""
        return [r for r in self.trials.values() if status is None or r.status == status]

    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Completed trials as model vectors ``X`` (n x D) and values ``y`` (n,) to maximise."""
        done = self.records("completed")
        if not done:
            return np.zeros((0, self.space.dim)), np.zeros(0)
        sign = 1.0 if self.mode == "max" else -1.0
        x = np.stack([self.space.to_vector(r.config) for r in done])  # (n, D)
        y = np.array([sign * r.value for r in done], dtype=np.float64)  # (n,)
        return x, y

    def best_config(self) -> dict[str, Any] | None:
        """The completed trial config with the best reported value (None before any completes)."""
        done = self.records("completed")
        if not done:
            return None
        pick = max if self.mode == "max" else min
        return copy.deepcopy(pick(done, key=lambda r: r.value).config)

    # ----------------------------------------------------------------------------------------------
    # save / restore (plain JSON)
    # ----------------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this searcher is, as JSON-ready data."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "kind": self.kind,
            "space": self.space.signature(),
            "metric": self.metric,
            "mode": self.mode,
            "seed": self.seed,
            "points_to_evaluate": self.points_to_evaluate,
            "num_suggested": self.num_suggested,
            "trials": [asdict(r) for r in self.trials.values()],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` output; refuse state of another kind of searcher or space."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"not a searcher state of format {STATE_FORMAT} v{STATE_VERSION}: "
                f"format={state.get('format')!r}, version={state.get('version')!r}"
            )
        if state["kind"] != self.kind:
            raise ValueError(f"searcher state is for a `{state['kind']}` searcher, not `{self.kind}`")
        if state["space"] != self.space.signature():
            raise ValueError(
                f"searcher state was saved for the space {state['space']}, "
                f"but this sweep searches {self.space.signature()}"
            )
        self._metric, self._mode = state["metric"], state["mode"]
        self.seed = int(state["seed"])
        self.points_to_evaluate = [self._checked_point(p, i) for i, p in enumerate(state["points_to_evaluate"])]
        self.num_suggested = int(state["num_suggested"])
        self.trials = {r["trial_id"]: TrialRecord(**r) for r in state["trials"]}

    def save(self, checkpoint_path: str) -> None:
        """Write :meth:`get_state` as JSON (Ray calls this after every trial event)."""
        Path(checkpoint_path).write_text(json.dumps(self.get_state(), allow_nan=False))

    def restore(self, checkpoint_path: str) -> None:
        """Read a file written by :meth:`save`."""
        path = Path(checkpoint_path)
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read searcher state {path}: {error}") from None
        if not isinstance(state, dict):
            raise ValueError(f"searcher state {path} is not a JSON object")
        try:
            self.set_state(state)
        except (KeyError, TypeError) as error:
            raise ValueError(f"searcher state {path} is incomplete or malformed: {error!r}") from None

    # ----------------------------------------------------------------------------------------------
    # for subclasses
    # ----------------------------------------------------------------------------------------------

    def _propose(self, index: int) -> dict[str, Any]:
        """The config of suggestion number ``index`` (0-based), given the current history."""
        raise NotImplementedError

    def _checked_point(self, point: Mapping[str, Any], index: int) -> dict[str, Any]:
        if not self.space.contains(point):
            raise ValueError(f"points_to_evaluate[{index}] is not in the search space: {dict(point)}")
        return self.space.point(point[WEIGHTS_KEY], {k: point[k] for k in self.space.knob_names})

    def _suggestion_seed(self, index: int) -> int:
        """A well-mixed seed for suggestion ``index``: a fixed function of (seed, index)."""
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------------
# random
# --------------------------------------------------------------------------------------------------


class RandomSimplexSearcher(SimplexSearcher):
    """Start points first, then weights from Dirichlet(1) (uniform on the simplex) and uniform knobs."""

    kind = "random"

    def _propose(self, index: int) -> dict[str, Any]:
        if index < len(self.points_to_evaluate):
            return copy.deepcopy(self.points_to_evaluate[index])
        return self.space.sample_uniform(np.random.default_rng(self._suggestion_seed(index)))


# --------------------------------------------------------------------------------------------------
# BoTorch
# --------------------------------------------------------------------------------------------------


@contextmanager
def _bounded_torch(threads: int, seed: int) -> Iterator[None]:
    """Run GP work on at most ``threads`` torch threads with a private, seeded torch RNG.

    The driver shares its cores with trials; the restored thread count and RNG leave the rest of
    the process as it was.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)


class BoTorchSearcher(SimplexSearcher):
    """Bayesian optimisation on the weight simplex (and knob box) with BoTorch.

    Suggestion ``i`` is, in order of precedence:

    1. ``points_to_evaluate[i]``;
    2. while fewer than ``n_init`` trials are known, or fewer than ``min_observations`` have
       completed, the next point of a scrambled Sobol sequence on the unit cube, mapped uniformly
       onto the simplex and box;
    3. otherwise the maximiser of qLogNoisyExpectedImprovement under a SingleTaskGP fitted to the
       completed trials (inputs normalised to the unit cube, outcome standardised, float64), with
       pending and failed trials as ``X_pending`` (a point already running or failed adds no
       improvement, so the optimiser moves away from it), optimised by ``optimize_acqf`` with the
       simplex ``sum(w) == 1`` as an equality constraint.

    A GP candidate that still lands within ``min_distance`` (in unit-cube units) of a pending or
    failed trial is replaced by the next unused Sobol point. Each GP fit starts from the previous
    fit's hyperparameters, which are part of the saved state.

    Args:
        space: The search space.
        metric: Result key of the objective.
        mode: ``"max"`` or ``"min"``.
        points_to_evaluate: Full trial configs proposed first; they count toward ``n_init``.
        seed: Seed of the Sobol sequence, the MC sampler and the acquisition optimiser.
        n_init: Quasi-random suggestions (start points included) before the GP takes over.
        min_observations: Completed trials the GP needs; fewer -> keep drawing Sobol points.
        num_restarts: Restarts of the acquisition optimiser.
        raw_samples: Sobol points scored (with jitter around the best points) to pick the restarts.
        mc_samples: Quasi-MC samples of the acquisition function.
        maxiter: SLSQP iterations per acquisition optimisation.
        torch_threads: torch threads used while fitting and optimising.
        min_distance: Closest a GP candidate may come to a pending or failed trial.
    """

    kind = "botorch"

    def __init__(
        self,
        space: SearchSpace,
        metric: str = METRIC,
        mode: str = MODE,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
        n_init: int = 5,
        min_observations: int = 2,
        num_restarts: int = 4,
        raw_samples: int = 256,
        mc_samples: int = 64,
        maxiter: int = 50,
        torch_threads: int = 1,
        min_distance: float = 1e-4,
    ) -> None:
        if n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        if min_observations < 1:
            raise ValueError(f"min_observations must be >= 1, got {min_observations}")
        super().__init__(space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=seed)
        self.n_init = int(n_init)
        self.min_observations = int(min_observations)
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.mc_samples = mc_samples
        self.maxiter = maxiter
        self.torch_threads = torch_threads
        self.min_distance = min_distance
        self.hyperparameters: dict[str, list] | None = None
        self.num_gp_fallbacks = 0

    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "n_init": self.n_init,
            "hyperparameters": self.hyperparameters,
            "num_gp_fallbacks": self.num_gp_fallbacks,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.n_init = int(state["n_init"])
        self.hyperparameters = state["hyperparameters"]
        self.num_gp_fallbacks = int(state["num_gp_fallbacks"])

    # ----------------------------------------------------------------------------------------------
    # proposals
    # ----------------------------------------------------------------------------------------------

    def _propose(self, index: int) -> dict[str, Any]:
        num_points = len(self.points_to_evaluate)
        if index < num_points:
            return copy.deepcopy(self.points_to_evaluate[index])
        x, y = self.observations()
        # Trials added with add_evaluated_point count toward the initial design like suggested ones.
        if len(self.trials) < max(self.n_init, num_points) or len(y) < self.min_observations:
            return self._sobol_config(index - num_points, self.seed)
        return self._gp_config(index, x, y)

    def _sobol_config(self, position: int, seed: int) -> dict[str, Any]:
        """Point ``position`` of the scrambled Sobol sequence of ``seed``, mapped onto the space."""
        engine = torch.quasirandom.SobolEngine(dimension=self.space.unit_dim, scramble=True, seed=seed)
        if position:
            engine.fast_forward(position)
        u = engine.draw(1, dtype=torch.float64)[0].numpy()  # (d - 1 + k,)
        return self.space.from_unit(u)

    def _gp_config(self, index: int, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """The acquisition maximiser given completed ``x`` (n x D) and ``y`` (n,)."""
        avoid = [self.space.to_vector(r.config) for r in self.trials.values() if r.status != "completed"]
        seed = self._suggestion_seed(index)
        with _bounded_torch(self.torch_threads, seed), warnings.catch_warnings():
            # Ill-conditioning and iteration-limit warnings are expected on tiny noisy data sets.
            warnings.filterwarnings("ignore", module=r"(botorch|gpytorch|linear_operator)\.")
            candidate = self._maximise_acquisition(x, y, np.array(avoid).reshape(-1, self.space.dim), seed)
        config = self.space.from_vector(candidate)
        if self._too_close(self.space.to_vector(config), avoid):
            self.num_gp_fallbacks += 1
            # A second sequence (its own seed) so a fallback never repeats a point of the initial design.
            return self._sobol_config(index, seed)
        return config

    def _maximise_acquisition(self, x: np.ndarray, y: np.ndarray, pending: np.ndarray, seed: int) -> np.ndarray:
        """Fit the GP and return the ``(D,)`` maximiser of qLogNEI; ``pending`` is ``p x D``."""
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.input import Normalize
        from botorch.models.transforms.outcome import Standardize
        from botorch.optim import optimize_acqf
        from botorch.optim.initializers import initialize_q_batch
        from botorch.sampling.normal import SobolQMCNormalSampler
        from gpytorch.mlls import ExactMarginalLogLikelihood

        bounds = torch.as_tensor(self.space.bounds, dtype=torch.float64)  # (2, D)
        train_x = torch.as_tensor(x, dtype=torch.float64)  # (n, D)
        train_y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)  # (n, 1)
        model = SingleTaskGP(
            train_x,
            train_y,
            input_transform=Normalize(d=self.space.dim, bounds=bounds),
            outcome_transform=Standardize(m=1),
        )
        if self.hyperparameters is not None:
            model.load_state_dict(
                {k: torch.tensor(v, dtype=torch.float64) for k, v in self.hyperparameters.items()}, strict=False
            )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        # Only the trained parameters: priors, constraints and the data transforms are rebuilt identically.
        self.hyperparameters = {k: v.detach().tolist() for k, v in model.named_parameters()}
        acquisition = qLogNoisyExpectedImprovement(
            model=model,
            X_baseline=train_x,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([self.mc_samples]), seed=seed),
            X_pending=torch.as_tensor(pending, dtype=torch.float64) if len(pending) else None,  # (p, D)
            prune_baseline=True,
        )
        with torch.no_grad():
            raw = self._raw_candidates(x, y, seed).unsqueeze(-2)  # (raw_samples + local, 1, D)
            starts, _ = initialize_q_batch(raw, acquisition(raw), n=self.num_restarts)  # (restarts, 1, D)
        d = self.space.num_sources
        simplex = (torch.arange(d), torch.ones(d, dtype=torch.float64), 1.0)
        candidate, _ = optimize_acqf(
            acquisition,
            bounds=bounds,
            q=1,
            num_restarts=self.num_restarts,
            batch_initial_conditions=starts,
            equality_constraints=[simplex],
            options={"maxiter": self.maxiter},
        )
        return candidate[0].detach().numpy()  # (D,)

    def _raw_candidates(self, x: np.ndarray, y: np.ndarray, seed: int) -> torch.Tensor:
        """``raw_samples`` Sobol points on the space plus Dirichlet jitter around the best observed points.

        Drawn here rather than by BoTorch's hit-and-run polytope sampler, which costs seconds per
        suggestion; the uniform map onto the simplex makes the Sobol points cover it evenly.
        """
        engine = torch.quasirandom.SobolEngine(dimension=self.space.unit_dim, scramble=True, seed=seed)
        unit = engine.draw(self.raw_samples, dtype=torch.float64).numpy()  # (raw_samples, d - 1 + k)
        vectors = [self.space.to_vector(self.space.from_unit(u)) for u in unit]
        rng = np.random.default_rng(seed)
        d = self.space.num_sources
        for best in x[np.argsort(-y)[:LOCAL_CENTRES]]:
            for _ in range(LOCAL_SAMPLES):
                jitter = best.copy()
                # Concentration 50 keeps the jitter within a few hundredths of the centre's weights.
                jitter[:d] = rng.dirichlet(50.0 * best[:d] + 0.1)
                low, high = self.space.bounds[:, d:]
                jitter[d:] = np.clip(best[d:] + 0.05 * (high - low) * rng.standard_normal(len(low)), low, high)
                vectors.append(jitter)
        return torch.as_tensor(np.stack(vectors), dtype=torch.float64)  # (n_raw, D)

    def _too_close(self, vector: np.ndarray, others: list[np.ndarray]) -> bool:
        if not others:
            return False
        low, high = self.space.bounds
        scaled = (np.stack(others) - vector) / (high - low)  # (p, D)
        return bool(np.min(np.max(np.abs(scaled), axis=1)) < self.min_distance)


# --------------------------------------------------------------------------------------------------
# Optuna
# --------------------------------------------------------------------------------------------------


class SimplexOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` on the unit cube of the space, suggesting configs on the simplex.

    Optuna samples ``d - 1`` stick fractions and ``k`` knob positions in ``[0, 1]``;
    :meth:`SearchSpace.from_unit` turns them into ``{"weights": ..., <knobs>}``, so the config Ray
    passes to the trainable holds weights on the simplex and never the latent values.

    Args:
        space: The search space.
        sampler: ``"tpe"`` (multivariate TPE) or ``"gp"`` (Optuna's GPSampler).
        metric: Result key of the objective.
        mode: ``"max"`` or ``"min"``.
        points_to_evaluate: Full trial configs proposed first.
        seed: Seed of the sampler.
        n_init: Random trials before the sampler models the objective.
    """

    def __init__(
        self,
        space: SearchSpace,
        sampler: Literal["tpe", "gp"] = "tpe",
        metric: str = METRIC,
        mode: str = MODE,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
        n_init: int = 5,
    ) -> None:
        self.search_space = space
        self.latent_names = [f"simplex_{i}" for i in range(space.num_sources - 1)] + [
            f"knob:{name}" for name in space.knob_names
        ]
        if sampler == "tpe":
            optuna_sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_init, multivariate=True
            )
        elif sampler == "gp":
            optuna_sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_init)
        else:
            raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
        latent_points = []
        for i, point in enumerate(points_to_evaluate or []):
            if not space.contains(point):
                raise ValueError(f"points_to_evaluate[{i}] is not in the search space: {dict(point)}")
            latent_points.append(dict(zip(self.latent_names, space.to_unit(point).tolist(), strict=True)))
        distributions = {name: optuna.distributions.FloatDistribution(0.0, 1.0) for name in self.latent_names}
        super().__init__(
            space=distributions,
            metric=metric,
            mode=mode,
            points_to_evaluate=latent_points,
            sampler=optuna_sampler,
        )

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        latent = super().suggest(trial_id)
        if latent is None:
            return None
        return self.search_space.from_unit(np.array([latent[name] for name in self.latent_names]))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        # Optuna only uses intermediate values for pruning; a missing or non-finite one must not crash the sweep.
        if isinstance(value, int | float) and math.isfinite(float(value)):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        value = None if result is None else result.get(self.metric)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(float(value))):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)


# --------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------


def make_searcher(config: Config, space: SearchSpace | None = None) -> Searcher:
    """The searcher named by ``config.search.searcher``, limited to ``search.max_concurrent`` trials.

    It maximises ``val_reward``, proposes ``search.points_to_evaluate`` first (knobs at their
    config values) and is seeded with ``search.seed``. The returned ``ConcurrencyLimiter`` holds the
    searcher itself in ``.searcher``.
    """
    search = config.search
    space = space or SearchSpace.from_config(config)
    points = []
    for i, weights in enumerate(search.points_to_evaluate):
        try:
            points.append(space.point(weights))
        except ValueError as error:
            raise ConfigError(f"search.points_to_evaluate[{i}]: {error}") from None
    searcher: Searcher
    if search.searcher == "botorch":
        searcher = BoTorchSearcher(space, points_to_evaluate=points, seed=search.seed, n_init=search.n_init)
    elif search.searcher in ("optuna-tpe", "optuna-gp"):
        sampler: Literal["tpe", "gp"] = "tpe" if search.searcher == "optuna-tpe" else "gp"
        searcher = SimplexOptunaSearch(
            space, sampler=sampler, points_to_evaluate=points, seed=search.seed, n_init=search.n_init
        )
    elif search.searcher == "random":
        searcher = RandomSimplexSearcher(space, points_to_evaluate=points, seed=search.seed)
    else:
        raise ConfigError(f"search.searcher: unknown searcher {search.searcher!r}")
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
