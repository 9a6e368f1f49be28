"""How far each source's normalised credit lies from an even split, per normaliser, on a config's RM.

Samples one response per training prompt from the config's policy (``--prompts`` of them, seeded),
scores and explains them with every source of the config, then normalises each source's credit with
each setting (plain ``softmax`` and ``scaled-softmax`` at several tau, ``l1``) and reports:

- its spread: total variation distance from the even split over the response tokens (0 = even;
  `dense_reward.shaping.spread`), mean over the responses;
- for each pair of sources, the mean total variation distance between their normalised credits
  (near 0 = the two sources shape the reward alike, so a weight on one is a weight on the other).

``sparse`` and ``attention`` are distributions already and are only renormalised, whatever the setting.

    .venv/bin/python tests/benchmarks/credit_spread.py

Writes ``docs/benchmarks/credit_spread.json`` and ``credit_spread.md`` for the demo's config, and
``credit_spread_<config name>.{json,md}`` for another one (``--config``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks"
DEMO_CONFIG = ROOT / "tune_jobs" / "configs" / "demo.yaml"
SETTINGS = (("softmax", 1.0), ("scaled-softmax", 0.5), ("scaled-softmax", 1.0), ("scaled-softmax", 2.0), ("l1", 1.0))


def measure(config_path: Path, prompts: int, seed: int) -> dict[str, Any]:
    import torch

    from dense_reward.ppo.rollout import generate
    from dense_reward.run import Run
    from dense_reward.shaping import DenseReward, as_distribution, normalize_credit, spread
    from tune_jobs.config import load_sweep_config

    torch.set_num_threads(1)
    config = load_sweep_config(config_path).library_config()
    run = Run(config, {"sparse": 1.0})
    batch = run.splits.train[:prompts]
    torch.manual_seed(seed)
    rollout = generate(
        run.trainer.policy, run.tokenizer, batch, config.ppo.max_new_tokens,
        temperature=config.ppo.temperature, top_p=config.ppo.top_p,
    )  # fmt: skip
    every = DenseReward(
        run.reward_model, run.tokenizer, config.shaping, {"sparse": 1.0}, run.splits.raw, seed=seed,
        skip_zero_weight=False,
    )  # fmt: skip
    output = every(batch, rollout.token_ids)
    kept = [i for i, ids in enumerate(rollout.token_ids) if len(ids) > 1]
    if not kept:
        raise SystemExit("credit_spread: every sampled response is one token long; raise --prompts")
    rows = []
    for method, tau in SETTINGS:
        unit = {
            name: [
                as_distribution(credits[i]) if name in every.distribution_sources
                else normalize_credit(credits[i], method, tau)
                for i in kept
            ]
            for name, credits in output.attributions.items()
        }  # fmt: skip
        rows.append(
            {
                "normalize": method,
                "tau": tau,
                "spread": {name: float(np.mean([spread(u) for u in units])) for name, units in unit.items()},
                "pairwise": {
                    f"{a}/{b}": float(np.mean([0.5 * np.abs(x - y).sum() for x, y in zip(unit[a], unit[b], strict=True)]))
                    for a, b in itertools.combinations(unit, 2)
                },
            }
        )
    span = {
        name: float(np.mean([np.ptp(credits[i]) for i in kept])) for name, credits in output.attributions.items()
    }
    return {
        "config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
        "reward_model": config.models.reward.path,
        "responses": len(kept),
        "seed": seed,
        "scores": [float(s) for s in output.scores],
        "credit_span": span,
        "settings": rows,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    sources = list(result["credit_span"])
    lines = [
        "# Spread of each source's normalised credit",
        "",
        f"Config `{result['config']}` (RM `{result['reward_model']}`): {result['responses']} sampled responses, "
        f"seed {result['seed']}; RM scores from {min(result['scores']):.3f} to {max(result['scores']):.3f}. "
        "Spread = total variation distance of the normalised credit from an even split over the response "
        "tokens (0 = even), mean over the responses. `sparse` and `attention` are distributions already and "
        f"are only renormalised. Command: `{command}`.",
        "",
        "Raw credit span (max - min over a response, mean): "
        + ", ".join(f"{name} {result['credit_span'][name]:.3g}" for name in sources)
        + ".",
        "",
        "| normalise | tau | " + " | ".join(sources) + " | closest pair of the normalised sources (TV) |",
        "|---|---:|" + "---:|" * len(sources) + "---|",
    ]
    for row in result["settings"]:
        pairs = {k: v for k, v in row["pairwise"].items() if "sparse" not in k and "attention" not in k}
        closest = min(pairs, key=pairs.get) if pairs else None
        lines.append(
            f"| {row['normalize']} | {row['tau']:g} | "
            + " | ".join(f"{row['spread'][name]:.3f}" for name in sources)
            + (f" | {closest} {pairs[closest]:.3f} |" if closest else " | - |")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--prompts", type=int, default=16, help="Responses sampled (one per training prompt).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started, load = time.time(), os.getloadavg()[0]
    result = measure(args.config.resolve(), args.prompts, args.seed)
    result["seconds"] = time.time() - started
    result["load_at_start"] = load
    command = " ".join(["python tests/benchmarks/credit_spread.py", *(sys.argv[1:] if argv is None else argv)])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = "credit_spread" if args.config.resolve() == DEMO_CONFIG else f"credit_spread_{args.config.stem}"
    (args.out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    report = markdown(result, command)
    (args.out_dir / f"{name}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
