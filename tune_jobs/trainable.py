"""One Ray Tune trial = one short PPO run with the trial's mixing weights (and knobs) fixed.

The trial builds the models and prompts from the sweep's config, shapes rewards with its weights,
and after every PPO epoch measures ``val_reward`` (the search objective) on the validation prompts and
reports it with a checkpoint. A retried trial (its process died, or the driver was restarted)
continues from ``tune.get_checkpoint()`` instead of starting over. The trial logs to its own MLflow
child run (see :mod:`tune_jobs.tracking`).

Test-only fault hook: when the driver's environment has ``DENSE_REWARD_FAULT_KILL_AT_EPOCH=N`` and
``DENSE_REWARD_FAULT_MARKER=<file>``, the first trial to reach the start of epoch N creates the marker
file (holding its trial id) and SIGKILLs its own process, once per marker file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from dense_reward.config import Config, validate_config
from tune_jobs.search.space import WEIGHTS_KEY
from tune_jobs.tracking import TrackingTarget, TrialTracker, close_child

TRIAL_STATE_FILE = "trial_state.json"
"""Written into every checkpoint beside the PPO state: epoch, weights and knobs of the trial."""
FAULT_EPOCH_ENV = "DENSE_REWARD_FAULT_KILL_AT_EPOCH"
FAULT_MARKER_ENV = "DENSE_REWARD_FAULT_MARKER"
REPORTED = (
    "val_reward",
    "train_reward",
    "value_loss",
    "policy_loss",
    "kl",
    "entropy",
    "attribution_seconds",
    "step_seconds",
)
"""Per-epoch metrics every trial reports (plus `gold_reward` when a gold scorer is configured)."""


@dataclass(frozen=True)
class FaultHook:
    """Kill the trial process at the start of `epoch`, once for all trials sharing `marker`."""

    epoch: int
    marker: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultHook | None:
        """The hook the environment asks for, or None (always, outside the fault tests)."""
        environ = os.environ if environ is None else environ
        epoch, marker = environ.get(FAULT_EPOCH_ENV), environ.get(FAULT_MARKER_ENV)
        if not epoch or not marker:
            return None
        return cls(epoch=int(epoch), marker=marker)

    def maybe_fire(self, epoch: int, trial_id: str) -> None:
        """SIGKILL this process if it is the first to reach `epoch` (the marker file is created atomically)."""
        if epoch != self.epoch:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, trial_id.encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares, handed to the trial function by `tune.with_parameters`."""

    config: dict[str, Any]
    """The sweep's `Config` as a plain dict (validated again in the trial)."""
    tracking: TrackingTarget | None
    fault: FaultHook | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Environment the trial process needs from the driver (e.g. `DENSE_REWARD_CACHE`)."""


def trial_run_config(base: Config, trial: Mapping[str, Any]) -> Config:
    """The sweep config with the trial's weights in `shaping.weights` and its knobs (dotted names) applied."""
    overrides: dict[str, Any] = {key: float(value) for key, value in trial.items() if key != WEIGHTS_KEY}
    weights = {source: float(value) for source, value in trial[WEIGHTS_KEY].items()}
    total = sum(weights.values())
    # Searchers hand back floats summing to 1 up to rounding; the config check is strict at 1e-6.
    overrides["shaping.weights"] = {source: value / total for source, value in weights.items()}
    return base.with_overrides(overrides)


def epoch_batches(prompts: list[str], config: Config, epoch: int) -> list[list[str]]:
    """The prompt batches of one epoch: a reshuffle per epoch, seeded so a resumed trial sees the same order."""
    rng = np.random.default_rng([config.ppo.seed, epoch])
    order = rng.permutation(len(prompts))
    batch_size = config.ppo.batch_size
    steps = config.ppo.steps_per_epoch or math.ceil(len(prompts) / batch_size)
    batches = []
    for step in range(steps):
        # Cycle through the shuffled prompts when steps_per_epoch asks for more than one pass.
        rows = [order[(step * batch_size + i) % len(prompts)] for i in range(batch_size)]
        batches.append([prompts[r] for r in rows])
    return batches


def mean_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the steps of an epoch."""
    keys = {key for metrics in history for key in metrics}
    return {key: float(np.mean([m[key] for m in history if key in m])) for key in sorted(keys)}


class TrialRun:
    """The models, data and reward of one trial: `train` runs PPO steps, `evaluate` measures val_reward.

    Also used by :mod:`tune_jobs.final` to continue training the best trial.
    """

    def __init__(self, config: Config, total_steps: int | None = None) -> None:
        from dense_reward.data import load_prompts
        from dense_reward.evaluation import gold_scorer_from_config
        from dense_reward.models import load_tokenizer
        from dense_reward.ppo import PPOTrainer
        from dense_reward.reward_model import RewardModel
        from dense_reward.shaping import DenseReward

        self.config = config
        tokenizer = load_tokenizer(config.models.policy, "models.policy", padding_side="left")
        self.splits = load_prompts(config.data, tokenizer)
        self.reward_model = RewardModel.from_spec(config.models.reward)
        self.reward_model.prompt_texts = self.splits.raw
        self.dense_reward = DenseReward.from_config(config, self.reward_model, tokenizer)
        self.trainer = PPOTrainer.from_config(config, self.dense_reward, total_steps=total_steps)
        self.gold_scorer = gold_scorer_from_config(config)
        self.all_sources: DenseReward | None = None

    @property
    def validation_prompts(self) -> list[str]:
        limit = self.config.evaluation.max_prompts
        return list(self.splits.validation[:limit] if limit else self.splits.validation)

    def train(self, batches: list[list[str]]) -> dict[str, float]:
        """One PPO step per batch; the epoch's mean step metrics."""
        return mean_metrics([self.trainer.step(batch) for batch in batches])

    def evaluate(self) -> dict[str, Any]:
        """`dense_reward.evaluation.evaluate` on the validation prompts (val_reward, gold_reward, samples)."""
        from dense_reward.evaluation import evaluate

        return evaluate(
            self.trainer.policy,
            self.trainer.tokenizer,
            self.validation_prompts,
            self.reward_model,
            self.config,
            gold_scorer=self.gold_scorer,
        )

    def heatmaps(self, samples: list[tuple[str, str]], title: str) -> str | None:
        """An HTML page of per-token rewards (the shaped mix and every source) for (prompt, response) samples."""
        from dense_reward.attribution.align import policy_token_offsets
        from dense_reward.shaping import DenseReward
        from dense_reward.viz import HeatmapSection, heatmap_page, token_labels

        if not samples:
            return None
        if self.all_sources is None:
            # Every source, also those at weight 0, so the page shows what the mix left out.
            self.all_sources = DenseReward.from_config(
                self.config, self.reward_model, self.trainer.tokenizer, skip_zero_weight=False
            )
        tokenizer = self.trainer.tokenizer
        token_ids = [
            tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for _, response in samples
        ]
        output = self.all_sources([prompt for prompt, _ in samples], token_ids)
        weights = self.config.shaping.weights or {}
        sections = []
        for index, (prompt, _) in enumerate(samples):
            text, offsets = policy_token_offsets(tokenizer, token_ids[index])
            rows = {"dense": output.dense[index]}
            rows.update({source: credit[index] for source, credit in output.attributions.items()})
            sections.append(
                HeatmapSection(
                    title=f"sample {index}",
                    tokens=token_labels(text, offsets),
                    rows=rows,
                    note=f"prompt: {prompt[-300:]}",
                    extra={
                        "reward": f"{output.scores[index]:.4f}",
                        "weights": ", ".join(f"{k}={v:.3f}" for k, v in weights.items()),
                    },
                )
            )
        return heatmap_page(sections, title=title)


def _metrics_of_epoch(train: dict[str, float], evaluation: Mapping[str, Any], epoch: int) -> dict[str, float]:
    metrics = {key: float(train[key]) for key in REPORTED if key in train}
    metrics["val_reward"] = float(evaluation["val_reward"])
    if evaluation.get("gold_reward") is not None:
        metrics["gold_reward"] = float(evaluation["gold_reward"])
    metrics["epoch"] = epoch
    return metrics


def train_trial(trial: dict[str, Any], setup: TrialSetup) -> None:
    """The Ray Tune function trainable: PPO epochs with the trial's weights, reporting after each one."""
    import torch

    os.environ.update(setup.env)
    config = trial_run_config(validate_config(setup.config, source="sweep config"), trial)
    threads = config.resources.torch_threads or max(1, int(config.resources.cpus_per_trial))
    torch.set_num_threads(threads)
    context = tune.get_context()
    trial_id = context.get_trial_id() or "local"
    trial_name = context.get_trial_name() or trial_id

    checkpoint = tune.get_checkpoint()
    start_epoch = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start_epoch = int(json.loads((Path(directory) / TRIAL_STATE_FILE).read_text())["epoch"])
    if start_epoch >= config.ppo.epochs:
        # The trial had finished when the driver died, before Ray recorded it: nothing to redo.
        if setup.tracking is not None:
            close_child(setup.tracking, trial_id)
        return
    run = TrialRun(config)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            run.trainer.load(directory)

    tracker = None
    if setup.tracking is not None:
        tracker = TrialTracker(setup.tracking, trial_id, trial_name)
        tracker.log_start(trial, node_id=ray.get_runtime_context().get_node_id())

    for epoch in range(start_epoch + 1, config.ppo.epochs + 1):
        if setup.fault is not None:
            setup.fault.maybe_fire(epoch, trial_id)
        train_metrics = run.train(epoch_batches(run.splits.train, config, epoch))
        evaluation = run.evaluate()
        metrics = _metrics_of_epoch(train_metrics, evaluation, epoch)
        metrics["resumed_from_epoch"] = start_epoch
        with tempfile.TemporaryDirectory(prefix="dense-reward-ckpt-") as directory:
            run.trainer.save(directory)
            state = {"epoch": epoch, "trial_id": trial_id, "trial": trial}
            (Path(directory) / TRIAL_STATE_FILE).write_text(json.dumps(state))
            if tracker is not None:
                tracker.log_epoch(epoch, metrics)
                page = run.heatmaps(evaluation.get("samples", []), title=f"{trial_name}, epoch {epoch}")
                if page is not None:
                    tracker.log_text(page, f"heatmaps/epoch_{epoch:03d}.html")
            # The driver tags the MLflow run with the checkpoint once Ray has persisted it.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
    if tracker is not None:
        tracker.finish("FINISHED")
