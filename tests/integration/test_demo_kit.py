"""The demo kit on the real packages: GGUF policy conversion, reward head, gold scorer, prompts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dense_reward.builtin.demo import DEMO_PROMPTS_PATH
from dense_reward.builtin.demo.gold import gold_reward, word_credit
from dense_reward.builtin.demo.prompts import load_demo_prompts
from dense_reward.errors import UserError
from tests.support.ray_fixtures import ray_local  # noqa: F401


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dense_reward.builtin.demo.gguf_policy import build_policy

    return build_policy(tmp_path_factory.mktemp("kit") / "policy", progress=lambda line: None)


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dense_reward.builtin.demo.reward_head import train_reward_model

    return train_reward_model(
        tmp_path_factory.mktemp("kit") / "rm",
        prompts=load_demo_prompts()[:50],
        n_train=480,
        batch_size=16,
        n_heldout=160,
        epochs=1,
        max_length=64,
        # A slice this small learns the common sentiment words, not thousands of rare lexicon ones.
        lexicon_share=0.0,
        progress=lambda line: None,
    )


# --------------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------------


def test_prompts_file_is_well_formed_and_large_enough() -> None:
    rows = [json.loads(line) for line in DEMO_PROMPTS_PATH.read_text(encoding="utf-8").splitlines()]
    assert all(set(row) == {"prompt"} and row["prompt"].strip() for row in rows)
    prompts = load_demo_prompts()
    assert len(set(prompts)) == len(prompts) >= 300


def test_importing_the_demo_package_does_not_import_torch() -> None:
    code = "import sys, dense_reward.builtin.demo; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_bad_prompts_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "fine"}\n{"text": "no prompt key"}\n')
    with pytest.raises(UserError, match=r"prompts.jsonl:2"):
        load_demo_prompts(path)


# --------------------------------------------------------------------------------------------------
# gold scorer
# --------------------------------------------------------------------------------------------------


def test_gold_reward_orders_known_sentences() -> None:
    scores = gold_reward(
        ["What a wonderful, kind and helpful reply!", "The bus leaves at nine.", "This is awful."]
    )
    assert scores.shape == (3,)
    assert scores[0] > 0.5
    assert scores[1] == 0.0
    assert scores[2] < -0.3


def test_word_credit_follows_the_lexicon_and_negation() -> None:
    text = "The food was not good, but the staff were lovely."
    credit = word_credit(text)
    by_word = dict(zip(credit.words, credit.valences, strict=True))
    assert by_word["good"] < 0  # negated by "not"
    assert by_word["lovely"] > 0
    assert by_word["food"] == 0.0
    for word, (start, end) in zip(credit.words, credit.spans, strict=True):
        assert text[start:end] == word
    # The compound score is VADER's squashing of the credit total: x / sqrt(x^2 + 15).
    expected = credit.total / np.sqrt(credit.total**2 + 15)
    assert gold_reward([text])[0] == pytest.approx(expected, abs=1e-4)


def test_word_credit_spans_leave_out_punctuation() -> None:
    credit = word_credit("Great!!  thanks,")
    assert credit.words == ["Great", "thanks"]
    assert credit.spans == [(0, 5), (9, 15)]
    assert credit.total > credit.valences.sum()  # "!!" adds emphasis


# --------------------------------------------------------------------------------------------------
# policy: GGUF -> Hugging Face folder
# --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_converted_policy_is_a_plain_llama_that_answers_sensibly(policy_dir: Path) -> None:
    import torch

    from dense_reward.config import ModelSpec
    from dense_reward.models import load_policy

    config = json.loads((policy_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (policy_dir / "model.safetensors").is_file()

    model, tokenizer = load_policy(ModelSpec(path=str(policy_dir)))
    assert tokenizer.chat_template is not None
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        next_token = model(**inputs).logits[0, -1].argmax()
    assert tokenizer.decode(next_token).strip() == "Paris"

    messages = [
        {"role": "user", "content": "Write a short welcome message for new members of our book club."}
    ]
    chat = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**chat, max_new_tokens=16, do_sample=False)
    reply = tokenizer.decode(output[0, chat["input_ids"].shape[1] :], skip_special_tokens=True)
    words = reply.split()
    assert len(words) >= 8
    assert sum(word.strip(".,!?'").isalpha() for word in words) >= 0.8 * len(words)
    assert "welcome" in reply.lower()


# --------------------------------------------------------------------------------------------------
# reward model: MiniLM + scalar head fitted to gold
# --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_reward_head_agrees_with_gold_on_heldout(reward_dir: Path) -> None:
    report = json.loads((reward_dir / "agreement.json").read_text())
    assert report["heldout"]["n"] == 160
    assert report["heldout"]["pairwise_accuracy"] > 0.75, report
    assert report["heldout"]["spearman"] > 0.6, report
    # Plain hand-written replies, unlike the training templates.
    assert report["natural_replies"]["pairwise_accuracy"] > 0.65, report


@pytest.mark.timeout(600)
def test_reward_model_folder_loads_through_the_standard_path(reward_dir: Path) -> None:
    from dense_reward.builtin.demo.reward_head import score_texts
    from dense_reward.config import RewardModelSpec
    from dense_reward.models import load_reward_model

    model, tokenizer = load_reward_model(RewardModelSpec(path=str(reward_dir)))
    assert model.config.num_labels == 1
    prompt = "My coworker just got promoted. How should I congratulate her?"
    replies = ["That is wonderful news, she will be great and you can be proud!", "That is awful and sad."]
    scores = score_texts(model, tokenizer, [prompt + "\n" + reply for reply in replies])
    assert scores.shape == (2,)
    assert scores[0] > scores[1]


# --------------------------------------------------------------------------------------------------
# `dense-reward demo` on the kit, shrunk by config: few prompts, 2 trials, one short PPO step each
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_demo_config(policy_dir: Path, reward_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    from dense_reward.builtin.demo.prompts import load_demo_prompts
    from tune_jobs.commands.demo import DEMO_CONFIG

    folder = tmp_path_factory.mktemp("small-demo")
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in load_demo_prompts()[:12]))
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["models"]["policy"]["path"] = str(policy_dir)
    config["models"]["reward"]["path"] = str(reward_dir)
    config["models"]["reward"]["max_length"] = 64
    config["data"] = {"source": str(prompts), "validation_fraction": 0.25}
    config["shaping"]["shap"]["max_evals"] = 8
    config["shaping"]["lime"]["num_samples"] = 8
    config["ppo"].update(
        epochs=1, steps_per_epoch=1, batch_size=2, mini_batch_size=2, update_epochs=1, max_new_tokens=8
    )
    config["evaluation"].update(max_prompts=2, batch_size=2)
    config["search"].update(trials=2, n_init=2, max_concurrent=2)
    path = folder / "demo-small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_demo_command_runs_a_shrunk_sweep_on_the_kit(
    small_demo_config: Path,
    ray_local: None,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tune_jobs.cli import main
    from tune_jobs.commands.demo import free_run_dir
    from tune_jobs.config import load_sweep_config
    from tune_jobs.results import load_results
    from tune_jobs.rundir import resolve_run

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--config", str(small_demo_config), "--name", "small"]) == 0
    out = capsys.readouterr().out
    assert "names no kit model: nothing to build" in out
    assert "against sparse-only" in out
    assert "demo finished in" in out

    results = load_results(resolve_run(tmp_path / "runs" / "small"))
    rows = sorted(results.trials, key=lambda row: row.index)
    assert [row.status for row in rows] == ["TERMINATED", "TERMINATED"]
    # The config's first points: the sparse baseline, then ABC.
    assert rows[0].weights["sparse"] == pytest.approx(1.0)
    assert rows[1].weights["attention"] == pytest.approx(0.8)
    assert rows[1].weights["sparse"] == pytest.approx(0.2)
    for row in rows:
        assert row.best_val_reward is not None and np.isfinite(row.best_val_reward)
        assert -1.0 <= row.metrics["gold_reward"] <= 1.0
    assert len((tmp_path / "runs" / "small" / "results.csv").read_text().splitlines()) == 3
    assert (tmp_path / "runs" / "small" / "plots" / "bo_convergence.png").is_file()

    # Running the demo again does not collide with the finished run.
    config = load_sweep_config(small_demo_config).with_overrides({"name": "small"})
    again, run_dir = free_run_dir(config, explicit_name=False)
    assert (again.name, run_dir) == ("small-2", Path("runs") / "small-2")
    pinned = config.with_overrides({"resources.storage_path": str(tmp_path / "runs" / "small")})
    with pytest.raises(UserError, match="resources.storage_path fixes the run dir"):
        free_run_dir(pinned, explicit_name=False)
