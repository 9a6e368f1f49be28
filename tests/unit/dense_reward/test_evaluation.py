"""evaluate / win_rate on the tiny GPT-2 and the tiny BERT reward model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dense_reward.config import Config
from dense_reward.evaluation import EvaluationError, evaluate, win_rate
from dense_reward.models import load_policy
from dense_reward.reward_model import RewardModel

PROMPTS = [
    "Hello there friend",
    "The day is good",
    "Tell me a story",
    "What is the time",
    "Say something kind",
]


class LengthScorer:
    """Scores a response by its length in characters: longer wins."""

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        return torch.tensor([float(len(r)) for r in responses])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_policy_spec):
    policy, tokenizer = load_policy(tiny_policy_spec)
    return policy.eval(), tokenizer


@pytest.fixture(scope="module")
def reward_model(tiny_rm_spec) -> RewardModel:
    return RewardModel.from_spec(tiny_rm_spec)


def eval_config(tiny_config: Config, **evaluation: object) -> Config:
    overrides = {"evaluation.max_prompts": None, "evaluation.batch_size": 2, "ppo.max_new_tokens": 6}
    overrides.update({f"evaluation.{k}": v for k, v in evaluation.items()})
    return tiny_config.with_overrides(overrides)


def sections(config: Config):
    """The two sections `evaluate` reads."""
    return config.evaluation, config.ppo


def always_eos(policy):
    """A copy of `policy` whose greedy response is EOS at once (an empty text)."""
    copied = copy.deepcopy(policy)
    eos = copied.config.eos_token_id

    def hook(module, inputs, logits):
        logits[..., eos] += 1e4
        return logits

    copied.lm_head.register_forward_hook(hook)
    return copied


def test_val_reward_is_the_mean_rm_score_of_greedy_responses(tiny, reward_model, tiny_config) -> None:
    policy, tokenizer = tiny
    config = eval_config(tiny_config, heatmap_samples=2)
    gold_calls: list[list[str]] = []

    def gold(texts: list[str]) -> np.ndarray:
        gold_calls.append(texts)
        return np.array([float(len(t)) for t in texts])

    result = evaluate(policy, tokenizer, PROMPTS, reward_model, config.evaluation, config.ppo, gold_scorer=gold)
    responses = gold_calls[0]
    assert len(responses) == len(PROMPTS) and any(responses)
    expected = reward_model.score(PROMPTS, responses).double().numpy()
    assert result["val_reward"] == pytest.approx(expected.mean(), abs=1e-6)
    assert result["scores"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert result["val_reward_sem"] == pytest.approx(expected.std(ddof=1) / np.sqrt(len(PROMPTS)), rel=1e-5)
    assert result["gold_reward"] == pytest.approx(np.mean([len(t) for t in responses]))
    assert result["samples"] == list(zip(PROMPTS[:2], responses[:2], strict=True))
    assert result["num_prompts"] == len(PROMPTS)
    # Greedy decoding: a second evaluation gives the same number, with no gold scorer no gold reward.
    again = evaluate(policy, tokenizer, PROMPTS, reward_model, config.evaluation, config.ppo)
    assert again["val_reward"] == result["val_reward"]
    assert again["gold_reward"] is None


def test_sampled_evaluation_is_seeded_and_leaves_the_global_rng_alone(tiny, reward_model, tiny_config) -> None:
    policy, tokenizer = tiny
    config = eval_config(tiny_config, greedy=False).with_overrides({"ppo.max_new_tokens": 12})
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = evaluate(policy, tokenizer, PROMPTS, reward_model, *sections(config), seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    again = evaluate(policy, tokenizer, PROMPTS, reward_model, *sections(config), seed=1)
    other = evaluate(policy, tokenizer, PROMPTS, reward_model, *sections(config), seed=2)
    assert first["samples"] == again["samples"] and first["scores"] == again["scores"]
    assert first["scores"] != other["scores"]


def test_max_prompts_caps_the_validation_set(tiny, reward_model, tiny_config) -> None:
    policy, tokenizer = tiny
    result = evaluate(policy, tokenizer, PROMPTS, reward_model, *sections(eval_config(tiny_config, max_prompts=3)))
    assert result["num_prompts"] == 3 and len(result["scores"]) == 3


def test_bad_gold_scores_and_empty_prompts_raise(tiny, reward_model, tiny_config) -> None:
    policy, tokenizer = tiny
    config = eval_config(tiny_config)
    with pytest.raises(EvaluationError, match="gold scorer: expected 5 scores"):
        evaluate(policy, tokenizer, PROMPTS, reward_model, *sections(config), gold_scorer=lambda texts: np.zeros(2))
    with pytest.raises(
        EvaluationError, match=r"gold scorer: scores of response\(s\) \[0, 1, 2, 3, 4\] are not finite"
    ):
        evaluate(
            policy, tokenizer, PROMPTS, reward_model, *sections(config), gold_scorer=lambda t: np.full(len(t), np.nan)
        )
    with pytest.raises(EvaluationError, match="no validation prompts"):
        evaluate(policy, tokenizer, [], reward_model, config.evaluation, config.ppo)


def test_win_rate(tiny, tiny_config) -> None:
    policy, tokenizer = tiny
    config = eval_config(tiny_config)
    # Against itself every greedy comparison is a tie.
    assert win_rate(policy, policy, tokenizer, PROMPTS, LengthScorer(), config.evaluation, config.ppo) == 0.5
    # A policy that answers with EOS at once loses every length comparison, and its reference wins.
    mute = always_eos(policy)
    assert win_rate(mute, policy, tokenizer, PROMPTS, LengthScorer(), config.evaluation, config.ppo) == 0.0
    assert win_rate(policy, mute, tokenizer, PROMPTS, LengthScorer(), config.evaluation, config.ppo) == 1.0


def test_win_rate_against_disabled_adapters(tiny_policy_spec, tiny_config) -> None:
    config = eval_config(tiny_config).with_overrides({"models.lora.enabled": True})
    policy, tokenizer = load_policy(tiny_policy_spec, config.models.lora)
    # Fresh adapters are zero: the policy is its own reference.
    assert win_rate(policy, None, tokenizer, PROMPTS, LengthScorer(), config.evaluation, config.ppo) == 0.5
    plain, _ = load_policy(tiny_policy_spec)
    with pytest.raises(EvaluationError, match="needs a peft policy"):
        win_rate(plain, None, tokenizer, PROMPTS, LengthScorer(), config.evaluation, config.ppo)

