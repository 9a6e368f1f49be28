"""The BoTorch math of the search, as pure functions of arrays: fit, initial points, acquisition.

Shapes: ``n`` completed trials, ``p`` pending or failed trials, ``D = d + k`` model-vector length
(``d`` weights on the simplex, then ``k`` knobs on their search scale; see
:class:`~tune_jobs.search.space.SearchSpace`). Values ``y`` are to be maximised. Everything runs
in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from tune_jobs.search.space import SearchSpace

if TYPE_CHECKING:
    from botorch.models import SingleTaskGP

LOCAL_CENTRES = 3
"""Best observed points around which acquisition restarts are also sought."""
LOCAL_SAMPLES = 32
"""Jittered points drawn around each of them."""
FACE_FRACTION = 4
"""One raw candidate on a low-dimensional face per this many Sobol points."""
JITTER_CONCENTRATION = 50.0
"""Dirichlet concentration of the jitter: keeps it within a few hundredths of the centre's weights."""

Hyperparameters = dict[str, list]
"""A fitted GP's trained parameters by name, as nested lists (JSON-ready)."""


@contextmanager
def bounded_torch(threads: int, seed: int) -> Iterator[None]:
    """Run GP work on at most ``threads`` torch threads with a private, seeded torch RNG.

    The driver shares its cores with trials; the restored thread count and RNG leave the rest of
    the process as it was. Ill-conditioning and iteration-limit warnings, expected on tiny noisy
    data sets, are silenced inside. gpytorch's and linear_operator's ``debug`` checks of their
    arguments are off inside: the data come from the search space, not from a user, and the checks
    were a fifth of a suggestion's time (thousands of small operator constructions per SLSQP run)
    for the same candidates.
    """
    import gpytorch
    import linear_operator

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with (
            torch.random.fork_rng(devices=[]),
            warnings.catch_warnings(),
            gpytorch.settings.debug(False),
            linear_operator.settings.debug(False),
        ):
            warnings.filterwarnings("ignore", module=r"(botorch|gpytorch|linear_operator)\.")
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)


def sobol_unit(dim: int, count: int, seed: int, skip: int = 0) -> np.ndarray:
    """Points ``skip .. skip + count - 1`` of the scrambled Sobol sequence of ``seed``: ``(count, dim)`` in [0, 1]."""
    engine = torch.quasirandom.SobolEngine(dimension=dim, scramble=True, seed=seed)
    if skip:
        engine.fast_forward(skip)
    return engine.draw(count, dtype=torch.float64).numpy()


def fit_gp(
    x: np.ndarray,
    y: np.ndarray,
    bounds: np.ndarray,
    *,
    yvar: np.ndarray | None = None,
) -> SingleTaskGP:
    """A SingleTaskGP fitted to ``x`` ``(n, D)`` and ``y`` ``(n,)`` by maximum marginal likelihood.

    Inputs are normalised to the unit cube by ``bounds`` ``(2, D)``, the outcome standardised.

    Args:
        x: ``(n, D)`` model vectors.
        y: ``(n,)`` values to maximise.
        bounds: ``(2, D)`` box of the model vector.
        yvar: ``(n,)`` observed noise variances of ``y`` in its own units (a trial's sem squared), or
            ``None`` to learn one homoscedastic noise. The ``Standardize`` outcome transform divides
            them by ``y``'s variance together with ``y``, so they stay consistent in the model's scale.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    dim = bounds.shape[1]
    model = SingleTaskGP(
        torch.as_tensor(x, dtype=torch.float64),  # (n, D)
        torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1),  # (n, 1)
        train_Yvar=None
        if yvar is None
        else torch.as_tensor(yvar, dtype=torch.float64).unsqueeze(-1),  # (n, 1)
        input_transform=Normalize(d=dim, bounds=torch.as_tensor(bounds, dtype=torch.float64)),
        outcome_transform=Standardize(m=1),
    )
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def hyperparameters_of(model: SingleTaskGP) -> Hyperparameters:
    """The trained parameters of ``model`` by name (raw, before their constraints), as JSON-ready lists."""
    return {k: v.detach().tolist() for k, v in model.named_parameters()}


def simplex_corners(d: int) -> np.ndarray:
    """The ``d`` vertices and ``d (d - 1) / 2`` edge midpoints of the simplex: ``(d (d + 1) / 2, d)``.

    Uniform points almost never come near them, yet one or two sources alone (the sparse baseline,
    a single attribution source) are natural optima of a mixing weight.
    """
    eye = np.eye(d)
    midpoints = [(eye[i] + eye[j]) / 2 for i in range(d) for j in range(i + 1, d)]
    return np.concatenate([eye, np.array(midpoints).reshape(-1, d)])


def posterior_mean_sd(model: SingleTaskGP, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The posterior mean ``(m,)`` and sd ``(m,)`` of the objective (not of an observation) at ``x`` ``(m, D)``."""
    with torch.no_grad():
        posterior = model.posterior(torch.as_tensor(x, dtype=torch.float64))
        mean = posterior.mean.squeeze(-1).numpy()
        sd = posterior.variance.clamp_min(0.0).sqrt().squeeze(-1).numpy()
    return mean, sd


def raw_candidates(
    space: SearchSpace, x: np.ndarray, scores: np.ndarray, count: int, seed: int
) -> np.ndarray:
    """Points that pick the acquisition optimiser's starts: ``(m, D)``.

    ``count`` Sobol points on the space, the simplex's corners (:func:`simplex_corners`),
    ``count // FACE_FRACTION`` uniform points on random faces of 2 or 3 sources (interior points
    almost never come near a face, where few sources share the weight), and Dirichlet jitter around the observed points ``x`` ``(n, D)`` with the best ``scores`` ``(n,)``
    (the posterior mean, so that a lucky noisy value does not draw the local search). Drawn here
    rather than by BoTorch's hit-and-run polytope sampler, which costs seconds per suggestion; the
    uniform map onto the simplex (:meth:`SearchSpace.from_unit`) makes the Sobol points cover it evenly.
    """
    unit = sobol_unit(space.unit_dim, count, seed)  # (count, d - 1 + k)
    vectors = [space.to_vector(space.from_unit(u)) for u in unit]
    d = space.num_sources
    for i, corner in enumerate(simplex_corners(d)):
        # Knobs of the corners: those of the Sobol points, in turn.
        vectors.append(np.concatenate([corner, vectors[i % count][d:]]))
    rng = np.random.default_rng(seed)
    for i in range(count // FACE_FRACTION):
        face = rng.choice(d, size=min(int(rng.integers(2, 4)), d), replace=False)
        weights = np.zeros(d)
        weights[face] = rng.dirichlet(np.ones(len(face)))
        vectors.append(np.concatenate([weights, vectors[i][d:]]))
    low, high = space.bounds[:, d:]
    for best in x[np.argsort(-scores)[:LOCAL_CENTRES]]:
        for _ in range(LOCAL_SAMPLES):
            jitter = best.copy()
            # The 0.1 keeps every source reachable from a centre on a face of the simplex.
            jitter[:d] = rng.dirichlet(JITTER_CONCENTRATION * best[:d] + 0.1)
            jitter[d:] = np.clip(best[d:] + 0.05 * (high - low) * rng.standard_normal(len(low)), low, high)
            vectors.append(jitter)
    return np.stack(vectors)


def maximise_qlognei(
    model: SingleTaskGP,
    x: np.ndarray,
    pending: np.ndarray,
    candidates: np.ndarray,
    bounds: np.ndarray,
    num_sources: int,
    num_restarts: int,
    mc_samples: int,
    maxiter: int,
    seed: int,
) -> np.ndarray:
    """The ``(D,)`` maximiser of qLogNoisyExpectedImprovement on the simplex times the box.

    Args:
        model: The GP fitted to ``x``.
        x: ``(n, D)`` observed points, the baseline of the noisy improvement.
        pending: ``(p, D)`` points of running (or failed) trials: a point already there adds no
            improvement, so the optimiser moves away from them.
        candidates: ``(m, D)`` raw points, scored to pick ``num_restarts`` starts.
        bounds: ``(2, D)`` box of the model vector.
        num_sources: ``d``; ``sum(x[:d]) == 1`` is the equality constraint of the optimiser.
        num_restarts: Starts of the SLSQP optimiser.
        mc_samples: Quasi-MC samples of the acquisition function.
        maxiter: SLSQP iterations.
        seed: Seed of the MC sampler.
    """
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.optim.initializers import initialize_q_batch
    from botorch.sampling.normal import SobolQMCNormalSampler

    acquisition = qLogNoisyExpectedImprovement(
        model=model,
        X_baseline=torch.as_tensor(x, dtype=torch.float64),  # (n, D)
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed),
        X_pending=torch.as_tensor(pending, dtype=torch.float64) if len(pending) else None,  # (p, D)
        prune_baseline=True,
    )
    with torch.no_grad():
        raw = torch.as_tensor(candidates, dtype=torch.float64).unsqueeze(-2)  # (m, 1, D)
        starts, _ = initialize_q_batch(raw, acquisition(raw), n=num_restarts)  # (restarts, 1, D)
    simplex = (torch.arange(num_sources), torch.ones(num_sources, dtype=torch.float64), 1.0)
    candidate, _ = optimize_acqf(
        acquisition,
        bounds=torch.as_tensor(bounds, dtype=torch.float64),
        q=1,
        num_restarts=num_restarts,
        batch_initial_conditions=starts,
        equality_constraints=[simplex],
        options={"maxiter": maxiter},
    )
    return candidate[0].detach().numpy()  # (D,)


def too_close(vector: np.ndarray, others: np.ndarray, bounds: np.ndarray, distance: float) -> bool:
    """Whether ``vector`` ``(D,)`` lies within ``distance`` (max-norm, unit-cube units) of a row of ``others`` ``(p, D)``."""
    if not len(others):
        return False
    low, high = bounds
    scaled = (others - vector) / (high - low)  # (p, D)
    return bool(np.min(np.max(np.abs(scaled), axis=1)) < distance)
