"""What a trial reports after an epoch: the objective with its standard error, chosen training means, spreads."""

from __future__ import annotations

from tune_jobs.trainable import REPORTED, epoch_metrics


def test_epoch_metrics_keep_the_reported_means_and_every_source_spread() -> None:
    train = {key: float(i) for i, key in enumerate(REPORTED)}
    train.update(generation_seconds=9.0, spread_shap=0.45, spread_lime=0.01)
    evaluation = {"val_reward": 0.4, "val_reward_sem": 0.05, "gold_reward": None, "samples": []}
    metrics = epoch_metrics(train, evaluation, epoch=2)
    assert metrics == {
        **{key: float(i) for i, key in enumerate(REPORTED)},
        "spread_shap": 0.45,
        "spread_lime": 0.01,
        "val_reward": 0.4,
        "val_reward_sem": 0.05,
        "epoch": 2,
    }
    assert epoch_metrics(train, {**evaluation, "gold_reward": 0.3}, epoch=2)["gold_reward"] == 0.3
