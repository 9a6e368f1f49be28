"""PPO for causal LMs with per-token rewards: rollout, losses, trainer, checkpoints, critic."""

from dense_reward.ppo.checkpoint import CheckpointError
from dense_reward.ppo.rollout import RewardError, Rollout, generate
from dense_reward.ppo.trainer import PPOTrainer, RewardFn, seed_everything
from dense_reward.ppo.value import Critic, ValueHead, load_critic

__all__ = [
    "CheckpointError",
    "Critic",
    "PPOTrainer",
    "RewardError",
    "RewardFn",
    "Rollout",
    "ValueHead",
    "generate",
    "load_critic",
    "seed_everything",
]
