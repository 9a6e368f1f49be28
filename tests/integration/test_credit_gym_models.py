"""The credit gym's built models through the normal loading path: the RM agrees with the gold on held-out texts.

Threshold: Pearson and Spearman correlation of the RM score with the gold reward >= 0.8, on texts the
RM was not fitted to (chain texts of another seed) and on responses the gym policy writes itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dense_reward.builtin.gym import models, task
from dense_reward.builtin.registry import resolve_model
from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.models import load_policy
from dense_reward.ppo.rollout import generate
from dense_reward.reward_model import RewardModel

AGREEMENT_THRESHOLD = 0.8
"""Least Pearson and Spearman correlation of the gym RM with the gold on held-out texts."""

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def reward_model() -> RewardModel:
    return RewardModel.from_spec(
        RewardModelSpec(path="builtin:credit-gym-rm", max_length=128, batch_size=256)
    )


def test_the_reward_model_agrees_with_the_gold_on_held_out_texts(reward_model: RewardModel) -> None:
    # Seed 1 made the RM's training texts; seed 11 draws texts it never saw.
    prompts, responses = models.reward_model_samples(400, seed=11)
    scores = reward_model.score(prompts, responses).double().numpy()
    result = models.agreement(scores, task.gold_reward(responses))
    assert result["pearson"] >= AGREEMENT_THRESHOLD and result["spearman"] >= AGREEMENT_THRESHOLD, result
    # The build recorded its own held-out agreement beside the weights.
    recorded = json.loads((resolve_model("credit-gym-rm") / "agreement.json").read_text())["heldout"]
    assert recorded["spearman"] >= AGREEMENT_THRESHOLD and recorded["samples"] == models.RM_HELDOUT_SAMPLES


def test_the_policy_writes_varied_full_length_responses_the_rm_ranks_like_the_gold(
    reward_model: RewardModel, one_torch_thread: None
) -> None:
    policy, tokenizer = load_policy(ModelSpec(path="builtin:credit-gym-policy"))
    prompts = [row["prompt"] for row in task.prompt_rows()[:128]]
    torch.manual_seed(0)
    rollout = generate(policy, tokenizer, prompts, max_new_tokens=64)
    responses = tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)
    # The policy never saw a special token as a target: nearly all responses run to the cap (an early
    # [EOS] or a stray special token, which decodes to nothing, now and then; 4 early ends when built).
    lengths = [len(text.split()) for text in responses]
    assert max(lengths) == 64 and sum(n >= 60 for n in lengths) >= 0.95 * len(prompts)
    assert sum(lengths) >= 0.97 * 64 * len(prompts)
    assert set(" ".join(responses).split()) <= set(task.world().words)
    assert len(set(responses)) == len(responses)
    gold = task.gold_reward(responses)
    assert gold.std() > 0.2
    result = models.agreement(reward_model.score(prompts, responses).double().numpy(), gold)
    assert result["pearson"] >= AGREEMENT_THRESHOLD and result["spearman"] >= AGREEMENT_THRESHOLD, result
    # The policy learned the chain: the median chain probability of its word-to-word steps is far above
    # that of uniformly random words (0.0026); the chain's own text has 0.034, the built policy about 0.022.
    index = task.world().index
    transitions = task.world().transitions
    steps = [
        transitions[index[a], index[b]]
        for text in responses
        for a, b in zip(text.split(), text.split()[1:], strict=False)
    ]
    assert np.median(steps) > 1 / task.VOCAB_SIZE
