"""Pieces of final training that need no sweep: the fresh LR schedule and the saved Hugging Face folder.

The whole `dense-reward final` path (best checkpoint -> PPO -> registered model version) runs in
tests/test_sweep_e2e.py on a real sweep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from dense_reward.config import Config
from dense_reward.errors import UserError
from tune_jobs.final import fresh_schedule, run_final, save_hf_folder
from tune_jobs.trainable import TrialRun


def small(config: Config, **overrides: object) -> Config:
    return config.with_overrides(
        {"shaping.sources": ["sparse", "attention"], "shaping.weights": {"sparse": 0.5, "attention": 0.5}, **overrides}
    )


def test_fresh_schedule_restarts_a_spent_learning_rate(tiny_config: Config) -> None:
    config = small(tiny_config, **{"ppo.lr_schedule": "linear"})
    run = TrialRun(config)
    optimizer = run.trainer.optimizer
    for _ in range(config.ppo.epochs * config.ppo.steps_per_epoch * config.ppo.update_epochs):
        optimizer.step()
        run.trainer.scheduler.step()
    assert run.trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0)

    fresh_schedule(run, steps=3)
    assert run.trainer.scheduler.get_last_lr()[0] == pytest.approx(config.ppo.learning_rate)
    run.trainer.step(run.splits.train[: config.ppo.batch_size])
    # Linear decay over 3 PPO steps of one optimiser step each: 2/3 of the rate is left after one.
    assert run.trainer.scheduler.get_last_lr()[0] == pytest.approx(config.ppo.learning_rate * 2 / 3)


@pytest.mark.parametrize("merge", [True, False])
def test_lora_policy_is_saved_merged_or_as_adapters(tiny_config: Config, tmp_path: Path, merge: bool) -> None:
    config = small(tiny_config, **{"models.lora.enabled": True})
    run = TrialRun(config)
    out = save_hf_folder(run, tmp_path / "model", merge_lora=merge, extra={"weights": {"sparse": 1.0}})
    assert (out / "dense_reward.json").is_file()
    assert (out / "tokenizer_config.json").is_file()
    if merge:
        assert not (out / "adapter_config.json").exists()
        model = AutoModelForCausalLM.from_pretrained(out)
        assert not any("lora" in name for name, _ in model.named_parameters())
    else:
        assert (out / "adapter_config.json").is_file()
        assert (out / "adapter_model.safetensors").is_file()


def test_steps_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--steps must be >= 1"):
        run_final(tmp_path, steps=0)
