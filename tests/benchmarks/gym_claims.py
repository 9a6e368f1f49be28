"""The papers' PPO claims on the credit gym: sparse vs ABC vs uniform vs given weights, short and long responses.

The gym (`dense_reward.builtin.gym`) knows its gold reward and the exact gold credit of every token, so
the claims of Koo et al. (arXiv 2504.16272: dense credit from explanations and BO-searched weights speed
PPO up and lower its value loss) and of Chan et al. (ABC, arXiv 2402.00782: attention 0.8 / sparse 0.2
beats sparse) are measured against the truth rather than the RM alone. Every arm gets the same compute
(steps, batch, response length, seeds) and differs only in `shaping.weights`; runs are the same code
as a sweep trial (`paper_claims.train_one`, which this script reuses with its summary). Per response
length (``--lengths``, default 24 and 64 words) it reports, per arm:

- final gold reward: mean and a 95% t-interval over seeds;
- paired tests against sparse on the final gold reward, seed by seed (the same seed = the same
  initialisation, prompts and sampling stream): a two-sided paired t-test and a two-sided Wilcoxon
  signed-rank test, with their p-values;
- steps to a gold threshold (start + half the best arm's mean final gain) and the mean PPO value loss;
- fidelity of every source against the exact gold credit: the mean per-response Spearman correlation
  of its token credit with `gold_token_credit`, on the initial policy's responses to validation prompts.

Run by hand (about 30-40 minutes on 2 busy cores at the default sizes; ``--include`` merges the JSON of
processes that ran other seeds side by side):

    nice -n 5 .venv/bin/python tests/benchmarks/gym_claims.py --best-weights '{"shap": 0.5, "sparse": 0.5}'

Writes ``docs/benchmarks/gym_claims.json`` and ``gym_claims.md``, and ``docs/gym_claims.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_claims  # noqa: E402

from dense_reward.builtin.gym.task import gold_token_credit  # noqa: E402
from dense_reward.config import Config  # noqa: E402
from dense_reward.ppo.rollout import generate  # noqa: E402
from dense_reward.run import Run  # noqa: E402
from dense_reward.shaping import NORMALIZERS, DenseReward  # noqa: E402
from tune_jobs.config import load_sweep_config  # noqa: E402

ROOT = paper_claims.ROOT
RESULTS = paper_claims.RESULTS
ARMS = paper_claims.ARMS


def run_config(
    base: Config, args: argparse.Namespace, weights: dict[str, float], seed: int, length: int
) -> Config:
    """The gym config at the benchmark's sizes, with this arm's weights, seed and response length."""
    return base.with_overrides(
        {**paper_claims.arm_overrides(base, args, weights, seed, gold_scorer="credit-gym"), "ppo.max_new_tokens": length}
    )


# --------------------------------------------------------------------------------------------------
# fidelity against the exact gold credit
# --------------------------------------------------------------------------------------------------


def fidelity(config: Config, responses: int) -> dict[str, float]:
    """Mean per-response Spearman correlation of each source's token credit with the exact gold credit.

    Responses are sampled from the initial policy on validation prompts; a response whose gold credit
    is constant (no scoring word) is skipped, as correlation is undefined there.
    """
    run = Run(config, {"sparse": 1.0})
    every = DenseReward(
        run.reward_model,
        run.tokenizer,
        config.shaping,
        {"sparse": 1.0},
        run.splits.raw,
        seed=config.seed,
        skip_zero_weight=False,
    )
    prompts = (run.splits.validation * responses)[:responses]
    torch.manual_seed(config.seed)
    rollout = generate(run.trainer.policy, run.tokenizer, prompts, config.ppo.max_new_tokens)
    output = every(prompts, rollout.token_ids)
    result = {}
    for source, credits in output.attributions.items():
        scores = []
        for text, credit in zip(output.responses, credits, strict=True):
            gold = gold_token_credit(text)
            words = credit[: len(gold)]  # a trailing EOS carries no word
            if np.ptp(gold) > 0 and np.ptp(words) > 0:
                scores.append(stats.spearmanr(words, gold).statistic)
        result[source] = float(np.mean(scores)) if scores else float("nan")
    return result


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------


def final_gold(runs: list[dict[str, Any]]) -> dict[int, float]:
    """Seed -> final gold reward of an arm's runs."""
    return {run["seed"]: run["evaluations"][-1]["gold_reward"] for run in runs}


def interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for a single value)."""
    if len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(
        stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    )


def paired_tests(arm: dict[int, float], sparse: dict[int, float]) -> dict[str, float | None]:
    """Two-sided paired t-test and Wilcoxon signed-rank p-values of arm vs sparse over shared seeds."""
    seeds = sorted(set(arm) & set(sparse))
    differences = np.array([arm[s] - sparse[s] for s in seeds])
    if len(seeds) < 2 or not np.any(differences):
        return {
            "seeds": len(seeds),
            "mean_difference": float(differences.mean()) if seeds else None,
            "t_p": None,
            "wilcoxon_p": None,
        }
    return {
        "seeds": len(seeds),
        "mean_difference": float(differences.mean()),
        "t_p": float(stats.ttest_1samp(differences, 0.0).pvalue),
        "wilcoxon_p": float(stats.wilcoxon(differences).pvalue),
    }


def summarise_length(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`paper_claims.summarise` of one length's runs plus the gold interval and paired tests per arm."""
    summary = paper_claims.summarise({"runs": runs}, None)
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], []).append(run)
    sparse = final_gold(by_arm.get("sparse", []))
    for arm, arm_runs in by_arm.items():
        mean, half = interval(np.array(list(final_gold(arm_runs).values())))
        row = summary["arms"][arm]
        row["gold_final_mean"], row["gold_final_ci95"] = mean, half
        row["vs_sparse"] = paired_tests(final_gold(arm_runs), sparse) if arm != "sparse" else None
    return summary


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def fmt_p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Paper claims on the credit gym: sparse vs ABC vs uniform vs given weights",
        "",
        f"`{s['config']}`: {s['steps']} PPO steps x {s['batch_size']} prompts per run, lr {s['learning_rate']}, "
        f"kl_coef {s['kl_coef']}, normaliser {s.get('normalize', 'softmax')} (tau {s.get('tau', 1.0)}), "
        f"seeds {s['seeds']}; greedy evaluation on {s['val_prompts']} validation prompts "
        f"every {s['eval_every']} steps. Given weights (`given`): {report['given']}. Paired tests against sparse "
        "on the final gold reward, seed by seed: two-sided paired t-test and Wilcoxon signed-rank.",
    ]
    for length, part in report["lengths"].items():
        summary = part["summary"]
        lines += [
            "",
            f"## {length}-word responses",
            "",
            f"Gold threshold {paper_claims.fmt_value(summary['thresholds']['gold_reward'])} (start + half of the best "
            "arm's mean final gain); `-` = not reached.",
            "",
            "| arm | gold final (mean ± 95% CI) | diff vs sparse | t-test p | Wilcoxon p | steps to gold thr. | "
            "value loss (mean) | val_reward final | s / step |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|",
        ]
        for arm, row in summary["arms"].items():
            tests = row["vs_sparse"] or {}
            diff = tests.get("mean_difference")
            lines.append(
                f"| {arm} | {row['gold_final_mean']:+.3f} ± {row['gold_final_ci95']:.3f} | "
                f"{'n/a' if diff is None else f'{diff:+.3f}'} | {fmt_p(tests.get('t_p'))} | "
                f"{fmt_p(tests.get('wilcoxon_p'))} | {paper_claims.fmt_steps(row['gold_reward_steps_to_threshold'])} | "
                f"{row['value_loss_mean']:.4f} | {row['val_reward_final_mean']:+.3f} | {row['step_seconds_mean']:.2f} |"
            )
        fid = ", ".join(f"{k} {v:+.3f}" for k, v in part["fidelity"].items())
        lines += [
            "",
            f"Fidelity (mean per-response Spearman of token credit with the exact gold credit): {fid}.",
        ]
    lines += [
        "",
        f"Wall time {report['wall_seconds'] / 60:.1f} min on {s['cpu_count']} shared CPUs "
        f"(load average {s['load_average_at_start']:.1f} at start).",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> Path:
    """Gold reward and value loss against PPO step per length: mean over seeds, band = 95% t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = list(report["lengths"])
    figure, axes = plt.subplots(len(lengths), 2, figsize=(11, 3.6 * len(lengths)), squeeze=False)
    for row_axes, length in zip(axes, lengths, strict=True):
        by_arm: dict[str, list[dict[str, Any]]] = {}
        for run in report["lengths"][length]["runs"]:
            by_arm.setdefault(run["arm"], []).append(run)
        for axis, (key, where) in zip(
            row_axes, [("gold_reward", "evaluations"), ("value_loss", "steps")], strict=True
        ):
            for arm, runs in by_arm.items():
                steps, values = paper_claims.curve(runs, key, where)
                mean = values.mean(axis=0)
                half = np.array([interval(values[:, i])[1] for i in range(values.shape[1])])
                (line,) = axis.plot(steps, mean, marker="o", markersize=3, label=f"{arm} (n={len(runs)})")
                axis.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.15)
            axis.set_title(f"{key}, {length}-word responses")
            axis.set_xlabel("PPO step")
        row_axes[0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    base = load_sweep_config(args.config).library_config()
    if args.normalize:
        base = base.with_overrides({"shaping.normalize": args.normalize})
    normalize = base.shaping.normalize
    given = paper_claims.parse_weights(args.best_weights) if args.best_weights else None
    out = args.out_dir / "gym_claims.json"
    report: dict[str, Any] = {"lengths": {}, "given": given, "wall_seconds": 0.0}
    if args.resume and out.is_file():
        report = json.loads(out.read_text())
        for part in report["lengths"].values():
            part["runs"] = [r for r in part["runs"] if paper_claims.same_normaliser(r, normalize)]
    for path in args.include:
        other = json.loads(Path(path).read_text())
        report["wall_seconds"] = max(report["wall_seconds"], other["wall_seconds"])
        for length, part in other["lengths"].items():
            mine = report["lengths"].setdefault(length, {"runs": [], "fidelity": part["fidelity"]})
            have = {(r["arm"], r["seed"]) for r in mine["runs"]}
            for r in part["runs"]:
                if not paper_claims.same_normaliser(r, normalize):
                    print(f"{path}: {length} words, {r['arm']} seed {r['seed']} ran with another normaliser; left out")
                elif (r["arm"], r["seed"]) not in have:
                    mine["runs"].append(r)
    started = time.perf_counter() - report["wall_seconds"]
    report["settings"] = {
        **paper_claims.settings_of(
            argparse.Namespace(
                **{
                    **vars(args),
                    "batch_size": base.ppo.batch_size,
                    "mini_batch_size": base.ppo.mini_batch_size,
                    "update_epochs": base.ppo.update_epochs,
                    "max_new_tokens": args.lengths,
                    "shap_max_evals": base.shaping.shap.max_evals,
                    "lime_num_samples": base.shaping.lime.num_samples,
                }
            ),
            base,
        ),
    }
    for length in args.lengths:
        part = report["lengths"].setdefault(str(length), {"runs": []})
        if "fidelity" not in part and not args.report_only:
            part["fidelity"] = fidelity(
                run_config(base, args, {"sparse": 1.0}, 0, length), args.fidelity_responses
            )
        done = {(r["arm"], r["seed"]) for r in part["runs"]}
        for seed in args.seeds:
            for arm in args.arms:
                if (arm, seed) in done or args.report_only:
                    continue
                weights = paper_claims.arm_weights(
                    "bo" if arm == "given" else arm, list(base.shaping.sources), given
                )
                print(f"{length} words, {arm} seed {seed}: weights {weights}", flush=True)
                result = paper_claims.train_one(
                    run_config(base, args, weights, seed, length), f"{length}/{arm}/{seed}"
                )
                part["runs"].append({"arm": arm, "seed": seed, "weights": weights, "normalize": normalize, **result})
                report["wall_seconds"] = time.perf_counter() - started
                args.out_dir.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(report, indent=2) + "\n")
        part["summary"] = summarise_length(part["runs"])
    report["settings"]["seeds"] = sorted({r["seed"] for p in report["lengths"].values() for r in p["runs"]})
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "tune_jobs" / "configs" / "gym.yaml")
    parser.add_argument(
        "--best-weights", help='weights of the `given` arm as JSON, e.g. {"shap": 0.5, "sparse": 0.5}'
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=["sparse", "abc", "uniform", "given"],
        default=["sparse", "abc", "uniform", "given"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument(
        "--normalize", choices=NORMALIZERS, help="shaping.normalize of every arm (default: the config's)"
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[24, 64], help="response lengths (max_new_tokens)"
    )
    parser.add_argument("--steps", type=int, default=24, help="PPO steps per run")
    parser.add_argument("--eval-every", type=int, default=6)
    parser.add_argument("--val-prompts", type=int, default=32)
    parser.add_argument("--fidelity-responses", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in <out-dir>/gym_claims.json"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing; summarise the runs already there"
    )
    parser.add_argument(
        "--include", nargs="+", default=[], metavar="JSON", help="add the runs of other gym_claims.json files"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=paper_claims.DOCS / "gym_claims.png")
    parser.add_argument(
        "--smoke", action="store_true", help="gym-test.yaml, 2 seeds, 2 steps, 8-word responses"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.config = ROOT / "tune_jobs" / "configs" / "gym-test.yaml"
        args.seeds, args.lengths, args.steps, args.eval_every = [0, 1], [8], 2, 1
        args.val_prompts, args.fidelity_responses = 4, 4
    if args.steps % args.eval_every:
        raise SystemExit(f"--steps {args.steps} must be a multiple of --eval-every {args.eval_every}")
    if "given" in args.arms and not args.best_weights:
        args.arms = [arm for arm in args.arms if arm != "given"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gym_claims.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "gym_claims.md").write_text(markdown(report))
    plot(report, args.plot)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
