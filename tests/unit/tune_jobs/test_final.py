"""Pieces of final training that need no sweep: the saved Hugging Face folder, argument checks.

The whole `dense-reward final` path (best checkpoint -> PPO -> registered model version) runs in
tests/e2e/test_sweep_e2e.py on a real sweep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from dense_reward.config import Config
from dense_reward.errors import UserError
from dense_reward.run import Run
from tune_jobs.final import run_final, save_hf_folder, step_line


def small(config: Config, **overrides: object) -> Config:
    return config.with_overrides(
        {"shaping.sources": ["sparse", "attention"], "shaping.weights": {"sparse": 0.5, "attention": 0.5}, **overrides}
    )


@pytest.mark.parametrize("merge", [True, False])
def test_lora_policy_is_saved_merged_or_as_adapters(tiny_config: Config, tmp_path: Path, merge: bool) -> None:
    config = small(tiny_config, **{"models.lora.enabled": True})
    run = Run(config)
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


def test_a_step_line_gives_the_step_its_metrics_and_the_time_left() -> None:
    line = step_line(3, 50, {"train_reward": 0.41234, "kl": 0.021}, elapsed=60.0)
    assert line == "step 3/50: train_reward 0.4123  kl 0.0210  20.0 s/step, about 15 min 40 s left"
    assert step_line(50, 50, {"train_reward": 0.5, "kl": 0.0}, elapsed=100.0).endswith("2.0 s/step, about 0 s left")
