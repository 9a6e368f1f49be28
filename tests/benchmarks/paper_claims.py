"""The papers' PPO claims measured on the demo task: sparse vs ABC vs uniform vs BO-best weights.

Koo et al. (arXiv 2504.16272) claim that dense rewards from explanations lower the PPO value loss,
reach a good policy faster, and that BO-searched weights beat fixed ones; Chan et al. (ABC, arXiv
2402.00782) claim attention credit (attention 0.8 / sparse 0.2) speeds up and stabilises PPO over the
sparse reward. Every arm here gets the same PPO compute (same steps, batch, response length, LoRA and
seeds) and differs only in `shaping.weights`:

- `sparse`: all weight on the last token (vanilla RLHF);
- `abc`: attention 0.8, sparse 0.2;
- `uniform`: equal weight on every source of the config;
- `bo`: the best trial's weights of a demo sweep (``--sweep RUN``, read with `tune_jobs.results`)
  or given with ``--best-weights``.

A run is exactly a sweep trial (`dense_reward.run.Run`), evaluated greedily on the validation
prompts before training and after every ``--eval-every`` steps: `val_reward` (RM) and `gold_reward`
(VADER); every step records train reward, PPO value loss, policy loss and KL. "Steps to threshold"
is the first evaluated step whose val_reward (or gold_reward) reaches the start value plus half of the
best arm's mean final gain (``--threshold`` sets the val_reward threshold by hand).

Run by hand (about 30-40 minutes on 2 busy CPU cores at the default sizes):

    DENSE_REWARD_CACHE=... nice -n 10 .venv/bin/python tests/benchmarks/paper_claims.py --sweep RUN_DIR

Writes ``docs/benchmarks/paper_claims.json`` (rewritten after every run; ``--resume`` skips
runs already in it) and ``paper_claims.md``, and ``docs/paper_claims.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dense_reward.config import Config
from dense_reward.run import Run, epoch_batches
from dense_reward.shaping import NORMALIZERS
from tune_jobs.config import load_sweep_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks"
DOCS = ROOT / "docs"
ARMS = ("sparse", "abc", "uniform", "bo")
STEP_METRICS = ("train_reward", "value_loss", "policy_loss", "kl", "entropy", "attribution_seconds", "step_seconds")


# --------------------------------------------------------------------------------------------------
# weights of each arm
# --------------------------------------------------------------------------------------------------


def best_weights_of_sweep(run: str) -> dict[str, Any]:
    """The best trial's weights of a sweep, and the sweep's table (weights, best val_reward) for the record."""
    from tune_jobs.results import load_results
    from tune_jobs.rundir import resolve_run

    results = load_results(resolve_run(run))
    best = results.best
    if best is None:
        raise SystemExit(f"--sweep {run}: no trial has reported val_reward yet")
    return {
        "weights": {k: v for k, v in best.weights.items() if v > 0},
        "from": f"sweep {results.name} (runs/{Path(results.run_dir).name}), trial {best.index} ({best.trial_id})",
        "sweep_trials": [
            {"index": row.index, "weights": row.weights, "best_val_reward": row.best_val_reward, "status": row.status}
            for row in results.trials
        ],
    }


def parse_weights(text: str) -> dict[str, float]:
    """`--best-weights`: a JSON object, inline or in a file."""
    path = Path(text)
    raw = path.read_text() if path.is_file() else text
    try:
        weights = json.loads(raw)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--best-weights: not a JSON object or a file holding one ({error.msg})") from None
    if not isinstance(weights, dict) or not weights:
        raise SystemExit('--best-weights: expected e.g. {"shap": 0.6, "sparse": 0.4}')
    total = sum(float(v) for v in weights.values())
    return {k: float(v) / total for k, v in weights.items()}


def same_weights(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal mixing weights (a source missing from one side has weight 0)."""
    return all(abs(a.get(k, 0.0) - b.get(k, 0.0)) < 1e-6 for k in {*a, *b})


def arm_weights(arm: str, sources: list[str], bo: dict[str, float] | None) -> dict[str, float]:
    if arm == "sparse":
        return {"sparse": 1.0}
    if arm == "abc":
        return {"attention": 0.8, "sparse": 0.2}
    if arm == "uniform":
        return {source: 1.0 / len(sources) for source in sources}
    if bo is None:
        raise SystemExit("the bo arm needs --sweep RUN or --best-weights JSON")
    return bo


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------


def arm_overrides(
    base: Config, args: argparse.Namespace, weights: dict[str, float], seed: int, gold_scorer: str
) -> dict[str, Any]:
    """The overrides every arm's run takes: its seed, weights (their sources added to the config's),
    ``args.steps`` PPO steps evaluated every ``args.eval_every`` on ``args.val_prompts`` prompts, and
    `gold_scorer` (gold_reward curves are half of the evidence, also for configs that leave it out)."""
    return {
        "seed": seed,
        "ppo.seed": seed,
        "ppo.epochs": args.steps // args.eval_every,
        "ppo.steps_per_epoch": args.eval_every,
        "evaluation.max_prompts": args.val_prompts,
        "evaluation.gold_scorer": gold_scorer,
        "shaping.sources": list(dict.fromkeys([*base.shaping.sources, *weights])),
        "shaping.weights": weights,
    }


def run_config(base: Config, args: argparse.Namespace, weights: dict[str, float], seed: int) -> Config:
    """The demo config at the benchmark's sizes, with this arm's weights and seed."""
    return base.with_overrides(
        {
            **arm_overrides(base, args, weights, seed, gold_scorer="vader"),
            "ppo.batch_size": args.batch_size,
            "ppo.mini_batch_size": args.mini_batch_size,
            "ppo.update_epochs": args.update_epochs,
            "ppo.max_new_tokens": args.max_new_tokens,
            "shaping.shap.max_evals": args.shap_max_evals,
            "shaping.lime.num_samples": args.lime_num_samples,
        }
    )


def evaluation_point(run: Run, step: int) -> dict[str, Any]:
    evaluation = run.evaluate()
    return {"step": step, "val_reward": evaluation["val_reward"], "gold_reward": evaluation["gold_reward"]}


def train_one(config: Config, label: str) -> dict[str, Any]:
    """PPO for `ppo.epochs * ppo.steps_per_epoch` steps, evaluated at the start and after every epoch."""
    started = time.perf_counter()
    run = Run(config)
    load_seconds = time.perf_counter() - started
    evaluations = [evaluation_point(run, 0)]
    steps: list[dict[str, float]] = []
    for epoch in range(1, config.ppo.epochs + 1):
        for batch in epoch_batches(run.splits.train, config.ppo, epoch):
            metrics = run.trainer.step(batch)
            steps.append({"step": len(steps) + 1, **{k: float(metrics[k]) for k in STEP_METRICS if k in metrics}})
        evaluations.append(evaluation_point(run, len(steps)))
        last = evaluations[-1]
        print(
            f"  {label} step {len(steps)}: val_reward {last['val_reward']:+.4f} gold_reward {last['gold_reward']:+.4f} "
            f"value_loss {steps[-1]['value_loss']:.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return {
        "evaluations": evaluations,
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "load_seconds": load_seconds,
    }


# --------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------


def curve(runs: list[dict[str, Any]], key: str, where: str = "evaluations") -> tuple[np.ndarray, np.ndarray]:
    """(steps (S,), values (seeds, S)) of one metric over an arm's runs."""
    steps = np.array([point["step"] for point in runs[0][where]])
    values = np.array([[point[key] for point in run[where]] for run in runs], dtype=np.float64)
    return steps, values


def steps_to(run: dict[str, Any], key: str, threshold: float) -> int | None:
    """First evaluated step with `key` >= threshold (None when never reached)."""
    for point in run["evaluations"][1:]:
        if point[key] is not None and point[key] >= threshold:
            return int(point["step"])
    return None


def summarise(report: dict[str, Any], manual_threshold: float | None) -> dict[str, Any]:
    """Per arm: final and best rewards, value loss, steps to threshold; thresholds as used."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for run in report["runs"]:
        by_arm.setdefault(run["arm"], []).append(run)
    thresholds: dict[str, float | None] = {}
    for key in ("val_reward", "gold_reward"):
        start = float(np.mean([run["evaluations"][0][key] for run in report["runs"]]))
        gain = float(max(np.mean(curve(runs, key)[1][:, -1]) for runs in by_arm.values())) - start
        # With no arm ending above the start there is no speed to compare.
        thresholds[key] = start + 0.5 * gain if gain > 0 else None
    if manual_threshold is not None:
        thresholds["val_reward"] = manual_threshold
    arms = {}
    for arm, runs in by_arm.items():
        row: dict[str, Any] = {"weights": runs[0]["weights"], "seeds": [run["seed"] for run in runs]}
        row["same_as"] = runs[0].get("same_as")
        for key in ("val_reward", "gold_reward"):
            _, values = curve(runs, key)
            row[f"{key}_start"] = float(values[:, 0].mean())
            row[f"{key}_final_mean"] = float(values[:, -1].mean())
            row[f"{key}_final_std"] = float(values[:, -1].std())
            row[f"{key}_best_mean"] = float(values[:, 1:].max(axis=1).mean())
            threshold = thresholds[key]
            reached = [steps_to(run, key, threshold) for run in runs] if threshold is not None else []
            row[f"{key}_steps_to_threshold"] = reached
        _, value_loss = curve(runs, "value_loss", "steps")
        _, train_reward = curve(runs, "train_reward", "steps")
        row["value_loss_mean"] = float(value_loss.mean())
        row["value_loss_last_half_mean"] = float(value_loss[:, value_loss.shape[1] // 2 :].mean())
        row["train_reward_last_half_mean"] = float(train_reward[:, train_reward.shape[1] // 2 :].mean())
        row["step_seconds_mean"] = float(np.mean([s["step_seconds"] for run in runs for s in run["steps"]]))
        row["attribution_seconds_mean"] = float(
            np.mean([s.get("attribution_seconds", 0.0) for run in runs for s in run["steps"]])
        )
        row["run_seconds_mean"] = float(np.mean([run["seconds"] for run in runs]))
        row["value_loss_vs_sparse"] = paired_ratio(runs, by_arm.get("sparse", []), "value_loss")
        arms[arm] = row
    return {"thresholds": thresholds, "arms": arms}


def paired_ratio(runs: list[dict[str, Any]], baseline: list[dict[str, Any]], key: str) -> float | None:
    """Mean over seeds and steps of run/baseline - 1 for the same seed and step (None without a baseline)."""
    by_seed = {run["seed"]: run for run in baseline}
    ratios = [
        step[key] / base[key] - 1.0
        for run in runs
        if run["seed"] in by_seed
        for step, base in zip(run["steps"], by_seed[run["seed"]]["steps"], strict=True)
        if base[key] != 0
    ]
    return float(np.mean(ratios)) if ratios else None


def fmt_steps(reached: list[int | None]) -> str:
    return ", ".join("-" if r is None else str(r) for r in reached) or "n/a"


def fmt_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def fmt_value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    summary = report["summary"]
    t = summary["thresholds"]
    lines = [
        "# Paper claims on the demo task: sparse vs ABC vs uniform vs BO-best weights",
        "",
        f"Policy `{s['policy']}` (LoRA r={s['lora_r']}), RM `{s['reward_model']}`, gold = VADER. Same compute per arm: "
        f"{s['steps']} PPO steps x {s['batch_size']} prompts (mini-batch {s['mini_batch_size']}, {s['update_epochs']} "
        f"update epochs), <= {s['max_new_tokens']} new tokens, lr {s['learning_rate']}, kl_coef {s['kl_coef']}; "
        f"shap max_evals={s['shap_max_evals']}, lime num_samples={s['lime_num_samples']}; normaliser "
        f"{s.get('normalize', 'softmax')} (tau {s.get('tau', 1.0)}); seeds {s['seeds']}. "
        f"Greedy evaluation on {s['val_prompts']} validation prompts at step 0 and every {s['eval_every']} steps.",
        "",
        f"BO weights: {report['bo']['from']}.",
        "",
        f"Thresholds (start + half of the best arm's mean final gain; n/a when no arm gained): val_reward "
        f"{fmt_value(t['val_reward'])}, gold_reward {fmt_value(t['gold_reward'])}. `-` = not reached within the budget.",
        "",
        "| arm | weights | val_reward final (mean ± sd) | gold_reward final (mean ± sd) | val best | "
        "steps to val thr. | steps to gold thr. | value loss (mean) | value loss vs sparse (same seed, step) | s / step |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for arm, row in summary["arms"].items():
        weights = ", ".join(f"{k} {v:.2f}" for k, v in row["weights"].items() if v > 0)
        if row.get("same_as"):
            weights += f" (the {row['same_as']} runs)"
        lines.append(
            f"| {arm} | {weights} | {row['val_reward_final_mean']:+.4f} ± {row['val_reward_final_std']:.4f} | "
            f"{row['gold_reward_final_mean']:+.4f} ± {row['gold_reward_final_std']:.4f} | {row['val_reward_best_mean']:+.4f} | "
            f"{fmt_steps(row['val_reward_steps_to_threshold'])} | {fmt_steps(row['gold_reward_steps_to_threshold'])} | "
            f"{row['value_loss_mean']:.4f} | {fmt_percent(row['value_loss_vs_sparse'])} | {row['step_seconds_mean']:.1f} |"
        )
    first = next(iter(summary["arms"].values()))
    lines += [
        "",
        f"Start (step 0, before any update; mean over seeds): val_reward {first['val_reward_start']:+.4f}, "
        f"gold_reward {first['gold_reward_start']:+.4f}. Wall time {report['wall_seconds'] / 60:.1f} min "
        f"on {s['cpu_count']} shared CPUs (load average {s['load_average_at_start']:.1f} at start).",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> Path:
    """val_reward, gold_reward, train reward and value loss against PPO step; mean over seeds, band = min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_arm: dict[str, list[dict[str, Any]]] = {}
    aliases: dict[str, list[str]] = {}
    for run in report["runs"]:
        if run.get("same_as"):
            # A reused run would hide the arm it copies: one line, labelled with both names.
            if run["arm"] not in aliases.setdefault(run["same_as"], []):
                aliases[run["same_as"]].append(run["arm"])
            continue
        by_arm.setdefault(run["arm"], []).append(run)
    panels = [
        ("val_reward", "evaluations", "val_reward (RM, greedy, validation)"),
        ("gold_reward", "evaluations", "gold_reward (VADER, validation)"),
        ("train_reward", "steps", "train reward (RM, sampled rollouts)"),
        ("value_loss", "steps", "PPO value loss"),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    for axis, (key, where, title) in zip(axes, panels, strict=True):
        for arm, runs in by_arm.items():
            steps, values = curve(runs, key, where)
            (line,) = axis.plot(steps, values.mean(axis=0), marker="o", markersize=3, label=" = ".join([arm, *aliases.get(arm, [])]) + f" (n={len(runs)})")
            axis.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15)
        if report["summary"]["thresholds"].get(key) is not None:
            axis.axhline(report["summary"]["thresholds"][key], color="grey", linestyle="--", linewidth=0.8)
        axis.set_title(title)
        axis.set_xlabel("PPO step")
    axes[0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------


def settings_of(args: argparse.Namespace, base: Config) -> dict[str, Any]:
    return {
        "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT) else str(args.config),
        "policy": base.models.policy.path,
        "reward_model": base.models.reward.path,
        "lora_r": base.models.lora.r if base.models.lora.enabled else None,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "batch_size": args.batch_size,
        "mini_batch_size": args.mini_batch_size,
        "update_epochs": args.update_epochs,
        "max_new_tokens": args.max_new_tokens,
        "learning_rate": base.ppo.learning_rate,
        "kl_coef": base.ppo.kl_coef,
        "normalize": base.shaping.normalize,
        "tau": base.shaping.tau,
        "val_prompts": args.val_prompts,
        "shap_max_evals": args.shap_max_evals,
        "lime_num_samples": args.lime_num_samples,
        "seeds": args.seeds,
        "arms": args.arms,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def write(report: dict[str, Any], args: argparse.Namespace) -> None:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "paper_claims.json").write_text(json.dumps(report, indent=2) + "\n")


def same_normaliser(run: dict[str, Any], normalize: str) -> bool:
    """Whether a stored run may join runs made with `normalize`: it was made with it (runs stored before
    runs recorded it used `softmax`), or its weights lie on sources that are distributions already
    (`sparse`, `attention`), which no normaliser changes."""
    from dense_reward.attribution import EXPLAINERS

    if all(EXPLAINERS[name].is_distribution for name, w in run["weights"].items() if w > 0):
        return True
    return run.get("normalize", "softmax") == normalize


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_sweep_config(args.config).library_config()
    if args.normalize:
        base = base.with_overrides({"shaping.normalize": args.normalize})
    normalize = base.shaping.normalize
    if args.steps % args.eval_every:
        raise SystemExit(f"--steps {args.steps} must be a multiple of --eval-every {args.eval_every}")
    if args.sweep:
        bo = best_weights_of_sweep(args.sweep)
    elif args.best_weights:
        given = "given on the command line (--best-weights)"
        bo = {"weights": parse_weights(args.best_weights), "from": given, "sweep_trials": []}
    else:
        bo = {"weights": None, "from": "not run (no --sweep or --best-weights)", "sweep_trials": []}
    settings = settings_of(args, base)
    report: dict[str, Any] = {"settings": settings, "bo": bo, "runs": [], "wall_seconds": 0.0}
    done: set[tuple[str, int]] = set()
    existing = args.out_dir / "paper_claims.json"
    if args.resume and existing.is_file():
        previous = json.loads(existing.read_text())
        report["runs"] = [r for r in previous.get("runs", []) if same_normaliser(r, normalize)]
        report["wall_seconds"] = previous.get("wall_seconds", 0.0)
        # The machine load when the runs started, not when they were merged or resumed.
        settings["load_average_at_start"] = previous.get("settings", settings)["load_average_at_start"]
        done = {(r["arm"], r["seed"]) for r in report["runs"]}
    for index, path in enumerate(args.include):
        # Runs of the same settings made by another process (e.g. one process per seed on a 2-core box).
        included = json.loads(Path(path).read_text())
        # The processes ran side by side: the wall time is the longest, the load the first one's at its start.
        report["wall_seconds"] = max(report["wall_seconds"], included.get("wall_seconds", 0.0))
        if index == 0 and not done:
            settings["load_average_at_start"] = included["settings"]["load_average_at_start"]
        for other in included["runs"]:
            if not same_normaliser(other, normalize):
                print(f"{path}: {other['arm']} seed {other['seed']} ran with another normaliser; left out", flush=True)
            elif (other["arm"], other["seed"]) not in done:
                report["runs"].append(other)
                done.add((other["arm"], other["seed"]))
    started = time.perf_counter() - report["wall_seconds"]
    # Seed-major order: a run cut short still leaves every arm with the same seeds done.
    for seed in args.seeds:
        for arm in args.arms:
            if (arm, seed) in done:
                continue
            weights = arm_weights(arm, list(base.shaping.sources), bo["weights"])
            twin = next((r for r in report["runs"] if r["seed"] == seed and same_weights(r["weights"], weights)), None)
            if twin is not None:
                # Same weights and seed = the same run (e.g. the sweep's best is a baseline): reuse it.
                print(f"{arm} seed {seed}: weights equal the {twin['arm']} arm's, reusing its run", flush=True)
                report["runs"].append({**twin, "arm": arm, "same_as": twin["arm"]})
                done.add((arm, seed))
                continue
            if args.report_only:
                continue
            print(f"{arm} seed {seed}: weights {weights}", flush=True)
            result = train_one(run_config(base, args, weights, seed), f"{arm}/{seed}")
            report["runs"].append({"arm": arm, "seed": seed, "weights": weights, "normalize": normalize, **result})
            report["wall_seconds"] = time.perf_counter() - started
            write(report, args)
    if not report["runs"]:
        raise SystemExit(f"no runs to summarise in {existing}")
    settings["seeds"] = sorted({run["seed"] for run in report["runs"]})
    settings["arms"] = list(dict.fromkeys(run["arm"] for run in report["runs"]))
    report["summary"] = summarise(report, args.threshold)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "tune_jobs" / "configs" / "demo.yaml")
    parser.add_argument("--sweep", help="run dir (or name under ./runs) of a sweep whose best weights form the bo arm")
    parser.add_argument("--best-weights", help='bo arm weights as JSON (inline or a file), e.g. {"shap": 0.7, "sparse": 0.3}')
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--normalize", choices=NORMALIZERS, help="shaping.normalize of every arm (default: the config's)"
    )
    parser.add_argument("--steps", type=int, default=8, help="PPO steps per run")
    parser.add_argument("--eval-every", type=int, default=2, help="evaluate after every this many steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mini-batch-size", type=int, default=4)
    parser.add_argument("--update-epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--val-prompts", type=int, default=16)
    parser.add_argument("--shap-max-evals", type=int, default=32)
    parser.add_argument("--lime-num-samples", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=None, help="val_reward threshold (default: see the docstring)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in <out-dir>/paper_claims.json")
    parser.add_argument("--report-only", action="store_true", help="train nothing; summarise the runs already there")
    parser.add_argument("--include", nargs="+", default=[], metavar="JSON", help="add the runs of other paper_claims.json files")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=DOCS / "paper_claims.png")
    parser.add_argument("--smoke", action="store_true", help="tiny.yaml models, one seed, 2 steps, 2 validation prompts")
    args = parser.parse_args(argv)
    if args.smoke:
        args.config = ROOT / "tune_jobs" / "configs" / "tiny.yaml"
        args.seeds, args.steps, args.eval_every, args.val_prompts = [0], 2, 1, 2
        args.batch_size, args.mini_batch_size, args.update_epochs, args.max_new_tokens = 2, 2, 1, 6
        args.shap_max_evals, args.lime_num_samples = 8, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    write(report, args)
    (args.out_dir / "paper_claims.md").write_text(markdown(report))
    plot(report, args.plot)
    print(markdown(report))
    print(f"wrote {args.out_dir / 'paper_claims.json'}, {args.out_dir / 'paper_claims.md'} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
