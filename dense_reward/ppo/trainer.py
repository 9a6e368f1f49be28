"""PPO for causal LMs with a per-token (dense) reward, read top to bottom like CleanRL's `ppo.py`.

One call to `PPOTrainer.step(prompts)` runs the four phases:

1. rollout:    sample responses (left padding, stop at EOS, mask everything after it), then one forward
               pass each for policy log-probs (at the sampling temperature), reference log-probs and values;
2. reward:     `reward_fn(prompts, response_token_ids)` gives one dense reward per response token; then
               reward_t = dense_t - kl_coef * KL_t (k1 or k3), an optional missing-EOS penalty, optional
               reward whitening;
3. advantages: GAE over each response, advantage whitening;
4. update:     `update_epochs` passes over shuffled minibatches (with gradient accumulation) of the
               clipped policy loss + vf_coef * clipped value loss - ent_coef * entropy; gradient
               clipping, AdamW, LR schedule.

Implementation details follow Huang et al., "The N+ Implementation Details of RLHF with PPO"
(arXiv 2403.17031, https://arxiv.org/abs/2403.17031).
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dense_reward.config import PPOConfig
from dense_reward.errors import ConfigWarning
from dense_reward.models import is_peft_model
from dense_reward.ppo import checkpoint
from dense_reward.ppo.activations import fuse_gelu
from dense_reward.ppo.losses import (
    entropy_from_logits,
    explained_variance,
    gae,
    kl_per_token,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)
from dense_reward.ppo.rollout import (
    Rollout,
    critic_values,
    dense_reward_tensor,
    generate,
    response_logits,
    score_tokens,
    token_logprobs,
)
from dense_reward.ppo.schedule import lr_lambda
from dense_reward.ppo.value import ValueHead

if TYPE_CHECKING:
    from dense_reward.shaping import RewardOutput

RewardFn = Callable[[list[str], list[list[int]]], "RewardOutput"]
"""`reward_fn(prompts, response_token_ids) -> RewardOutput` with one dense float per response token."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (sampling, shuffling and head initialisation all draw from these)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PPOTrainer:
    """PPO on a causal LM policy with a per-token reward callable.

    Args:
        args: every PPO knob (`ppo` section of the config).
        policy: a causal LM (optionally a peft model); trained in place. Its (and the reference's and
            critic's) `gelu_new` activations are swapped for the same function in one kernel (`fuse_gelu`).
        tokenizer: the policy's tokenizer (left padding, with a pad token).
        reward_fn: `reward_fn(prompts, response_token_ids) -> RewardOutput`.
        reference: frozen reference LM; None = a frozen copy of the policy, or the policy with its
            adapters disabled when it is a peft model.
        critic: a value model mapping `(input_ids, attention_mask, position_ids)` each `(B, T)` to
            values `(B, T)` (e.g. `dense_reward.ppo.value.Critic`); None = a `ValueHead` on the policy's
            last hidden states.
        total_steps: PPO steps the LR schedule decays over; None = `ppo.epochs * ppo.steps_per_epoch`
            when `steps_per_epoch` is set, else the LR stays constant after warm-up.

    Randomness: the sampling and minibatch shuffling of PPO step ``n`` draw from generators seeded by
    ``(args.seed, n)``, so two trainers with the same seed see the same random numbers at every step
    whatever their rewards did before (common random numbers across the trials of a sweep), and a
    resumed trainer continues on the streams it was saved with.
    """

    def __init__(
        self,
        args: PPOConfig,
        policy: nn.Module,
        tokenizer,
        reward_fn: RewardFn,
        reference: nn.Module | None = None,
        critic: nn.Module | None = None,
        total_steps: int | None = None,
    ) -> None:
        self.args = args
        self.seed = args.seed
        """Seed of the per-step random streams; a loaded checkpoint brings back the one it was saved with."""
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn
        self.device = next(policy.parameters()).device
        self.adapters_only = is_peft_model(policy)
        # Dropout stays off in every model: the update must see the same function the rollout sampled from.
        self.policy = policy.eval()
        if reference is None and not self.adapters_only:
            reference = copy.deepcopy(policy).requires_grad_(False)
        self.reference = reference.eval() if reference is not None else None

        self.value_head: ValueHead | None = None
        self.critic: nn.Module | None = None
        if critic is not None:
            self.critic = critic.eval()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed)
                self.value_head = ValueHead(policy.config.hidden_size).to(self.device)
        self.value_module: nn.Module = self.value_head if self.value_head is not None else self.critic
        for model in (self.policy, self.reference, self.critic):
            if model is not None:
                fuse_gelu(model)

        self.parameters = [p for p in self.policy.parameters() if p.requires_grad]
        self.parameters += [p for p in self.value_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters,
            lr=self.args.learning_rate,
            eps=self.args.adam_eps,
            weight_decay=self.args.weight_decay,
            # One kernel for every parameter instead of a Python loop over them (same update rule).
            fused=self.device.type in ("cpu", "cuda"),
        )
        if total_steps is None and self.args.steps_per_epoch is not None:
            total_steps = self.args.epochs * self.args.steps_per_epoch
        if total_steps is None and self.args.lr_schedule != "constant":
            warnings.warn(
                f"ppo.lr_schedule={self.args.lr_schedule!r} needs a length: pass total_steps or set "
                "ppo.steps_per_epoch; the learning rate stays constant after warm-up",
                ConfigWarning,
                stacklevel=2,
            )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        self.reset_schedule(total_steps)
        self.step_count = 0

    def reset_schedule(self, total_steps: int | None) -> None:
        """A fresh learning-rate schedule (warm-up, then decay) over `total_steps` PPO steps from now on."""
        optimizer_steps = None
        if total_steps is not None:
            minibatches = math.ceil(self.args.batch_size / self.args.mini_batch_size)
            optimizer_steps = total_steps * self.args.update_epochs * minibatches
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("initial_lr", self.args.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.args.warmup_steps, optimizer_steps, self.args.lr_schedule)
        )

    @contextmanager
    def step_rng(self, phase: int) -> Iterator[None]:
        """Run a phase of this step on torch's global RNG seeded by ``(seed, step, phase)``, then restore it.

        `generate` samples from the global RNG; seeding it per step keeps every trial of a sweep on the
        same random numbers at the same step (common random numbers), however long earlier responses were.
        """
        devices = [self.device] if self.device.type == "cuda" else []
        seed = int(np.random.SeedSequence([self.seed, self.step_count, phase]).generate_state(1)[0])
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def set_reward_fn(self, reward_fn: RewardFn) -> None:
        """Train on a different reward from the next step on (e.g. new mixing weights); models stay."""
        self.reward_fn = reward_fn

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on CUDA; full precision on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    # ----------------------------------------------------------------------------------------------
    # one PPO step
    # ----------------------------------------------------------------------------------------------

    def step(self, prompts: Sequence[str]) -> dict[str, float]:
        """One rollout on `prompts` and one PPO update; returns the step's metrics."""
        prompts = list(prompts)
        timings: dict[str, float] = {}
        start = time.perf_counter()

        rollout = self.rollout(prompts, timings)
        rewards, reward_metrics = self.rewards(prompts, rollout, timings)
        advantages, returns = self.advantages(rollout, rewards)
        tick = time.perf_counter()
        update_metrics = self.update(rollout, advantages, returns)
        timings["update_seconds"] = time.perf_counter() - tick
        self.step_count += 1

        timings["step_seconds"] = time.perf_counter() - start
        mask = rollout.response_mask
        return {
            **reward_metrics,
            **update_metrics,
            "entropy": float(masked_mean(rollout.entropy, mask)),
            "explained_variance": explained_variance(rollout.values, returns, mask),
            "value_mean": float(masked_mean(rollout.values, mask)),
            "response_length": float(mask.sum(dim=1).mean()),
            "learning_rate": float(self.scheduler.get_last_lr()[0]),
            "tokens_per_second": float(mask.sum()) / timings["step_seconds"],
            "step": float(self.step_count),
            **timings,
        }

    # ----------------------------------------------------------------------------------------------
    # 1. rollout
    # ----------------------------------------------------------------------------------------------

    def rollout(self, prompts: list[str], timings: dict[str, float]) -> Rollout:
        """Sample responses, then score their tokens under policy, reference and critic."""
        tick = time.perf_counter()
        # In full precision the sampler's logits are the policy's log-probs and its last-layer hidden states
        # give a value head's values (both up to float rounding), so the policy forward after generation is
        # skipped; under bf16 autocast incremental decoding rounds differently from the full forward the
        # update uses.
        policy_scores = self.device.type != "cuda"
        with self.step_rng(phase=0), self.autocast():
            rollout = generate(
                self.policy,
                self.tokenizer,
                prompts,
                max_new_tokens=self.args.max_new_tokens,
                temperature=self.args.temperature,
                top_p=self.args.top_p,
                policy_scores=policy_scores,
                value_head=self.value_head if policy_scores else None,
            )
        timings["generation_seconds"] = time.perf_counter() - tick
        tick = time.perf_counter()
        score_tokens(
            rollout,
            self.policy,
            self.args.temperature,
            reference=self.reference,
            critic=self.critic,
            value_head=self.value_head,
            chunk_size=self.args.mini_batch_size,
            autocast=self.autocast(),
        )
        timings["forward_seconds"] = time.perf_counter() - tick
        return rollout

    # ----------------------------------------------------------------------------------------------
    # 2. reward: dense_t - kl_coef * KL_t
    # ----------------------------------------------------------------------------------------------

    def rewards(
        self, prompts: list[str], rollout: Rollout, timings: dict[str, float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-token rewards `(B, Tr)` and their metrics; raises `RewardError` on a malformed reward."""
        tick = time.perf_counter()
        output = self.reward_fn(prompts, rollout.token_ids)
        reward_seconds = time.perf_counter() - tick
        reported = getattr(output, "timings", None) or {}
        timings["attribution_seconds"] = float(reported.get("attribution_seconds", 0.0))
        timings["scoring_seconds"] = float(
            reported.get("scoring_seconds", reward_seconds - timings["attribution_seconds"])
        )
        timings["reward_seconds"] = reward_seconds

        mask = rollout.response_mask
        dense = dense_reward_tensor(output.dense, output.scores, rollout.lengths, mask)  # (B, Tr)
        kl = kl_per_token(rollout.logprobs, rollout.ref_logprobs, self.args.kl_estimator) * mask  # (B, Tr)
        rewards = dense - self.args.kl_coef * kl
        no_eos = ~rollout.ended_with_eos()  # (B,) on any of its stop tokens
        if self.args.missing_eos_penalty is not None:
            last = (mask.sum(dim=1).long() - 1)[:, None]  # (B, 1)
            penalty = self.args.missing_eos_penalty * no_eos.float()[:, None]
            rewards = rewards.scatter_add(1, last, -penalty)
        metrics = {
            "train_reward": float(np.mean(output.scores)),
            "dense_reward": float(dense.sum(dim=1).mean()),
            "kl_reward": float((-self.args.kl_coef * kl).sum(dim=1).mean()),
            "total_reward": float(rewards.sum(dim=1).mean()),
            "kl": float(kl.sum(dim=1).mean()),
            "no_eos_fraction": float(no_eos.float().mean()),
            # How far each normalised source lies from an even split (0 = even; see `dense_reward.shaping.spread`).
            **{f"spread_{name}": value for name, value in (getattr(output, "spreads", None) or {}).items()},
        }
        if self.args.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        return rewards, metrics

    # ----------------------------------------------------------------------------------------------
    # 3. advantages
    # ----------------------------------------------------------------------------------------------

    def advantages(self, rollout: Rollout, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and value targets, both `(B, Tr)`; advantages whitened over the batch."""
        advantages, returns = gae(
            rewards, rollout.values, rollout.response_mask, self.args.gamma, self.args.lam
        )
        if self.args.whiten_advantages:
            advantages = masked_whiten(advantages, rollout.response_mask)
        return advantages, returns

    # ----------------------------------------------------------------------------------------------
    # 4. update
    # ----------------------------------------------------------------------------------------------

    def update(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """`update_epochs` passes of minibatch SGD on the clipped PPO objective; returns mean stats."""
        batch_size = rollout.query_ids.shape[0]
        mini_batch_size = min(self.args.mini_batch_size, batch_size)
        micro_batch_size = max(1, mini_batch_size // self.args.gradient_accumulation_steps)
        history: dict[str, list[float]] = {}
        with self.step_rng(phase=1):
            orders = [torch.randperm(batch_size) for _ in range(self.args.update_epochs)]
        for order in orders:
            for start in range(0, batch_size, mini_batch_size):
                minibatch = order[start : start + mini_batch_size]
                self.optimizer.zero_grad(set_to_none=True)
                for micro_start in range(0, len(minibatch), micro_batch_size):
                    rows = minibatch[micro_start : micro_start + micro_batch_size].to(self.device)
                    loss, stats = self.loss(rollout, advantages, returns, rows)
                    # Weighted by rows so a minibatch's gradient does not depend on how it is split.
                    (loss * len(rows) / len(minibatch)).backward()
                    for name, value in stats.items():
                        history.setdefault(name, []).append(value)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.args.max_grad_norm)
                history.setdefault("grad_norm", []).append(float(grad_norm))
                self.optimizer.step()
                self.scheduler.step()
        return {name: float(np.mean(values)) for name, values in history.items()}

    def loss(
        self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """PPO loss on the responses `rows` of the rollout, and its detached stats."""
        mask = rollout.response_mask[rows]
        # Columns past the longest response in these rows are padding; a causal model does not need them.
        length = int(mask.sum(dim=1).max())
        mask = mask[:, :length]
        query_ids, query_mask = rollout.query_ids[rows], rollout.query_mask[rows]
        response_ids = rollout.response_ids[rows, :length]
        with self.autocast():
            logits, hidden = response_logits(
                self.policy,
                query_ids,
                query_mask,
                response_ids,
                self.args.temperature,
                output_hidden_states=self.value_head is not None,
            )
            if self.value_head is not None:
                values = self.value_head(hidden)
            else:
                values = critic_values(self.critic, query_ids, query_mask, response_ids)
        logits = logits.float()
        logprobs = token_logprobs(logits, response_ids)  # (b, T)
        # Without an entropy bonus the entropy is only a statistic: no graph through (b, T, V) for it.
        with torch.set_grad_enabled(self.args.ent_coef > 0 and torch.is_grad_enabled()):
            entropy = masked_mean(entropy_from_logits(logits), mask)
        pg_loss, pg_stats = policy_loss(
            logprobs, rollout.logprobs[rows, :length], advantages[rows, :length], mask, self.args.clip_range
        )
        vf_loss, vf_stats = value_loss(
            values.float(),
            rollout.values[rows, :length],
            returns[rows, :length],
            mask,
            self.args.clip_range_value,
        )
        loss = pg_loss + self.args.vf_coef * vf_loss - self.args.ent_coef * entropy
        stats = {
            "policy_loss": float(pg_loss.detach()),
            "value_loss": float(vf_loss.detach()),
            "loss": float(loss.detach()),
            "approx_kl": float(pg_stats["approx_kl"]),
            "policy_clipfrac": float(pg_stats["clipfrac"]),
            "value_clipfrac": float(vf_stats["clipfrac"]),
            "update_entropy": float(entropy.detach()),
        }
        return loss, stats

    # ----------------------------------------------------------------------------------------------
    # checkpoints
    # ----------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write weights (adapters only under LoRA), optimizer, scheduler, RNG and step to `directory`."""
        return checkpoint.save_checkpoint(
            directory,
            self.policy,
            self.value_module,
            self.optimizer,
            self.scheduler,
            self.step_count,
            self.adapters_only,
            metadata={"value": "head" if self.value_head is not None else "critic", "seed": self.seed},
        )

    def load(self, directory: str | Path) -> dict[str, Any]:
        """Restore a checkpoint written by `save` into this trainer; training then continues as if unbroken."""
        state = checkpoint.load_checkpoint(
            directory, self.policy, self.value_module, self.optimizer, self.scheduler, self.adapters_only
        )
        self.step_count = int(state["step"])
        self.seed = int(state["metadata"].get("seed", self.seed))
        return state
