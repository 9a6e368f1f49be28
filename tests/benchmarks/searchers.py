"""Searchers on noisy synthetic objectives over the weight simplex: regret at the recommended point, latency.

Settings (every combination):

- shape: ``bump`` (one Gaussian bump at an interior point), ``two-bumps`` (a lower interior bump
  plus the global one on a 2-source face, as when few sources matter) and ``corner`` (the global
  bump at a vertex of the simplex, as when the sparse-only baseline wins, plus a lower interior one);
- noise: ``homoscedastic`` (sd 0.05 everywhere on a [0, 1] scale) or ``heteroscedastic`` (sd from
  0.01 to 0.15, growing with the weight of one source drawn per seed, as when one attribution
  source is much noisier than the others);
- d = 4 and 6 sources; concurrency 1 and 4 (4 suggestions asked before any is reported, so the
  BoTorch searcher sees the other 3 as pending).

Each sweep runs 25 trials (n_init 5). A trial reports its noisy value and a standard error
estimated as a real trial would (the sample sd of 32 validation prompts over sqrt(32)). The
answer of a sweep is :func:`tune_jobs.search.recommend` on its trials (the same for every
searcher: the GP posterior-mean maximiser among evaluated points), and the simple regret is
f* - f(recommended point) with f noise-free; the regret at the best observed trial is kept in the
JSON beside it. Every searcher is driven directly through the Ray ``Searcher`` API (no cluster).
Then the BoTorch suggestion latency is timed with 50 completed observations (wall clock and process
CPU time; each suggestion is made ``--latency-repeats`` times from one state and its median counts).

Run by hand (17 to 104 minutes on 2 CPU cores so far, with the host's speed and ``--seeds``):

    .venv/bin/python tests/benchmarks/searchers.py

Writes ``docs/benchmarks/searchers.json`` (settings, summary, latency) and ``searchers.md``; every
finished sweep (its regrets and suggestion times) is appended to ``searchers.runs.jsonl`` there, so
a second run only does what is missing, and ``--report-only`` reports the seeds finished so far.
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

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
SOURCES = ("sparse", "attention", "redistribution", "shap", "lime", "integrated_gradients")
SEARCHERS = ("botorch", "optuna-gp", "optuna-tpe", "random")
SHAPES = ("bump", "two-bumps", "corner")
NOISES = ("homoscedastic", "heteroscedastic")
DIMS = (4, 6)
CONCURRENCY = (1, 4)
TRIALS = 25
N_INIT = 5
NOISE_SD = 0.05
HETERO_SD = (0.01, 0.15)
PROMPTS = 32
"""Validation prompts behind one trial's value: its sem is estimated from this many draws."""

SIGNIFICANCE = 0.05
"""One-sided level of the paired test between BoTorch and each other searcher in a cell."""
ROOT = RESULTS.parents[1]

Task = tuple[str, str, str, int, int, int]
"""(searcher, shape, noise, d, concurrency, seed)."""


# --------------------------------------------------------------------------------------------------
# objectives
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A noise-free function on the ``d``-simplex with its maximum ``best``, and its noise sd."""

    centres: np.ndarray  # (m, d) bump centres
    heights: np.ndarray  # (m,)
    widths: np.ndarray  # (m,)
    best: float
    noise_source: int | None  # heteroscedastic: the source whose weight sets the noise sd

    def __call__(self, weights: np.ndarray) -> float:
        distances = np.sum((self.centres - weights) ** 2, axis=1)  # (m,)
        return float(np.sum(self.heights * np.exp(-distances / (2 * self.widths**2))))

    def noise_sd(self, weights: np.ndarray) -> float:
        if self.noise_source is None:
            return NOISE_SD
        low, high = HETERO_SD
        return low + (high - low) * float(weights[self.noise_source])


def make_objective(shape: str, noise: str, d: int, seed: int) -> Objective:
    """The objective of one seed: centres drawn from the seed, the maximum found numerically."""
    from scipy.optimize import minimize

    rng = np.random.default_rng([seed, d, SHAPES.index(shape)])
    interior = rng.dirichlet(np.full(d, 2.0))
    if shape == "bump":
        centres, heights, widths = interior[None], np.array([1.0]), np.array([0.25])
    elif shape == "two-bumps":
        face = np.zeros(d)
        face[rng.choice(d, size=2, replace=False)] = rng.dirichlet([2.0, 2.0])
        centres, heights, widths = np.stack([interior, face]), np.array([0.7, 1.0]), np.array([0.15, 0.15])
    elif shape == "corner":
        centres = np.stack([interior, np.eye(d)[rng.integers(d)]])
        heights, widths = np.array([0.7, 1.0]), np.array([0.15, 0.3])
    else:
        raise ValueError(f"unknown shape {shape!r}")
    noise_source = (
        int(np.random.default_rng([seed, d, 7]).integers(d)) if noise == "heteroscedastic" else None
    )
    objective = Objective(centres, heights, widths, best=0.0, noise_source=noise_source)
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
    best = float(max(best, *(objective(c) for c in centres)))
    return Objective(centres, heights, widths, best=best, noise_source=noise_source)


def observe(objective: Objective, weights: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A trial's reported (value, sem): the mean and standard error of PROMPTS noisy per-prompt scores."""
    per_prompt_sd = objective.noise_sd(weights) * np.sqrt(PROMPTS)
    scores = objective(weights) + per_prompt_sd * rng.standard_normal(PROMPTS)
    return float(scores.mean()), float(scores.std(ddof=1) / np.sqrt(PROMPTS))


# --------------------------------------------------------------------------------------------------
# one sweep
# --------------------------------------------------------------------------------------------------


def build_searcher(name: str, d: int, seed: int) -> Any:
    from tune_jobs.search import BoTorchSearcher, RandomSimplexSearcher, SearchSpace, SimplexOptunaSearch

    space = SearchSpace(SOURCES[:d])
    if name == "botorch":
        return BoTorchSearcher(space, seed=seed, n_init=N_INIT)
    if name == "random":
        return RandomSimplexSearcher(space, seed=seed)
    if name in ("optuna-tpe", "optuna-gp"):
        return SimplexOptunaSearch(space, sampler=name.removeprefix("optuna-"), seed=seed, n_init=N_INIT)
    raise ValueError(f"unknown searcher {name!r}")


def run_one(task: Task) -> dict[str, Any]:
    """One sweep of TRIALS trials; the regret at its recommended and best observed points, suggestion times."""
    name, shape, noise, d, concurrency, seed = task
    import optuna
    import torch

    from tune_jobs.search import SearchSpace, recommend

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("tune_jobs.search").setLevel(logging.ERROR)
    objective = make_objective(shape, noise, d, seed)
    searcher = build_searcher(name, d, seed)
    rng = np.random.default_rng([seed, 99])
    sources = SOURCES[:d]
    configs, values, sems, truths, suggest_seconds = [], [], [], [], []
    for first in range(0, TRIALS, concurrency):
        batch = []
        for i in range(first, min(first + concurrency, TRIALS)):
            start = time.perf_counter()
            config = searcher.suggest(f"t{i}")
            suggest_seconds.append(time.perf_counter() - start)
            weights = np.array([config["weights"][s] for s in sources])
            if np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-9:
                raise AssertionError(f"{name} suggested weights off the simplex: {config}")
            batch.append((f"t{i}", config, weights))
        for trial_id, config, weights in batch:
            value, sem = observe(objective, weights, rng)
            searcher.on_trial_complete(trial_id, {"val_reward": value, "val_reward_sem": sem})
            configs.append(config)
            values.append(value)
            sems.append(sem)
            truths.append(objective(weights))
    start = time.perf_counter()
    answer = recommend(SearchSpace(sources), configs, values, sems)
    return {
        "searcher": name,
        "shape": shape,
        "noise": noise,
        "d": d,
        "concurrency": concurrency,
        "seed": seed,
        "regret": objective.best - truths[answer.index],
        "regret_best_observed": objective.best - truths[answer.best_observed_index],
        "recommendation": answer.method,
        "recommend_seconds": time.perf_counter() - start,
        "suggest_seconds": suggest_seconds,
    }


# --------------------------------------------------------------------------------------------------
# latency with 50 observations
# --------------------------------------------------------------------------------------------------


def botorch_latency(d: int, suggestions: int, repeats: int = 3) -> dict[str, Any]:
    """Time BoTorch suggestions once 50 trials have completed (each new one completes before the next).

    Each suggestion is made ``repeats`` times from the same searcher state (a copy per try, so every
    try fits and optimises from the same history and warm start and does the same work), and its
    median time is kept beside the first try's. On a shared host a try now and then runs at a
    fraction of the usual speed; the median of the tries keeps those stalls out of the p95, which
    then reflects the suggestions that take more work. Both are reported.
    """
    import copy

    import torch

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    from tune_jobs.search import BoTorchSearcher, SearchSpace

    torch.set_num_threads(1)
    logging.getLogger("tune_jobs.search").setLevel(logging.ERROR)
    objective = make_objective("bump", "heteroscedastic", d, 0)
    space = SearchSpace(SOURCES[:d])
    searcher = BoTorchSearcher(space, seed=0, n_init=50)
    rng = np.random.default_rng(0)

    def report(trial_id: str, config: dict[str, Any]) -> None:
        value, sem = observe(objective, np.array([config["weights"][s] for s in space.sources]), rng)
        searcher.on_trial_complete(trial_id, {"val_reward": value, "val_reward_sem": sem})

    for i in range(50):
        report(f"init{i}", searcher.suggest(f"init{i}"))
    searcher.n_init = N_INIT
    report("warm-up", searcher.suggest("warm-up"))  # pays the one-off botorch import
    first_wall, first_cpu, wall, cpu = [], [], [], []
    for i in range(suggestions):
        tries_wall, tries_cpu, configs = [], [], []
        start_state = searcher
        for _ in range(repeats):
            searcher = copy.deepcopy(start_state)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            configs.append(searcher.suggest(f"timed{i}"))
            tries_wall.append(time.perf_counter() - start_wall)
            tries_cpu.append(time.process_time() - start_cpu)
        vectors = [space.to_vector(c) for c in configs]
        if not all(np.allclose(v, vectors[0], rtol=0.0, atol=1e-9) for v in vectors):
            raise RuntimeError(f"suggestion {i}: the {repeats} tries from one state gave different configs")
        first_wall.append(tries_wall[0])
        first_cpu.append(tries_cpu[0])
        wall.append(float(np.median(tries_wall)))
        cpu.append(float(np.median(tries_cpu)))
        report(f"timed{i}", configs[-1])
    return {
        "d": d,
        "observations": 50,
        "suggestions": suggestions,
        "repeats": repeats,
        "wall_p50": float(np.percentile(wall, 50)),
        "wall_p95": float(np.percentile(wall, 95)),
        "cpu_p50": float(np.percentile(cpu, 50)),
        "cpu_p95": float(np.percentile(cpu, 95)),
        "first_try_wall_p50": float(np.percentile(first_wall, 50)),
        "first_try_wall_p95": float(np.percentile(first_wall, 95)),
        "first_try_cpu_p50": float(np.percentile(first_cpu, 50)),
        "first_try_cpu_p95": float(np.percentile(first_cpu, 95)),
    }


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


Cell = tuple[str, str, int, int]
"""(shape, noise, d, concurrency)."""


def cells() -> list[Cell]:
    return [(s, n, d, c) for s in SHAPES for n in NOISES for d in DIMS for c in CONCURRENCY]


def parse_cell(text: str) -> Cell:
    """``bump/homoscedastic/6/4`` -> ``("bump", "homoscedastic", 6, 4)``; an error names a cell not in the grid."""
    parts = text.split("/")
    cell = (parts[0], parts[1], int(parts[2]), int(parts[3])) if len(parts) == 4 and all(
        p.isdigit() for p in parts[2:]
    ) else None
    if cell not in cells():
        raise argparse.ArgumentTypeError(
            f"--cells: {text!r} is not shape/noise/d/concurrency of the grid (e.g. bump/homoscedastic/6/4)"
        )
    return cell


def summarise(runs: list[dict[str, Any]], grid: list[Cell] | None = None) -> list[dict[str, Any]]:
    """One row per cell of ``grid`` (default: all): each searcher's regret quartiles, the lowest median, paired tests."""
    rows = []
    for shape, noise, d, concurrency in grid or cells():
        row: dict[str, Any] = {"shape": shape, "noise": noise, "d": d, "concurrency": concurrency}
        for name in SEARCHERS:
            mine = [
                r
                for r in runs
                if (r["searcher"], r["shape"], r["noise"], r["d"], r["concurrency"])
                == (name, shape, noise, d, concurrency)
            ]
            if mine:
                q1, median, q3 = np.percentile([r["regret"] for r in mine], [25, 50, 75])
                row[name] = {
                    "median": float(median),
                    "q1": float(q1),
                    "q3": float(q3),
                    "median_best_observed": float(np.median([r["regret_best_observed"] for r in mine])),
                    "runs": len(mine),
                }
        medians = {n: row[n]["median"] for n in SEARCHERS if n in row}
        row["lowest"] = min(medians, key=medians.get) if medians else None
        row["botorch_vs"] = {
            name: paired_test(runs, "botorch", name, (shape, noise, d, concurrency))
            for name in SEARCHERS
            if name != "botorch" and name in row and "botorch" in row
        }
        rows.append(row)
    return rows


def paired_test(runs: list[dict[str, Any]], a: str, b: str, cell: Cell) -> dict[str, float]:
    """One-sided Wilcoxon signed-rank p-values of searcher ``a``'s regret against ``b``'s, paired by seed.

    Both searchers meet the same objective and noise draws at a seed, so the pairs share everything but the
    searcher. ``a_better`` tests regret(a) < regret(b), ``a_worse`` the opposite; 1.0 when every pair ties.
    """
    from scipy.stats import wilcoxon

    def regrets(name: str) -> dict[int, float]:
        return {r["seed"]: r["regret"] for r in runs if (r["searcher"], r["shape"], r["noise"], r["d"], r["concurrency"]) == (name, *cell)}

    mine, theirs = regrets(a), regrets(b)
    seeds = sorted(set(mine) & set(theirs))
    differences = np.array([mine[s] - theirs[s] for s in seeds])
    if not np.any(np.abs(differences) > 1e-12):
        return {"a_better": 1.0, "a_worse": 1.0, "pairs": len(seeds)}
    return {
        "a_better": float(wilcoxon(differences, alternative="less", zero_method="zsplit").pvalue),
        "a_worse": float(wilcoxon(differences, alternative="greater", zero_method="zsplit").pvalue),
        "pairs": len(seeds),
    }


def markdown(summary: list[dict[str, Any]], latency: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    wins = sum(row["lowest"] == "botorch" for row in summary)
    worse = [row for row in summary if any(t["a_worse"] < SIGNIFICANCE for t in row["botorch_vs"].values())]
    better_than_all = sum(all(t["a_better"] < SIGNIFICANCE for t in row["botorch_vs"].values()) for row in summary)
    lines = [
        "# Searchers on noisy synthetic simplex objectives",
        "",
        f"{meta['trials']} trials, n_init {meta['n_init']}, {meta['seeds']} seeds per cell; simple regret "
        "f* - f(recommended point), median [IQR] over seeds (lower is better); the recommended point is "
        "`tune_jobs.search.recommend` on each sweep's trials, for every searcher. Noise: homoscedastic sd "
        f"{NOISE_SD}, heteroscedastic sd {HETERO_SD[0]}..{HETERO_SD[1]}. BoTorch has the lowest median in "
        f"{wins} of {len(summary)} cells. Paired by seed (one-sided Wilcoxon signed-rank, p < {SIGNIFICANCE}), "
        f"BoTorch is worse than some other searcher in {len(worse)} cells and better than every other searcher "
        f"in {better_than_all}; the last column gives, against the other searcher with the lowest median, "
        f"p(BoTorch better) / p(BoTorch worse). Run: `{meta['command']}` ({meta['minutes']:.1f} min on "
        f"{meta['cpus']} CPUs, load average at start {meta['load_at_start']}; this host's reference loop "
        f"of small torch ops took {meta['host_loop_seconds']:.3f} s).",
        "",
        "| shape | noise | d | conc. | " + " | ".join(SEARCHERS) + " | lowest median | BoTorch vs next best |",
        "|---|---|---|---|" + "---|" * len(SEARCHERS) + "---|---|",
    ]
    for row in summary:
        cells_ = []
        for name in SEARCHERS:
            stats = row.get(name)
            cells_.append(f"{stats['median']:.3f} [{stats['q1']:.3f}, {stats['q3']:.3f}]" if stats else "-")
        others = {n: row[n]["median"] for n in row["botorch_vs"]}
        rival = min(others, key=others.get) if others else None
        test = row["botorch_vs"].get(rival) if rival else None
        versus = f"{rival}: {test['a_better']:.3f} / {test['a_worse']:.3f}" if test else "-"
        lines.append(
            f"| {row['shape']} | {row['noise'][:6]}. | {row['d']} | {row['concurrency']} | "
            + " | ".join(cells_)
            + f" | {row['lowest']} | {versus} |"
        )
    if not latency:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## BoTorch suggestion latency with 50 observations",
        "",
        f"Each of the timed suggestions was made {latency[0]['repeats']} times from the same searcher state "
        "(the same work each time); the p50 and p95 are over the suggestions' median times, the last two "
        "columns over their first tries alone, which a stall of the shared host can inflate. Run: "
        f"`{meta['latency_command']}`, load average {meta['latency_load_at_start']} when it started; the "
        f"reference loop took {meta['latency_host_loop_seconds']:.3f} s just before it (recorded, not a "
        "scale: on this host it has not tracked suggestion times from run to run).",
        "",
        "| d | suggestions | wall p50 (s) | wall p95 (s) | CPU p50 (s) | CPU p95 (s) | first try: wall p50 (s) | first try: wall p95 (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in latency:
        lines.append(
            f"| {row['d']} | {row['suggestions']} | {row['wall_p50']:.2f} | {row['wall_p95']:.2f} | "
            f"{row['cpu_p50']:.2f} | {row['cpu_p95']:.2f} | {row['first_try_wall_p50']:.2f} | "
            f"{row['first_try_wall_p95']:.2f} |"
        )
    lines += [
        "",
        f"In the sweeps themselves, BoTorch GP suggestions took p50 {meta['botorch_gp_suggestion_wall_p50_in_sweeps']:.2f} s "
        f"and p95 {meta['botorch_gp_suggestion_wall_p95_in_sweeps']:.2f} s (wall clock, two sweeps in parallel).",
    ]
    return "\n".join(lines) + "\n"


def host_loop_seconds() -> float:
    """Seconds of 20,000 small torch ops on one thread (best of 3), the kind a GP suggestion is made of.

    Shared hosts differ several-fold from day to day; the report prints it beside the latency table.
    Runs as GP work does (:func:`tune_jobs.search.gp.bounded_torch`), so the caller's torch threads and RNG
    are left as they were.
    """
    import torch

    from tune_jobs.search.gp import bounded_torch

    best = float("inf")
    with bounded_torch(threads=1, seed=0):
        x = torch.randn(64, 8, dtype=torch.float64)
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(5_000):
                (x * 0.5 + 1.0).exp().sum()
            best = min(best, time.perf_counter() - start)
    return best


BOTORCH_ONLY = ("botorch_search.py",)
"""Search modules only the BoTorch searcher runs: a change to them reruns BoTorch's sweeps alone."""


def search_code_hash(searcher: str) -> str:
    """A digest of the search code ``searcher`` runs (``tune_jobs/search``, less `BOTORCH_ONLY` for the
    others): stored runs of other code are run again."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "tune_jobs" / "search").glob("*.py")):
        if searcher == "botorch" or path.name not in BOTORCH_ONLY:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_hashes() -> dict[str, str]:
    """`search_code_hash` of every searcher, by name."""
    return {name: search_code_hash(name) for name in SEARCHERS}


def read_runs(runs_path: Path, codes: dict[str, str]) -> list[dict[str, Any]]:
    """The stored runs of the search code ``codes`` (per searcher; older ones are dropped from the file too)."""
    if not runs_path.exists():
        return []
    stored = [json.loads(line) for line in runs_path.read_text().splitlines()]
    runs = [r for r in stored if r.get("code") == codes.get(r["searcher"])]
    if len(runs) < len(stored):
        print(f"{len(stored) - len(runs)} stored sweeps ran other search code: running them again", flush=True)
        runs_path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return runs


def run_sweeps(tasks: list[Task], runs_path: Path, workers: int) -> tuple[list[dict[str, Any]], int]:
    """Run the tasks not yet in ``runs_path`` (one JSON line per finished sweep); all runs and how many ran now."""
    codes = code_hashes()
    runs = read_runs(runs_path, codes)
    done = {(r["searcher"], r["shape"], r["noise"], r["d"], r["concurrency"], r["seed"]) for r in runs}
    todo = [t for t in tasks if t not in done]
    started = time.time()
    with multiprocessing.get_context("spawn").Pool(workers) as pool, runs_path.open("a") as sink:
        for i, run in enumerate(pool.imap_unordered(run_one, todo), start=1):
            run["code"] = codes[run["searcher"]]
            runs.append(run)
            sink.write(json.dumps(run) + "\n")
            sink.flush()
            if i % 20 == 0 or i == len(todo):
                print(f"{i}/{len(todo)} sweeps done ({(time.time() - started) / 60:.1f} min)", flush=True)
    return runs, len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="Seeds per cell.")
    parser.add_argument("--workers", type=int, default=2, help="Processes running sweeps in parallel.")
    parser.add_argument(
        "--latency-suggestions", type=int, default=20, help="Timed BoTorch suggestions per d (0: skip the latency timing)."
    )
    parser.add_argument(
        "--latency-repeats", type=int, default=3, help="Tries of each timed suggestion (its median time counts)."
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="Folder for searchers.json and searchers.md."
    )
    parser.add_argument(
        "--cells",
        nargs="+",
        type=parse_cell,
        default=None,
        metavar="SHAPE/NOISE/D/CONC",
        help="Run and report only these cells (default: all 24), e.g. bump/homoscedastic/6/4.",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="Skip the sweeps; report the runs already in searchers.runs.jsonl.",
    )
    args = parser.parse_args(argv)

    load_at_start = round(os.getloadavg()[0], 1)
    loop_seconds = host_loop_seconds()
    started = time.time()
    # Seed-major order: if the run is cut short, every searcher and cell has the same seeds done.
    grid = args.cells or cells()
    tasks = [(name, *cell, seed) for seed in range(args.seeds) for cell in grid for name in SEARCHERS]
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "searchers.runs.jsonl"
    if args.report_only:
        runs, ran = read_runs(runs_path, code_hashes()), 0
    else:
        runs, ran = run_sweeps(tasks, runs_path, args.workers)
    sweeps_minutes = (time.time() - started) / 60
    # Only seeds every searcher finished in every cell are compared.
    per_seed: dict[int, int] = {}
    runs = [r for r in runs if (r["shape"], r["noise"], r["d"], r["concurrency"]) in grid]
    for r in runs:
        per_seed[r["seed"]] = per_seed.get(r["seed"], 0) + 1
    complete = {seed for seed, n in per_seed.items() if n == len(SEARCHERS) * len(grid)}
    runs = [r for r in runs if r["seed"] in complete]
    latency_load, latency_loop = round(os.getloadavg()[0], 1), host_loop_seconds()
    latency = [botorch_latency(d, args.latency_suggestions, args.latency_repeats) for d in DIMS if args.latency_suggestions]
    summary = summarise(runs, grid)
    botorch_times = [t for r in runs if r["searcher"] == "botorch" for t in r["suggest_seconds"][N_INIT:]]
    command = "python " + " ".join(["tests/benchmarks/searchers.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {
        "trials": TRIALS,
        "n_init": N_INIT,
        "noise_sd": NOISE_SD,
        "hetero_sd": HETERO_SD,
        "prompts": PROMPTS,
        "seeds": len(complete),
        "command": command,
        "minutes": sweeps_minutes,
        "cpus": os.cpu_count(),
        "load_at_start": load_at_start,
        "host_loop_seconds": loop_seconds,
        "python": platform.python_version(),
        "botorch_gp_suggestion_wall_p50_in_sweeps": float(np.percentile(botorch_times, 50))
        if botorch_times
        else 0.0,
        "botorch_gp_suggestion_wall_p95_in_sweeps": float(np.percentile(botorch_times, 95))
        if botorch_times
        else 0.0,
        "latency_command": command,
        "latency_load_at_start": latency_load,
        "latency_host_loop_seconds": latency_loop,
    }
    previous = args.out / "searchers.json"
    if not ran and previous.exists():
        # No sweep ran now: the sweeps' command, duration and host are those of the run that made them.
        earlier = json.loads(previous.read_text()).get("meta", {})
        if earlier.get("seeds") == meta["seeds"]:
            for key in ("command", "minutes", "load_at_start", "host_loop_seconds", "cpus", "python"):
                if key in earlier:
                    meta[key] = earlier[key]
    (args.out / "searchers.json").write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "latency": latency, "runs_file": runs_path.name}, indent=1
        )
    )
    report = markdown(summary, latency, meta)
    (args.out / "searchers.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
