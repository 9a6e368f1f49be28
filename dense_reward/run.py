"""The run of one weight vector: models, prompts and dense reward built from a config, then PPO epochs.

Usable on its own, from a notebook or a script, without Ray or MLflow::

    from dense_reward.config import load_config
    from dense_reward.run import Run

    run = Run(load_config("my.yaml"), weights={"attention": 0.8, "sparse": 0.2})
    for epoch in range(1, run.config.ppo.epochs + 1):
        train_metrics = run.train_epoch(epoch)
        evaluation = run.evaluate()          # val_reward, val_reward_sem, gold_reward, samples
    run.save("checkpoints/epoch-3")

A Ray Tune trial (`tune_jobs.trainable`) is this loop plus reporting and checkpoints, and final
training (`tune_jobs.final`) continues a saved run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from dense_reward.attribution.align import policy_token_offsets
from dense_reward.builtin.registry import gold_scorer
from dense_reward.config import Config, ModelsConfig, PPOConfig
from dense_reward.data import load_prompts
from dense_reward.evaluation import evaluate
from dense_reward.models import load_policy, load_reference, resolve_model_paths
from dense_reward.ppo.trainer import PPOTrainer, RewardFn, seed_everything
from dense_reward.ppo.value import load_critic
from dense_reward.reward_model import RewardModel
from dense_reward.shaping import DenseReward, resolve_weights
from dense_reward.viz import HeatmapSection, token_labels

RUN_STATE_FILE = "run_state.json"
"""Written by `Run.save` beside the PPO state: the epoch reached, the weights and the seed (plus extras)."""


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------


@dataclass
class PolicyModels:
    """The models PPO trains or reads: policy (+ tokenizer), frozen reference, separate critic."""

    policy: nn.Module
    tokenizer: Any
    reference: nn.Module | None
    """None = a frozen copy of the policy, or the policy with adapters off under LoRA."""
    critic: nn.Module | None
    """None = a value head on the policy (`models.value.head_on_policy`)."""


def load_models(models: ModelsConfig, seed: int) -> PolicyModels:
    """Load policy, reference and critic as the `models` section says; LoRA and head init seeded by `seed`.

    `builtin:` models are built before seeding: building one draws random numbers, and a run must not
    depend on whether its models were already in the cache.
    """
    resolve_model_paths(models)
    seed_everything(seed)
    policy, tokenizer = load_policy(models.policy, models.lora)
    reference = load_reference(policy, models.reference)
    critic = None
    if not models.value.head_on_policy:
        critic = load_critic(models.value.init, models.policy, models.reward, tokenizer, models.lora)
    return PolicyModels(policy, tokenizer, reference, critic)


def build_trainer(config: Config, reward_fn: RewardFn, total_steps: int | None = None) -> PPOTrainer:
    """A `PPOTrainer` on the models `config.models` names, with `config.ppo` and the given reward."""
    models = load_models(config.models, config.ppo.seed)
    return PPOTrainer(
        config.ppo,
        models.policy,
        models.tokenizer,
        reward_fn,
        reference=models.reference,
        critic=models.critic,
        total_steps=total_steps,
    )


def epoch_batches(prompts: list[str], ppo: PPOConfig, epoch: int) -> list[list[str]]:
    """The prompt batches of one epoch: a reshuffle per epoch, seeded so a resumed run sees the same order.

    `ppo.steps_per_epoch` batches of `ppo.batch_size` prompts (one pass over `prompts` when unset).
    """
    rng = np.random.default_rng([ppo.seed, epoch])
    order = rng.permutation(len(prompts))
    steps = ppo.steps_per_epoch or math.ceil(len(prompts) / ppo.batch_size)
    # Cycle through the shuffled prompts when steps_per_epoch asks for more than one pass.
    return [
        [prompts[order[(step * ppo.batch_size + i) % len(prompts)]] for i in range(ppo.batch_size)]
        for step in range(steps)
    ]


def mean_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the steps of an epoch."""
    keys = {key for metrics in history for key in metrics}
    return {key: float(np.mean([m[key] for m in history if key in m])) for key in sorted(keys)}


def read_run_state(directory: str | Path) -> dict[str, Any]:
    """The `RUN_STATE_FILE` of a saved run (epoch, weights, seed, extras), without loading any model."""
    path = Path(directory) / RUN_STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        from dense_reward.ppo.checkpoint import CheckpointError

        raise CheckpointError(f"{path}: cannot read the run state ({error})") from None


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


class Run:
    """PPO with one fixed weight vector: the models, prompts and dense reward of a config.

    Args:
        config: the library's sections (a `tune_jobs.config.SweepConfig` works too).
        weights: simplex weights over the sources; None = ``shaping.weights``, else all on `sparse`.
        seed: replaces ``seed`` and ``ppo.seed`` (initialisation, rollouts, explainers, sampled
            evaluation), e.g. for a confirmation re-run; the train/validation split (``data.seed``) stays.
        total_steps: PPO steps the learning rate decays over (see `PPOTrainer`).
    """

    def __init__(
        self,
        config: Config,
        weights: Mapping[str, float] | None = None,
        seed: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        if seed is not None:
            config = config.with_overrides({"seed": int(seed), "ppo.seed": int(seed)})
        resolve_weights(config.shaping, weights)  # bad weights fail before any model loads
        self.config = config
        models = load_models(config.models, config.ppo.seed)
        self.tokenizer = models.tokenizer
        self.splits = load_prompts(config.data, models.tokenizer)
        self.reward_model = RewardModel.from_spec(config.models.reward)
        self.reward = DenseReward(
            self.reward_model, models.tokenizer, config.shaping, weights, self.splits.raw, seed=config.seed
        )
        self.weights = self.reward.weights
        self.trainer = PPOTrainer(
            config.ppo,
            models.policy,
            models.tokenizer,
            self.reward,
            reference=models.reference,
            critic=models.critic,
            total_steps=total_steps,
        )
        self.gold_scorer = gold_scorer(config.evaluation.gold_scorer)
        self.epoch = 0
        """The last epoch trained (restored by `load`)."""
        self._every_source: DenseReward | None = None

    @property
    def validation_prompts(self) -> list[str]:
        """The validation prompts, at most `evaluation.max_prompts` of them."""
        limit = self.config.evaluation.max_prompts
        return list(self.splits.validation[:limit] if limit else self.splits.validation)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """PPO steps over the epoch's batches (see `epoch_batches`); the mean of each step metric."""
        batches = epoch_batches(self.splits.train, self.config.ppo, epoch)
        metrics = mean_metrics([self.trainer.step(batch) for batch in batches])
        self.epoch = epoch
        return metrics

    def train_steps(self, steps: int) -> Iterator[dict[str, float]]:
        """`steps` PPO steps on batches drawn without replacement from the whole training split.

        Yields each step's metrics as soon as the step is done (for live logging).
        """
        ppo = self.config.ppo
        rng = np.random.default_rng(ppo.seed)
        prompts = self.splits.train
        order: list[int] = []
        for _ in range(steps):
            if len(order) < ppo.batch_size:
                order += rng.permutation(len(prompts)).tolist()
            batch, order = [prompts[i] for i in order[: ppo.batch_size]], order[ppo.batch_size :]
            yield self.trainer.step(batch)

    def evaluate(self) -> dict[str, Any]:
        """`dense_reward.evaluation.evaluate` on the validation prompts: val_reward (+ sem), gold_reward, samples."""
        return evaluate(
            self.trainer.policy,
            self.tokenizer,
            self.validation_prompts,
            self.reward_model,
            self.config.evaluation,
            self.config.ppo,
            gold_scorer=self.gold_scorer,
            raw_prompts=self.splits.raw,
            seed=self.config.seed,
        )

    def heatmap_sections(self, samples: list[tuple[str, str]]) -> list[HeatmapSection]:
        """Per-token rewards of (prompt, response) samples: the shaped mix and every source, one section each."""
        if not samples:
            return []
        if self._every_source is None:
            # Every source, also those at weight 0, so the page shows what the mix left out.
            self._every_source = DenseReward(
                self.reward_model,
                self.tokenizer,
                self.config.shaping,
                self.weights,
                self.splits.raw,
                seed=self.config.seed,
                skip_zero_weight=False,
            )
        eos = self.tokenizer.eos_token_id
        token_ids = [self.tokenizer(response, add_special_tokens=False)["input_ids"] + [eos] for _, response in samples]
        sections = []
        for index, (prompt, _) in enumerate(samples):
            # One sample at a time: every source of several samples at once runs that many explainer threads
            # and RM batches together, the peak memory of a demo trial; credit does not depend on the batch.
            output = self._every_source([prompt], [token_ids[index]])
            text, offsets = policy_token_offsets(self.tokenizer, token_ids[index])
            rows = {"dense": output.dense[0]}
            rows.update({source: credit[0] for source, credit in output.attributions.items()})
            sections.append(
                HeatmapSection(
                    title=f"sample {index}",
                    tokens=token_labels(text, offsets),
                    rows=rows,
                    note=f"prompt: {prompt[-300:]}",
                    extra={
                        "reward": f"{output.scores[0]:.4f}",
                        "weights": ", ".join(f"{k}={v:.3f}" for k, v in self.weights.items()),
                    },
                )
            )
        return sections

    def save(self, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the PPO state (safetensors weights, optimizer, scheduler, RNG) and `RUN_STATE_FILE`."""
        directory = self.trainer.save(directory)
        state = {"epoch": self.epoch, "weights": self.weights, "seed": self.config.ppo.seed, **dict(extra or {})}
        (Path(directory) / RUN_STATE_FILE).write_text(json.dumps(state))
        return Path(directory)

    def load(self, directory: str | Path) -> dict[str, Any]:
        """Restore a directory written by `save`; returns its run state. Training continues as if unbroken."""
        state = read_run_state(directory)
        self.trainer.load(directory)
        self.epoch = int(state["epoch"])
        return state
