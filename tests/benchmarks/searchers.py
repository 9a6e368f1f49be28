"""Searchers on noisy synthetic objectives over the weight simplex: simple regret and suggestion latency.

Settings: two objective shapes (``bump``: one Gaussian bump at an interior point; ``two-bumps``: a
lower interior bump plus the global one on a 2-source face, as when few sources matter) on the
simplex of d = 4 and d = 6 sources, Gaussian observation noise (sd 0.05 on a [0, 1] scale), 25
trials, n_init 5, concurrency 1 and 4 (4 suggestions asked before any is reported, so the BoTorch
searcher sees the other 3 as pending), and ``--seeds`` seeds (the seed also draws the objective).

Simple regret = f* - f(w_best), where ``w_best`` is the trial with the best *observed* (noisy)
value, the point a sweep would report, and f is the noise-free objective. Every searcher is driven
directly through the Ray ``Searcher`` API (no cluster). Then the BoTorch suggestion latency is
timed with 50 completed observations (wall clock and process CPU time).

Run by hand (about 15-20 minutes on 2 otherwise idle CPU cores):

    .venv/bin/python tests/benchmarks/searchers.py

Writes ``tests/benchmarks/results/searchers.json`` and ``searchers.md``; every finished sweep is
also appended to ``searchers.runs.jsonl``, so a second run only does what is missing, and
``--report-only`` reports the seeds finished so far.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("sparse", "attention", "redistribution", "shap", "lime", "gradient")
SEARCHERS = ("botorch", "random", "optuna-tpe", "optuna-gp")
SHAPES = ("bump", "two-bumps")
DIMS = (4, 6)
CONCURRENCY = (1, 4)
TRIALS = 25
N_INIT = 5
NOISE_SD = 0.05


# --------------------------------------------------------------------------------------------------
# objectives
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A noise-free function on the ``d``-simplex with its maximum ``best``; observations add noise."""

    shape: str
    centres: np.ndarray  # (m, d) bump centres
    heights: np.ndarray  # (m,)
    width: float
    best: float

    def __call__(self, weights: np.ndarray) -> float:
        distances = np.sum((self.centres - weights) ** 2, axis=1)  # (m,)
        return float(np.sum(self.heights * np.exp(-distances / (2 * self.width**2))))


def make_objective(shape: str, d: int, seed: int) -> Objective:
    """The objective of one seed: centres drawn from the seed, the maximum found numerically."""
    from scipy.optimize import minimize

    rng = np.random.default_rng([seed, d, SHAPES.index(shape)])
    if shape == "bump":
        centres, heights, width = rng.dirichlet(np.full(d, 2.0))[None], np.array([1.0]), 0.25
    elif shape == "two-bumps":
        face = np.zeros(d)
        active = rng.choice(d, size=2, replace=False)
        face[active] = rng.dirichlet([2.0, 2.0])
        centres, heights, width = np.stack([rng.dirichlet(np.full(d, 2.0)), face]), np.array([0.7, 1.0]), 0.15
    else:
        raise ValueError(f"unknown shape {shape!r}")
    objective = Objective(shape, centres, heights, width, best=0.0)
    starts = [*centres, *rng.dirichlet(np.ones(d), size=8)]
    best = max(
        -minimize(
            lambda w: -objective(w),
            start,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * d,
            constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}],
        ).fun
        for start in starts
    )
    return Objective(shape, centres, heights, width, best=float(max(best, *(objective(c) for c in centres))))


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------


def build_searcher(name: str, d: int, seed: int) -> Any:
    from tune_jobs.search import BoTorchSearcher, RandomSimplexSearcher, SimplexOptunaSearch
    from tune_jobs.search.space import SearchSpace

    space = SearchSpace(SOURCES[:d])
    if name == "botorch":
        return BoTorchSearcher(space, seed=seed, n_init=N_INIT)
    if name == "random":
        return RandomSimplexSearcher(space, seed=seed)
    if name in ("optuna-tpe", "optuna-gp"):
        return SimplexOptunaSearch(space, sampler=name.removeprefix("optuna-"), seed=seed, n_init=N_INIT)
    raise ValueError(f"unknown searcher {name!r}")


def run_one(task: tuple[str, str, int, int, int]) -> dict[str, Any]:
    """One sweep of TRIALS trials; returns the regret at the best observed point and suggestion times."""
    name, shape, d, concurrency, seed = task
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tune_jobs.search").setLevel(logging.ERROR)
    objective = make_objective(shape, d, seed)
    searcher = build_searcher(name, d, seed)
    noise = np.random.default_rng([seed, 99])
    sources = SOURCES[:d]
    observed: list[tuple[float, float]] = []  # (noisy value, true value)
    suggest_seconds = []
    for first in range(0, TRIALS, concurrency):
        batch = []
        for i in range(first, min(first + concurrency, TRIALS)):
            start = time.perf_counter()
            config = searcher.suggest(f"t{i}")
            suggest_seconds.append(time.perf_counter() - start)
            weights = np.array([config["weights"][s] for s in sources])
            if np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-9:
                raise AssertionError(f"{name} suggested weights off the simplex: {config}")
            batch.append((f"t{i}", weights))
        for trial_id, weights in batch:
            true_value = objective(weights)
            value = true_value + NOISE_SD * noise.standard_normal()
            searcher.on_trial_complete(trial_id, {"val_reward": value})
            observed.append((value, true_value))
    best_true = max(observed)[1]
    return {
        "searcher": name,
        "shape": shape,
        "d": d,
        "concurrency": concurrency,
        "seed": seed,
        "regret": objective.best - best_true,
        "suggest_seconds": suggest_seconds,
    }


# --------------------------------------------------------------------------------------------------
# latency with 50 observations
# --------------------------------------------------------------------------------------------------


def botorch_latency(d: int, suggestions: int) -> dict[str, Any]:
    """Time BoTorch suggestions once 50 trials have completed (each new one completes before the next)."""
    import torch

    from tune_jobs.search import BoTorchSearcher
    from tune_jobs.search.space import SearchSpace

    torch.set_num_threads(1)
    logging.getLogger("tune_jobs.search").setLevel(logging.ERROR)
    objective = make_objective("bump", d, 0)
    space = SearchSpace(SOURCES[:d])
    searcher = BoTorchSearcher(space, seed=0, n_init=50)
    noise = np.random.default_rng(0)

    def report(trial_id: str, config: dict[str, Any]) -> None:
        weights = np.array([config["weights"][s] for s in space.sources])
        searcher.on_trial_complete(trial_id, {"val_reward": objective(weights) + NOISE_SD * noise.standard_normal()})

    for i in range(50):
        report(f"init{i}", searcher.suggest(f"init{i}"))
    searcher.n_init = N_INIT
    report("warm-up", searcher.suggest("warm-up"))  # pays the one-off botorch import
    wall, cpu = [], []
    for i in range(suggestions):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        config = searcher.suggest(f"timed{i}")
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
        report(f"timed{i}", config)
    return {
        "d": d,
        "observations": 50,
        "suggestions": suggestions,
        "wall_p50": float(np.percentile(wall, 50)),
        "wall_p95": float(np.percentile(wall, 95)),
        "cpu_p50": float(np.percentile(cpu, 50)),
        "cpu_p95": float(np.percentile(cpu, 95)),
    }


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for shape in SHAPES:
        for d in DIMS:
            for concurrency in CONCURRENCY:
                row: dict[str, Any] = {"shape": shape, "d": d, "concurrency": concurrency}
                for name in SEARCHERS:
                    regrets = [
                        r["regret"]
                        for r in runs
                        if (r["searcher"], r["shape"], r["d"], r["concurrency"]) == (name, shape, d, concurrency)
                    ]
                    if regrets:
                        q1, median, q3 = np.percentile(regrets, [25, 50, 75])
                        row[name] = {"median": float(median), "q1": float(q1), "q3": float(q3), "runs": len(regrets)}
                medians = {n: row[n]["median"] for n in SEARCHERS if n in row}
                row["lowest"] = min(medians, key=medians.get) if medians else None
                rows.append(row)
    return rows


def markdown(summary: list[dict[str, Any]], latency: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Searchers on noisy synthetic simplex objectives",
        "",
        f"{meta['trials']} trials, n_init {meta['n_init']}, noise sd {meta['noise_sd']}, {meta['seeds']} seeds; "
        "simple regret f* - f(best observed point), median [IQR] over seeds (lower is better). "
        f"Run: `{meta['command']}` ({meta['minutes']:.1f} min on {meta['cpus']} CPUs, load average at start "
        f"{meta['load_at_start']}).",
        "",
        "| shape | d | concurrency | " + " | ".join(SEARCHERS) + " | lowest median |",
        "|---|---|---|" + "---|" * len(SEARCHERS) + "---|",
    ]
    for row in summary:
        cells = []
        for name in SEARCHERS:
            stats = row.get(name)
            cells.append(f"{stats['median']:.4f} [{stats['q1']:.4f}, {stats['q3']:.4f}]" if stats else "-")
        lines.append(f"| {row['shape']} | {row['d']} | {row['concurrency']} | " + " | ".join(cells) + f" | {row['lowest']} |")
    lines += [
        "",
        "## BoTorch suggestion latency with 50 observations",
        "",
        "| d | suggestions | wall p50 (s) | wall p95 (s) | CPU p50 (s) | CPU p95 (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in latency:
        lines.append(
            f"| {row['d']} | {row['suggestions']} | {row['wall_p50']:.2f} | {row['wall_p95']:.2f} | "
            f"{row['cpu_p50']:.2f} | {row['cpu_p95']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def run_sweeps(tasks: list[tuple[str, str, int, int, int]], runs_path: Path, workers: int) -> list[dict[str, Any]]:
    """Run the tasks not yet in ``runs_path`` (one JSON line per finished sweep) and return all runs."""
    runs = [json.loads(line) for line in runs_path.read_text().splitlines()] if runs_path.exists() else []
    done = {(r["searcher"], r["shape"], r["d"], r["concurrency"], r["seed"]) for r in runs}
    todo = [t for t in tasks if t not in done]
    started = time.time()
    with multiprocessing.get_context("spawn").Pool(workers) as pool, runs_path.open("a") as sink:
        for i, run in enumerate(pool.imap_unordered(run_one, todo), start=1):
            runs.append(run)
            sink.write(json.dumps(run) + "\n")
            sink.flush()
            if i % 10 == 0 or i == len(todo):
                print(f"{i}/{len(todo)} sweeps done ({(time.time() - started) / 60:.1f} min)", flush=True)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="Seeds per setting (>= 10 for the report).")
    parser.add_argument("--workers", type=int, default=2, help="Processes running sweeps in parallel.")
    parser.add_argument("--latency-suggestions", type=int, default=20, help="Timed BoTorch suggestions per d.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Folder for searchers.json and searchers.md.")
    parser.add_argument(
        "--report-only", action="store_true", help="Skip the sweeps; report the runs already in searchers.runs.jsonl."
    )
    args = parser.parse_args()

    load_at_start = round(os.getloadavg()[0], 1)
    started = time.time()
    # Seed-major order: if the run is cut short, every searcher and setting has the same seeds done.
    tasks = [
        (name, shape, d, concurrency, seed)
        for seed in range(args.seeds)
        for shape in SHAPES
        for d in DIMS
        for concurrency in CONCURRENCY
        for name in SEARCHERS
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "searchers.runs.jsonl"
    if args.report_only:
        runs = [json.loads(line) for line in runs_path.read_text().splitlines()]
    else:
        runs = run_sweeps(tasks, runs_path, args.workers)
    # Only seeds every searcher finished in every setting are compared.
    per_seed: dict[int, int] = {}
    for r in runs:
        per_seed[r["seed"]] = per_seed.get(r["seed"], 0) + 1
    complete = {seed for seed, n in per_seed.items() if n == len(SEARCHERS) * len(SHAPES) * len(DIMS) * len(CONCURRENCY)}
    runs = [r for r in runs if r["seed"] in complete]
    latency = [botorch_latency(d, args.latency_suggestions) for d in DIMS]
    summary = summarise(runs)
    botorch_times = np.concatenate([r["suggest_seconds"][N_INIT:] for r in runs if r["searcher"] == "botorch"])
    meta = {
        "trials": TRIALS,
        "n_init": N_INIT,
        "noise_sd": NOISE_SD,
        "seeds": len(complete),
        "command": "python " + " ".join(["tests/benchmarks/searchers.py", *sys.argv[1:]]),
        "minutes": (time.time() - started) / 60,
        "cpus": os.cpu_count(),
        "load_at_start": load_at_start,
        "python": platform.python_version(),
        "botorch_gp_suggestion_wall_p50_in_sweeps": float(np.percentile(botorch_times, 50)),
        "botorch_gp_suggestion_wall_p95_in_sweeps": float(np.percentile(botorch_times, 95)),
    }
    (args.out / "searchers.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "latency": latency, "runs": runs}, indent=1)
    )
    report = markdown(summary, latency, meta)
    (args.out / "searchers.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
