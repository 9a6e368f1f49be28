"""Credit-assignment fidelity: how well each attribution source ranks the tokens the gold scorer credits.

On the demo task the gold scorer is VADER, whose score is (a squashed) sum of per-word valences, so
every response has a known per-word credit. For >= 200 sampled policy responses to the demo prompts
this script explains the demo reward model (MiniLM trained to agree with VADER) with every source,
moves the gold per-word valences onto the same policy tokens with the same alignment code
(`dense_reward.attribution.align.align_credit`), and reports per source:

- the Spearman correlation between the source's per-token credit and the gold per-token credit,
  per response, then its median, mean and interquartile range over responses;
- its cost per response: wall seconds, RM forward calls and RM sequences scored.

Responses whose gold credit is constant over their tokens (no sentiment word at all, or one word
covering every token) have no ranking to agree with; they are left out of every source's summary and
counted in ``responses_constant_gold``. When a source's credit is constant on a response whose gold
credit is not, it ranks nothing, and that response counts as correlation 0 (``constant_source``).
Every task goes through these same two rules (`response_spearman`). (``gym_claims.py``'s older gym
fidelity part differs: it skips a response when either credit is constant and reports the mean, so
its numbers are not comparable row for row with ``fidelity_gym.json``.)

The responses are sampled once and cached to a JSON file (reruns skip generation). Run by hand
(about 20-30 minutes on 2 busy CPU cores):

    DENSE_REWARD_CACHE=... nice -n 10 .venv/bin/python tests/benchmarks/fidelity.py

Writes ``docs/benchmarks/fidelity.json``, ``fidelity.md`` and ``docs/fidelity.png``.
``--smoke`` runs the same code on the builtin tiny models at a tiny size. ``--only LABEL ...`` measures
only those rows (e.g. ``--only integrated_gradients@16 log_ratio``) and merges them into the existing
outputs when those were measured on the same responses, so the slow rows need not run again.

A task is a `Task`: its models, prompts and a ``gold_token_credit(text, offsets)`` function. Two are
in `TASKS`: the demo (``--task demo``, the default) and the credit gym (``--task gym``: policy
`credit-gym-policy`, RM `credit-gym-rm`, the gym prompts, 64-word responses, gold = the gym's exact
per-word credit moved onto the policy tokens with the same `align_credit`; its `log_ratio` row reads
`credit-gym-policy-dpo` against `credit-gym-policy`). A task other than the demo writes
``fidelity_<task>.json``, ``fidelity_<task>.md`` and caches its responses in
``fidelity_<task>_responses.json``, with its figure in ``docs/fidelity_<task>.png``:

    nice -n 10 .venv/bin/python tests/benchmarks/fidelity.py --task gym --responses 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.attribution.align import align_credit
from dense_reward.builtin.demo.gold import word_credit
from dense_reward.builtin.demo.prompts import load_demo_prompts
from dense_reward.builtin.gym import task as gym_task
from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.data import format_prompt
from dense_reward.models import load_policy
from dense_reward.ppo.rollout import generate
from dense_reward.reward_model import RewardModel

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks"
DOCS = ROOT / "docs"
NATURAL_REPLIES = ROOT / "dense_reward" / "builtin" / "demo" / "natural_replies.jsonl"


@dataclass(frozen=True)
class Variant:
    """One measured source: its registry name and the options it is built with."""

    label: str
    source: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A built-in task whose responses have a known per-token gold credit."""

    policy: str
    reward: str
    prompts: Callable[[], list[str]]
    gold_token_credit: Callable[[str, list[tuple[int, int]]], np.ndarray | None]
    """(text, policy token spans) -> (P,) gold credit per policy token, or None when it cannot be computed."""
    gold: str = "gold"
    """What the gold credit is, for the report."""
    max_new_tokens: int = 28
    """Default response length cap (``--max-new-tokens``)."""
    log_ratio: dict[str, str] = field(default_factory=dict)
    """``policy`` (DPO-tuned) and ``reference`` paths of the `log_ratio` source; empty = no such row."""
    smoke_log_ratio: dict[str, str] = field(default_factory=dict)
    smoke_models: tuple[str, str] = ("builtin:tiny-gpt2", "builtin:tiny-rm")
    """(policy, reward model) of a ``--smoke`` run."""
    natural_replies: bool = True
    """Whether ``--smoke`` adds the demo kit's hand-written replies (they carry VADER gold credit)."""


def variants(args: argparse.Namespace, task: Task) -> list[Variant]:
    """Every source once, shap and lime once per budget, integrated gradients once per step count."""
    # Cheapest first: the outputs are rewritten after every source, so a cut-short run keeps the most.
    rows = [
        Variant("sparse", "sparse", {}),
        Variant("attention", "attention", {}),
    ]
    log_ratio = task.smoke_log_ratio if args.smoke else task.log_ratio
    if log_ratio:
        rows.append(Variant("log_ratio", "log_ratio", dict(log_ratio)))
    rows += [Variant(f"integrated_gradients@{n}", "integrated_gradients", {"n_steps": n}) for n in sorted(args.ig_steps)]
    rows.append(Variant("redistribution", "redistribution", {}))
    for shap_budget, lime_budget in zip(sorted(args.shap_budgets), sorted(args.lime_budgets), strict=True):
        rows.append(Variant(f"shap@{shap_budget}", "shap", {"max_evals": shap_budget}))
        rows.append(Variant(f"lime@{lime_budget}", "lime", {"num_samples": lime_budget, "seed": args.seed}))
    if args.only:
        unknown = sorted(set(args.only) - {row.label for row in rows})
        if unknown:
            raise SystemExit(f"--only: unknown row(s) {unknown}; known: {[row.label for row in rows]}")
        rows = [row for row in rows if row.label in args.only]
    return rows


# --------------------------------------------------------------------------------------------------
# responses (sampled once, cached)
# --------------------------------------------------------------------------------------------------


def sample_responses(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`args.responses` sampled responses to distinct demo prompts: raw prompt and policy token ids.

    Read from `args.responses_cache` when it holds the same settings; else generated and written there.
    """
    settings = {
        "policy": args.policy,
        "responses": args.responses,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "natural_replies": args.natural_replies,
    }
    cache = Path(args.responses_cache)
    rows: list[dict[str, Any]] = []
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("settings") == settings:
            rows = stored["rows"]
            if stored.get("complete"):
                print(f"responses: {len(rows)} from {cache}")
                return rows
            print(f"responses: continuing from {len(rows)} in {cache}")
    prompts = TASKS[args.task].prompts()
    if args.responses > len(prompts):
        raise SystemExit(f"--responses {args.responses}: the {args.task} set has only {len(prompts)} prompts")
    random.Random(args.seed).shuffle(prompts)
    prompts = prompts[: args.responses]
    policy, tokenizer = load_policy(ModelSpec(path=args.policy))
    policy.eval()
    started = time.perf_counter()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for start in range(len(rows), len(prompts), args.generation_batch):
            # Seeded per batch, so a generation resumed from a partial cache samples the same way.
            torch.manual_seed(args.seed * 100_003 + start)
            raw = prompts[start : start + args.generation_batch]
            formatted = [format_prompt(p, tokenizer) for p in raw]
            rollout = generate(policy, tokenizer, formatted, args.max_new_tokens, temperature=args.temperature)
            rows += [{"prompt": p, "token_ids": ids} for p, ids in zip(raw, rollout.token_ids, strict=True)]
            cache.write_text(json.dumps({"settings": settings, "complete": False, "rows": rows}))
            print(f"  generated {len(rows)}/{len(prompts)} ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.natural_replies:
        rows += natural_rows(tokenizer, prompts, args.natural_replies)
    cache.write_text(json.dumps({"settings": settings, "complete": True, "rows": rows}))
    return rows


def natural_rows(tokenizer, prompts: list[str], count: int) -> list[dict[str, Any]]:
    """`count` of the kit's hand-written replies as policy token ids (+ EOS), paired with demo prompts.

    The tiny smoke policy writes no sentiment words; these give the smoke run responses with gold credit.
    """
    replies = [json.loads(line)["response"] for line in NATURAL_REPLIES.read_text().splitlines() if line.strip()]
    return [
        {
            "prompt": prompts[i % len(prompts)],
            "token_ids": tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
        }
        for i, reply in enumerate(replies[:count])
    ]


# --------------------------------------------------------------------------------------------------
# gold credit and correlation
# --------------------------------------------------------------------------------------------------


def vader_token_credit(text: str, offsets: list[tuple[int, int]]) -> np.ndarray | None:
    """VADER per-word valences moved onto the policy tokens (None when VADER's word split disagrees)."""
    try:
        credit = word_credit(text)
    except ValueError:
        return None
    return align_credit(credit.spans, credit.valences, offsets)  # (P,)


def gym_token_credit(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """The credit gym's exact per-word gold credit moved onto the policy tokens (words = ``text.split()``)."""
    spans = [match.span() for match in re.finditer(r"\S+", text)]
    return align_credit(spans, gym_task.gold_token_credit(text), offsets)  # (P,)


def gym_prompts() -> list[str]:
    return [row["prompt"] for row in gym_task.prompt_rows()]


TASKS: dict[str, Task] = {
    "demo": Task(
        policy="builtin:smollm2-135m-instruct",
        reward="builtin:minilm-rm",
        prompts=load_demo_prompts,
        gold_token_credit=vader_token_credit,
        gold="VADER per-word valences",
        log_ratio={"policy": "builtin:smollm2-135m-instruct-dpo", "reference": "builtin:smollm2-135m-instruct"},
        smoke_log_ratio={"policy": "builtin:tiny-gpt2-dpo", "reference": "builtin:tiny-gpt2"},
        smoke_models=("builtin:tiny-gpt2", "builtin:tiny-rm"),
    ),
    "gym": Task(
        policy="builtin:credit-gym-policy",
        reward="builtin:credit-gym-rm",
        prompts=gym_prompts,
        gold_token_credit=gym_token_credit,
        gold="the gym's exact per-word gold credit (word values, position and pair terms)",
        max_new_tokens=64,
        log_ratio={"policy": "builtin:credit-gym-policy-dpo", "reference": "builtin:credit-gym-policy"},
        # The gym's own models build in seconds; its DPO policy (about a minute) is left out of the smoke run.
        smoke_models=("builtin:credit-gym-policy", "builtin:credit-gym-rm"),
        natural_replies=False,
    ),
}


def is_constant(values: np.ndarray) -> bool:
    return values.size < 2 or bool(np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())))


def response_spearman(credit: np.ndarray, gold: np.ndarray) -> tuple[float, bool]:
    """Spearman of one response's source credit against its (non-constant) gold credit.

    Returns (rho, source_was_constant); a constant source credit ranks nothing and scores 0.
    """
    if is_constant(credit):
        return 0.0, True
    return float(spearmanr(credit, gold).statistic), False


def summarise(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "mean": None, "q25": None, "q75": None}
    array = np.asarray(values)
    return {
        "median": float(np.median(array)),
        "mean": float(array.mean()),
        "q25": float(np.percentile(array, 25)),
        "q75": float(np.percentile(array, 75)),
    }


# --------------------------------------------------------------------------------------------------
# the measurement
# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    earlier = previous_report(args)
    rows = sample_responses(args)
    _, tokenizer = load_policy(ModelSpec(path=args.policy))
    reward_model = RewardModel.from_spec(RewardModelSpec(path=args.reward, batch_size=args.rm_batch_size))
    decoded = [policy_token_offsets(tokenizer, row["token_ids"]) for row in rows]
    prompts = [row["prompt"] for row in rows]
    texts = [text for text, _ in decoded]
    offsets = [spans for _, spans in decoded]
    golds = [TASKS[args.task].gold_token_credit(text, spans) for text, spans in decoded]
    unsplittable = sum(g is None for g in golds)
    usable = [i for i, g in enumerate(golds) if g is not None and not is_constant(g)]
    scores = reward_model.score(prompts, texts).double().numpy()  # (N,)
    print(
        f"{len(rows)} responses, {len(usable)} with non-constant gold credit; "
        f"mean {np.mean([len(o) for o in offsets]):.1f} policy tokens"
    )
    chunks = [list(range(s, min(s + args.explain_batch, len(rows)))) for s in range(0, len(rows), args.explain_batch)]
    warm = ScoredBatch(prompts[:2], texts[:2], offsets[:2], scores[:2])
    results: dict[str, Any] = {}
    per_response: dict[str, list[float | None]] = {}
    report = {
        "settings": {
            "task": args.task,
            "policy": args.policy,
            "reward_model": args.reward,
            "responses": len(rows),
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
            "shap_budgets": args.shap_budgets,
            "lime_budgets": args.lime_budgets,
            "explain_batch": args.explain_batch,
            "rm_batch_size": args.rm_batch_size,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "responses_total": len(rows),
        "responses_constant_gold": len(rows) - len(usable) - unsplittable,
        "responses_unsplittable": unsplittable,
        "responses_scored": len(usable),
        "mean_policy_tokens": float(np.mean([len(o) for o in offsets])),
        "mean_rm_score": float(scores.mean()),
        "complete": False,
        "sources": results,
        "per_response_spearman": per_response,
        "examples": [{"prompt": prompts[i], "response": texts[i]} for i in usable[:3]],
    }
    for variant in variants(args, TASKS[args.task]):
        explainer = build_explainer(variant.source, reward_model, **variant.options)
        explainer.explain(warm)  # shap compiles numba code on its first call; keep it out of the timing
        calls, sequences = reward_model.forward_calls, reward_model.sequences_scored
        policy_calls = getattr(explainer, "forward_calls", 0)
        wall, cpu = 0.0, 0.0
        credits: list[np.ndarray] = []
        for chunk in chunks:
            batch = ScoredBatch(
                [prompts[i] for i in chunk], [texts[i] for i in chunk], [offsets[i] for i in chunk], scores[chunk]
            )
            started, cpu_started = time.perf_counter(), time.process_time()
            credits += explainer.explain(batch)
            wall += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
        rhos: list[float] = []
        rho_by_response: list[float | None] = [None] * len(rows)
        constant_source = 0
        for i in usable:
            rho, constant = response_spearman(np.asarray(credits[i], dtype=np.float64), golds[i])
            rhos.append(rho)
            rho_by_response[i] = rho
            constant_source += constant
        n = len(rows)
        results[variant.label] = {
            "source": variant.source,
            "options": variant.options,
            "spearman": summarise(rhos),
            "responses_scored": len(rhos),
            "constant_source": constant_source,
            "positive_fraction": float(np.mean([r > 0 for r in rhos])) if rhos else None,
            "seconds_per_response": wall / n,
            "cpu_seconds_per_response": cpu / n,
            "rm_forward_calls_per_response": (reward_model.forward_calls - calls) / n,
            "rm_sequences_per_response": (reward_model.sequences_scored - sequences) / n,
            "policy_forward_calls_per_response": (getattr(explainer, "forward_calls", 0) - policy_calls) / n,
        }
        per_response[variant.label] = rho_by_response
        spearman = results[variant.label]["spearman"]
        print(
            f"  {variant.label:15s} median {fmt(spearman['median'])}  mean {fmt(spearman['mean'])}  "
            f"{wall / n * 1000:8.1f} ms/response  {results[variant.label]['rm_sequences_per_response']:6.1f} seq/response",
            flush=True,
        )
        report["settings"]["load_average_at_end"] = os.getloadavg()[0]
        write_outputs(merged(earlier, report), args)
    report["complete"] = True
    return merged(earlier, report)


SAME_RESPONSES = ("task", "policy", "reward_model", "responses", "max_new_tokens", "temperature", "seed")
"""Settings that must agree for rows of two runs to be merged (they were measured on the same responses)."""


def previous_report(args: argparse.Namespace) -> dict[str, Any] | None:
    """The existing outputs to merge the rows of an ``--only`` run into (None for a full run).

    Raises SystemExit when they were measured on other responses.
    """
    path = args.out_dir / output_name(args.task, "json")
    if not args.only or not path.is_file():
        return None
    earlier = json.loads(path.read_text())
    wanted = {
        "task": args.task, "policy": args.policy, "reward_model": args.reward, "seed": args.seed,
        "responses": args.responses + args.natural_replies, "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
    }
    differ = [key for key in SAME_RESPONSES if earlier["settings"].get(key, "demo" if key == "task" else None) != wanted[key]]
    if differ:
        raise SystemExit(f"--only: {path} was measured on other responses ({differ} differ); run without --only")
    return earlier


def merged(earlier: dict[str, Any] | None, report: dict[str, Any]) -> dict[str, Any]:
    """`report`'s rows put into `earlier` (rows of the same label replaced, new ones added at the end)."""
    if earlier is None:
        return report
    result = json.loads(json.dumps(earlier))
    result["sources"].update(report["sources"])
    result["per_response_spearman"].update(report["per_response_spearman"])
    runs = result["settings"].setdefault("merged_runs", [])
    runs.append({"rows": list(report["sources"]), **{k: report["settings"][k] for k in MERGED_RUN_SETTINGS}})
    return result


MERGED_RUN_SETTINGS = ("torch_threads", "load_average_at_start", "load_average_at_end")


LOAD_AT_START = os.getloadavg()[0]


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    name = s.get("task", "demo")
    task = TASKS[name]
    lines = [
        f"# Credit-assignment fidelity on the {name} task",
        "",
        f"{report['responses_total']} sampled responses (temperature {s['temperature']}, <= {s['max_new_tokens']} new tokens, "
        f"mean {report['mean_policy_tokens']:.1f} policy tokens) of `{s['policy']}` to {name} prompts, explained on "
        f"`{s['reward_model']}`; gold = {task.gold} on the same policy tokens. "
        f"{report['responses_scored']} responses have non-constant gold credit and are scored; "
        f"{report['responses_constant_gold']} with constant gold credit (no scoring word) are left out"
        + (f", {report['responses_unsplittable']} whose gold could not be split into words" if report["responses_unsplittable"] else "")
        + ". A source whose credit is constant on a scored response counts as Spearman 0 (the same rule on every task).",
        "",
        f"torch {s['torch']}, {s['torch_threads']} thread(s), {s['cpu_count']} CPUs, load average "
        f"{s['load_average_at_start']:.1f} at start / {s['load_average_at_end']:.1f} at end (shared machine: "
        "seconds are upper bounds).",
        "",
        "| source | Spearman median | mean | IQR | rho > 0 | constant | s / response | RM forwards / response | RM sequences / response | policy forwards / response |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in report["sources"].items():
        sp = row["spearman"]
        iqr = "n/a" if sp["q25"] is None else f"[{sp['q25']:+.2f}, {sp['q75']:+.2f}]"
        positive = "n/a" if row["positive_fraction"] is None else f"{row['positive_fraction']:.0%}"
        lines.append(
            f"| {label} | {fmt(sp['median'])} | {fmt(sp['mean'])} | {iqr} | {positive} | {row['constant_source']} | "
            f"{row['seconds_per_response']:.3f} | {row['rm_forward_calls_per_response']:.2f} | "
            f"{row['rm_sequences_per_response']:.1f} | {row.get('policy_forward_calls_per_response', 0.0):.2f} |"
        )
    for run in s.get("merged_runs", []):
        lines.append(
            f"\nRows {', '.join(run['rows'])} measured in a later run on the same responses ({run['torch_threads']} "
            f"thread(s), load average {run['load_average_at_start']:.1f} at start / {run['load_average_at_end']:.1f} at end)."
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> Path:
    """Box plot of per-response Spearman by source, plus cost on a second panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(report["sources"])
    data = [[r for r in report["per_response_spearman"][label] if r is not None] for label in labels]
    costs = [report["sources"][label]["seconds_per_response"] for label in labels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    left.boxplot(data, showmeans=True)
    left.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right")
    left.axhline(0.0, color="grey", linewidth=0.8)
    left.set_ylabel("Spearman(source credit, gold credit)")
    left.set_title(f"per-response rank agreement ({report['responses_scored']} responses)")
    right.barh(labels, [max(c, 1e-4) for c in costs])
    right.set_xscale("log")
    right.invert_yaxis()
    right.set_xlabel("seconds / response (log)")
    right.set_title("cost")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="demo", choices=sorted(TASKS))
    parser.add_argument("--policy", default=None, help="default: the task's policy")
    parser.add_argument("--reward", default=None, help="default: the task's reward model")
    parser.add_argument("--responses", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's (demo 28, gym 64)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (PPO's default)")
    parser.add_argument("--generation-batch", type=int, default=16)
    parser.add_argument("--shap-budgets", type=int, nargs=2, default=[16, 64], metavar="MAX_EVALS")
    parser.add_argument("--lime-budgets", type=int, nargs=2, default=[16, 64], metavar="NUM_SAMPLES")
    parser.add_argument("--ig-steps", type=int, nargs="+", default=[4, 16], metavar="N_STEPS")
    parser.add_argument("--only", nargs="+", default=None, metavar="LABEL", help="measure only these rows and merge them")
    parser.add_argument("--explain-batch", type=int, default=16, help="responses per explained batch (PPO-sized)")
    parser.add_argument("--rm-batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=None, help="default: docs/fidelity.png (docs/fidelity_<task>.png)")
    parser.add_argument("--responses-cache", type=Path, default=None, help="default: <out-dir>/fidelity_responses.json")
    parser.add_argument("--natural-replies", type=int, default=0, help="also explain this many hand-written kit replies")
    parser.add_argument(
        "--smoke", action="store_true",
        help="the task's smoke models (demo: builtin tiny models, 3 sampled + 3 hand-written replies; gym: its own "
        "models, 6 sampled replies), 10-token responses, tiny budgets",
    )
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    args.policy = args.policy or task.policy
    args.reward = args.reward or task.reward
    args.max_new_tokens = args.max_new_tokens or task.max_new_tokens
    if args.smoke:
        args.policy, args.reward = task.smoke_models
        args.max_new_tokens, args.generation_batch = 10, 3
        args.responses, args.natural_replies = (3, 3) if task.natural_replies else (6, 0)
        args.shap_budgets, args.lime_budgets, args.explain_batch, args.ig_steps = [8, 12], [8, 12], 3, [2]
    if args.plot is None:
        args.plot = DOCS / output_name(args.task, "png")
    if args.responses_cache is None:
        args.responses_cache = args.out_dir / output_name(args.task, "json", "_responses")
    return args


def write_outputs(report: dict[str, Any], args: argparse.Namespace) -> None:
    """JSON, table and plot of the sources measured so far (rewritten after every source)."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / output_name(args.task, "json")).write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / output_name(args.task, "md")).write_text(markdown(report))
    plot(report, args.plot)


def output_name(task: str, extension: str, suffix: str = "") -> str:
    """``fidelity<suffix>.<extension>`` for the demo, ``fidelity_<task><suffix>.<extension>`` for another task."""
    return f"fidelity{'' if task == 'demo' else '_' + task}{suffix}.{extension}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    write_outputs(report, args)
    print(f"wrote {args.out_dir / output_name(args.task, 'json')}, {output_name(args.task, 'md')} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
