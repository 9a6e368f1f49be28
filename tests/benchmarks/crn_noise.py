"""Trial noise with and without common random numbers (CRN), on the demo config.

Every trial of a sweep runs with the sweep's seed, and PPO step ``n`` draws its samples from an RNG
seeded by ``(seed, n)`` (`dense_reward.ppo.PPOTrainer.step_rng`), so two trials see the same random
numbers and differ only through their weights. This script measures what that buys:

- *equal weights*: the sd of val_reward between two trials with the same weights. Without CRN (each
  trial its own seed) it is the seed-to-seed sd over ``--seeds``; with CRN the two trials are replayed
  with the same seed and the measured sd is reported as it comes out (0 when runs are deterministic).
- *a comparison*: the sd of ``val_reward(abc) - val_reward(sparse)``, paired on the same seed (CRN)
  against paired across different seeds (independent random numbers), from the same runs.

Run by hand (about 15 minutes on 2 CPU cores at the default sizes; builds the demo kit on first use):

    .venv/bin/python tests/benchmarks/crn_noise.py --seeds 0 1 2 3

Writes ``docs/benchmarks/crn_noise.json`` and ``crn_noise.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dense_reward.config import Config
from dense_reward.run import Run
from tune_jobs.config import load_sweep_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks"
ARMS = {"sparse": {"sparse": 1.0}, "abc": {"attention": 0.8, "sparse": 0.2}}


def final_val_reward(config: Config, weights: dict[str, float], seed: int) -> dict[str, float]:
    """Train one trial (every epoch) and return its last val_reward and standard error."""
    started = time.perf_counter()
    run = Run(config, weights, seed=seed)
    for epoch in range(1, config.ppo.epochs + 1):
        run.train_epoch(epoch)
    evaluation = run.evaluate()
    return {
        "val_reward": evaluation["val_reward"],
        "val_reward_sem": evaluation["val_reward_sem"],
        "seconds": time.perf_counter() - started,
    }


def summarise(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """The two noise measures (see the module docstring) from the runs."""
    value = {(r["arm"], r["seed"], r["replay"]): r["val_reward"] for r in runs}
    sparse = np.array([value[("sparse", s, 0)] for s in seeds])
    abc = np.array([value[("abc", s, 0)] for s in seeds])
    replay_gap = abs(value[("sparse", seeds[0], 1)] - value[("sparse", seeds[0], 0)])
    paired = abc - sparse
    crossed = abc - np.roll(sparse, 1)  # each abc run against the sparse run of another seed
    return {
        "equal_weights_sd_independent": float(sparse.std(ddof=1)),
        "equal_weights_sd_crn": float(replay_gap / np.sqrt(2)),
        "difference_sd_crn": float(paired.std(ddof=1)),
        "difference_sd_independent": float(crossed.std(ddof=1)),
        "difference_mean": float(paired.mean()),
        "mean_val_reward_sem": float(np.mean([r["val_reward_sem"] for r in runs])),
    }


def markdown(report: dict[str, Any]) -> str:
    s, settings = report["summary"], report["settings"]
    return "\n".join(
        [
            "# Trial noise with and without common random numbers (demo config)",
            "",
            f"{settings['epochs']} epochs x {settings['steps_per_epoch']} PPO steps, {settings['val_prompts']} "
            f"validation prompts, seeds {settings['seeds']}; {report['machine']}.",
            "",
            "| measure | independent random numbers | common random numbers |",
            "|---|---:|---:|",
            f"| sd of val_reward, two trials with equal weights (sparse) | {s['equal_weights_sd_independent']:.4f} "
            f"| {s['equal_weights_sd_crn']:.4f} |",
            f"| sd of val_reward(ABC) - val_reward(sparse) | {s['difference_sd_independent']:.4f} "
            f"| {s['difference_sd_crn']:.4f} |",
            "",
            f"Mean ABC - sparse difference: {s['difference_mean']:+.4f}; mean standard error of one val_reward "
            f"over its validation prompts: {s['mean_val_reward_sem']:.4f}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "tune_jobs" / "configs" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps-per-epoch", type=int, default=2)
    parser.add_argument("--val-prompts", type=int, default=16)
    args = parser.parse_args()
    if len(args.seeds) < 3:
        parser.error("--seeds: at least 3 seeds are needed for a standard deviation across seed pairs")
    torch.set_num_threads(1)
    config = (
        load_sweep_config(args.config)
        .library_config()
        .with_overrides(
            {
                "ppo.epochs": args.epochs,
                "ppo.steps_per_epoch": args.steps_per_epoch,
                "evaluation.max_prompts": args.val_prompts,
                "evaluation.heatmap_samples": 0,
            }
        )
    )
    runs = []
    plan = [(arm, seed, 0) for seed in args.seeds for arm in ARMS] + [("sparse", args.seeds[0], 1)]
    for arm, seed, replay in plan:
        result = final_val_reward(config, ARMS[arm], seed)
        runs.append({"arm": arm, "seed": seed, "replay": replay, **result})
        print(f"{arm} seed {seed}{' (replay)' if replay else ''}: val_reward {result['val_reward']:.4f} "
              f"+- {result['val_reward_sem']:.4f} ({result['seconds']:.0f} s)", flush=True)
    report = {
        "settings": {
            "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT) else str(args.config),
            "seeds": args.seeds,
            "epochs": args.epochs,
            "steps_per_epoch": args.steps_per_epoch,
            "val_prompts": args.val_prompts,
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "runs": runs,
        "summary": summarise(runs, args.seeds),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crn_noise.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "crn_noise.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
