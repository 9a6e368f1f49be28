"""Where the time of a demo trial goes, and what a change to the demo config does to it.

Runs `tune_jobs/configs/demo.yaml` (or `--config`) as the service's trial does, in this process
(`dense_reward.run.Run`, one torch thread): PPO steps, then the greedy evaluation and the token heatmaps,
for each weight vector given. Each PPO step reports its phases (generation, the scoring forwards after it,
RM scoring, attribution per source, the update). Variants of the config (`--variant NAME:KEY=VALUE,...`,
dotted keys, YAML values) run interleaved on the same weights, so a before/after pair sees the same load.

    .venv/bin/python tests/benchmarks/demo_step.py --steps 3
    .venv/bin/python tests/benchmarks/demo_step.py --variant before:models.value.head_on_policy=false \
        --variant after:models.value.head_on_policy=true --weights '{"sparse": 1}' --steps 3 --repeats 2

Prints one JSON line per (variant, weights, repeat) and a table of medians; `--out FILE` writes them all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PHASES = (
    "generation_seconds",
    "forward_seconds",
    "scoring_seconds",
    "attribution_seconds",
    "update_seconds",
    "step_seconds",
)


def parse_variant(text: str) -> tuple[str, dict]:
    """`NAME:key=value,key=value` -> (NAME, {dotted key: YAML value}); `NAME` alone is no override."""
    name, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: {item!r} is not KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def one_run(config, weights: dict[str, float], steps: int, evaluate: bool) -> dict:
    from dense_reward.run import Run

    started = time.perf_counter()
    run = Run(config, weights)
    load_seconds = time.perf_counter() - started
    history, cpu = [], []
    tick = time.process_time()
    for metrics in run.train_steps(steps):
        # CPU seconds of this process per step: on a shared machine far steadier than wall time.
        cpu.append(time.process_time() - tick)
        history.append(metrics)
        tick = time.process_time()
    result: dict = {"load_seconds": load_seconds, "step_cpu_seconds": cpu}
    for phase in PHASES:
        result[phase] = [m[phase] for m in history]
    for key in {k for m in history for k in m if k.endswith("_seconds") and k not in PHASES}:
        result[key] = [m.get(key, 0.0) for m in history]
    result["train_reward"] = [m["train_reward"] for m in history]
    result["value_loss"] = [m["value_loss"] for m in history]
    if evaluate:
        tick, cpu_tick = time.perf_counter(), time.process_time()
        evaluation = run.evaluate()
        result["evaluation_seconds"] = time.perf_counter() - tick
        result["evaluation_cpu_seconds"] = time.process_time() - cpu_tick
        tick, cpu_tick = time.perf_counter(), time.process_time()
        run.heatmap_sections(evaluation.get("samples", []))
        result["heatmap_seconds"] = time.perf_counter() - tick
        result["heatmap_cpu_seconds"] = time.process_time() - cpu_tick
        result["val_reward"] = evaluation["val_reward"]
        result["gold_reward"] = evaluation["gold_reward"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "tune_jobs" / "configs" / "demo.yaml")
    parser.add_argument("--weights", action="append", help="JSON weights; repeatable (default: sparse-only)")
    parser.add_argument("--variant", action="append", help="NAME:key=value,...; repeatable (default: as is)")
    parser.add_argument("--steps", type=int, default=3, help="PPO steps per run")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, action="append", help="override seed and ppo.seed; repeatable")
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    from tune_jobs.config import load_sweep_config

    torch.set_num_threads(args.threads)
    base = load_sweep_config(args.config).library_config()
    variants = [parse_variant(v) for v in (args.variant or ["as-is"])]
    weight_sets = [json.loads(w) for w in (args.weights or ['{"sparse": 1.0}'])]
    seeds = args.seed or [None]
    rows = []
    for repeat in range(args.repeats):
        for seed in seeds:
            for weights in weight_sets:
                for name, overrides in variants:
                    extra = {"seed": seed, "ppo.seed": seed} if seed is not None else {}
                    config = base.with_overrides({**overrides, **extra})
                    result = one_run(config, weights, args.steps, not args.no_evaluate)
                    row = {"variant": name, "weights": weights, "seed": seed, "repeat": repeat,
                           "load_average": os.getloadavg()[0], **result}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    print(
        "\nmedian seconds (wall unless _cpu) per PPO step (steps after the first; all runs of a variant and weights)"
    )
    keys = [
        *PHASES,
        "step_cpu_seconds",
        "evaluation_seconds",
        "evaluation_cpu_seconds",
        "heatmap_seconds",
        "heatmap_cpu_seconds",
    ]
    print("| variant | weights | " + " | ".join(k.replace("_seconds", "") for k in keys) + " |")
    for name, _ in variants:
        for weights in weight_sets:
            mine = [r for r in rows if r["variant"] == name and r["weights"] == weights]
            cells = []
            for key in keys:
                values = []
                for r in mine:
                    v = r.get(key)
                    values += (v[1:] or v) if isinstance(v, list) else ([v] if v is not None else [])
                cells.append(f"{statistics.median(values):.2f}" if values else "-")
            label = ", ".join(f"{k} {v:g}" for k, v in weights.items())
            print(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
