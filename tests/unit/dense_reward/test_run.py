"""`dense_reward.run.Run`: the library runs a weight vector end to end with neither Ray nor MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dense_reward.run import RUN_STATE_FILE, Run, epoch_batches, read_run_state
from dense_reward.simplex import WeightsError
from tests.support.paths import TINY_CONFIG

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_SERVICE = textwrap.dedent(
    """
    import json, sys, yaml
    import dense_reward
    from dense_reward.config import validate_config
    from dense_reward.run import Run

    data = yaml.safe_load(open(sys.argv[1]))
    for section in ("search", "tracking", "resources"):
        data.pop(section, None)
    config = validate_config(data).with_overrides({"ppo.epochs": 1, "ppo.steps_per_epoch": 2})
    run = Run(config, weights={"attention": 0.5, "shap": 0.25, "sparse": 0.25})
    train = run.train_epoch(1)
    evaluation = run.evaluate()
    sections = run.heatmap_sections(evaluation["samples"])
    print(json.dumps({
        "steps": run.trainer.step_count,
        "train_reward": train["train_reward"],
        "val_reward": evaluation["val_reward"],
        "val_reward_sem": evaluation["val_reward_sem"],
        "sources": sorted(sections[0].rows),
        "service_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "mlflow", "tune_jobs")),
    }))
    """
)


def test_library_runs_shaping_ppo_and_evaluation_without_ray_or_mlflow(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_SERVICE, str(TINY_CONFIG)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["service_modules"] == []
    assert report["steps"] == 2
    assert report["val_reward_sem"] > 0.0
    assert {"dense", "sparse", "attention", "shap", "lime", "redistribution"} <= set(report["sources"])


def test_save_and_load_continue_the_run(tiny_config, tmp_path) -> None:
    weights = {"attention": 0.8, "sparse": 0.2}
    straight = Run(tiny_config, weights)
    for epoch in (1, 2):
        straight.train_epoch(epoch)

    first = Run(tiny_config, weights)
    first.train_epoch(1)
    first.save(tmp_path / "ckpt", extra={"note": "epoch one"})
    state = read_run_state(tmp_path / "ckpt")
    assert state["epoch"] == 1 and state["weights"] == weights and state["note"] == "epoch one"

    resumed = Run(tiny_config, weights)
    resumed.load(tmp_path / "ckpt")
    assert resumed.epoch == 1
    resumed.train_epoch(2)
    assert resumed.evaluate()["val_reward"] == pytest.approx(straight.evaluate()["val_reward"], abs=1e-6)


def test_seed_changes_rollouts_but_not_the_split(tiny_config) -> None:
    base, other = Run(tiny_config, seed=0), Run(tiny_config, seed=1)
    assert base.splits.validation == other.splits.validation
    assert base.config.ppo.seed == 0 and other.config.ppo.seed == 1
    batches = epoch_batches(base.splits.train, other.config.ppo, 1)
    assert batches != epoch_batches(base.splits.train, base.config.ppo, 1)


def test_weights_off_the_simplex_are_refused_before_models_load(tiny_config) -> None:
    with pytest.raises(WeightsError, match=r"shaping.weights: weights must sum to 1"):
        Run(tiny_config, {"attention": 0.5, "sparse": 0.2})


def test_a_missing_run_state_is_a_clear_error(tmp_path) -> None:
    from dense_reward.ppo.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=RUN_STATE_FILE):
        read_run_state(tmp_path)
    (tmp_path / RUN_STATE_FILE).write_text(json.dumps({"epoch": 1}))
    assert read_run_state(tmp_path)["epoch"] == 1


def test_a_run_does_not_depend_on_whether_its_builtin_models_were_cached(tiny_config, tmp_path, monkeypatch) -> None:
    """Building a `builtin:` model draws random numbers; seeded init (the critic's head) must not see them."""
    monkeypatch.setenv("DENSE_REWARD_CACHE", str(tmp_path / "cache"))
    runs = []
    for _ in range(2):  # the first builds the models, the second loads them from the cache
        run = Run(tiny_config, {"attention": 0.5, "sparse": 0.5})
        metrics = run.train_epoch(1)
        runs.append((metrics["loss"], metrics["value_loss"], run.evaluate()["val_reward"]))
    assert runs[0] == runs[1]


def test_heatmaps_one_sample_at_a_time_match_every_sample_at_once(tiny_config) -> None:
    run = Run(tiny_config, {"attention": 0.8, "sparse": 0.2})
    samples = [
        (prompt, response)
        for prompt, response in zip(run.validation_prompts[:3], ["good day to you", "the world", "kind"], strict=True)
    ]
    sections = run.heatmap_sections(samples)
    eos = run.tokenizer.eos_token_id
    token_ids = [run.tokenizer(r, add_special_tokens=False)["input_ids"] + [eos] for _, r in samples]
    together = run._every_source([p for p, _ in samples], token_ids)
    assert len(sections) == 3
    for index, section in enumerate(sections):
        assert section.extra["reward"] == f"{together.scores[index]:.4f}"
        np.testing.assert_allclose(section.rows["dense"], together.dense[index], atol=1e-6)
        for source, credit in together.attributions.items():
            np.testing.assert_allclose(section.rows[source], credit[index], atol=1e-6, err_msg=source)
