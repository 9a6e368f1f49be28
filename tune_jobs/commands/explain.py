"""`dense-reward explain --config C --prompt P --response R [--weights JSON] [--html FILE]`.

Scores one response with the config's reward model, shows every configured source's per-token
credit and the shaped dense reward (coloured in a terminal), and optionally writes a heatmap page.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from dense_reward.attribution import policy_token_offsets
from dense_reward.errors import UserError
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel
from dense_reward.shaping import DenseReward
from dense_reward.viz import (
    HeatmapSection,
    terminal_heatmap,
    terminal_table,
    token_labels,
    write_heatmap_html,
)
from tune_jobs.config import load_sweep_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config (models.reward, models.policy, shaping)")
    parser.add_argument("--prompt", required=True, help="prompt text, as the reward model sees it")
    parser.add_argument("--response", required=True, help="response text (tokenised with the policy tokenizer)")
    parser.add_argument(
        "--weights",
        help='mixing weights as JSON, e.g. \'{"attention": 0.8, "sparse": 0.2}\' '
        "(default: shaping.weights, else all on sparse)",
    )
    parser.add_argument("--html", metavar="FILE", help="also write a heatmap page to FILE")
    parser.add_argument(
        "--color", choices=["auto", "always", "never"], default="auto", help="colour the tokens (auto: on a terminal)"
    )


def parse_weights(text: str | None) -> dict[str, float] | None:
    """The ``--weights`` JSON object, or None when not given."""
    if text is None:
        return None
    try:
        weights = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"--weights: not valid JSON ({error.msg}): {text!r}") from None
    if not isinstance(weights, dict) or not all(isinstance(v, int | float) for v in weights.values()):
        raise UserError(f'--weights: expected an object of numbers like {{"sparse": 1.0}}, got {text!r}')
    return {str(k): float(v) for k, v in weights.items()}


def run(args: argparse.Namespace) -> int:
    config = load_sweep_config(args.config)
    weights = parse_weights(args.weights)
    if weights is not None:
        # Weighted sources outside the config's list are still explained, so the mix can be tried.
        extra = [k for k in weights if k not in config.shaping.sources]
        config = config.with_overrides({"shaping.sources": [*config.shaping.sources, *extra], "shaping.weights": None})
    reward_model = RewardModel.from_spec(config.models.reward)
    tokenizer = load_tokenizer(config.models.policy, "models.policy")
    token_ids = tokenizer.encode(args.response, add_special_tokens=False) + [tokenizer.eos_token_id]
    reward = DenseReward(reward_model, tokenizer, config.shaping, weights, seed=config.seed, skip_zero_weight=False)
    out = reward([args.prompt], [token_ids])

    text = out.responses[0]
    _, offsets = policy_token_offsets(tokenizer, token_ids)
    tokens = token_labels(text, offsets)
    rows = {name: values[0] for name, values in out.attributions.items()}
    rows["dense"] = out.dense[0]
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    mix = ", ".join(f"{k}={v:g}" for k, v in reward.weights.items() if v > 0)
    print(f"reward r = {out.scores[0]:+.5f}   weights: {mix}   normalize: {reward.normalize} (tau {reward.tau:g})")
    print(f"{len(tokens)} policy tokens; attribution took {out.timings['attribution_seconds']:.2f}s\n")
    label_width = max(len(label) for label in rows)
    for label, values in rows.items():
        print(f"{label:>{label_width}}  {terminal_heatmap(tokens, values, colour=colour)}")
    print()
    print(terminal_table(tokens, rows))
    print(f"\nsum of dense = {float(np.sum(out.dense[0])):+.5f} (equals r)")
    if args.html:
        section = HeatmapSection(
            title=args.prompt[:120],
            tokens=tokens,
            rows=rows,
            extra={"reward": f"{out.scores[0]:+.5f}", "weights": mix, "normalize": reward.normalize},
            note="Rows: raw credit per source (before normalisation), then the shaped dense reward.",
        )
        path = write_heatmap_html(args.html, [section], title="dense-reward explain")
        print(f"wrote {path}")
    return 0
