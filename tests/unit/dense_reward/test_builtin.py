"""The `builtin:` registry: one mapping of models, datasets and gold scorers, and its place in the import graph."""

from __future__ import annotations

import shutil

import pytest

from dense_reward.builtin.cache import model_dir
from dense_reward.builtin.demo.kit import build_kit, kit_names_in, quiet_transformers
from dense_reward.builtin.registry import (
    BUILTINS,
    BuiltinDataset,
    BuiltinGoldScorer,
    BuiltinModel,
    UnknownBuiltinError,
    gold_scorer,
    load_dataset_rows,
    names,
    resolve_model,
)
from dense_reward.errors import UserError
from tests.support.import_graph import import_graph


def test_every_builtin_a_shipped_config_names_is_registered() -> None:
    assert names(BuiltinModel) == [
        "tiny-gpt2",
        "tiny-rm",
        "smollm2-135m-instruct",
        "minilm-rm",
        "tiny-gpt2-dpo",
        "smollm2-135m-instruct-dpo",
        "credit-gym-policy",
        "credit-gym-rm",
        "credit-gym-policy-dpo",
    ]
    assert names(BuiltinDataset) == ["tiny-prompts", "demo-prompts", "credit-gym-prompts"]
    assert names(BuiltinGoldScorer) == ["vader", "credit-gym"]
    assert len(BUILTINS) == 14


def test_dpo_policy_is_built_from_its_recipe_and_prefers_the_chosen_responses() -> None:
    import json

    from safetensors.torch import load_file

    folder = resolve_model("tiny-gpt2-dpo")
    summary = json.loads((folder / "dpo.json").read_text())
    assert summary["recipe"]["policy"] == "tiny-gpt2" and summary["recipe"]["reward"] == "tiny-rm"
    assert summary["pairs_kept"] > 0
    first, last = summary["history"][0], summary["history"][-1]
    # DPO's loss starts at log 2 (policy == reference) and falls as the policy learns the preferences.
    assert first["loss"] == pytest.approx(0.693, abs=0.02)
    assert last["loss"] < first["loss"] - 0.02
    assert last["pair_accuracy"] >= 0.9
    assert not list(folder.glob("*.bin"))
    tuned, base = load_file(folder / "model.safetensors"), load_file(resolve_model("tiny-gpt2") / "model.safetensors")
    assert tuned.keys() == base.keys()
    assert any(not (tuned[k] == base[k]).all() for k in tuned)


def test_model_is_built_into_the_cache_once(_isolated_cache) -> None:
    folder = resolve_model("tiny-rm")
    assert folder == model_dir("tiny-rm") and folder.is_relative_to(_isolated_cache)
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert resolve_model("tiny-rm") == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    assert not list(folder.parent.glob("tiny-rm.tmp*"))


def test_datasets_are_prompt_rows() -> None:
    tiny = load_dataset_rows("tiny-prompts")
    assert len(tiny) == 200 and all(set(row) == {"prompt"} for row in tiny)
    demo = load_dataset_rows("demo-prompts")
    assert len(demo) >= 300 and all(row["prompt"].strip() for row in demo)


def test_gold_scorer_by_config_value() -> None:
    assert gold_scorer("none") is None
    vader = gold_scorer("vader")
    assert vader is not None
    scores = vader(["I love this, it is great", "I hate this, it is awful"])
    assert scores.shape == (2,) and scores[0] > 0 > scores[1]


def test_unknown_names_and_names_of_another_kind_are_clear_errors() -> None:
    with pytest.raises(
        UnknownBuiltinError, match=r"models.policy.path: unknown built-in model 'gpt-17'; known: \["
    ):
        resolve_model("gpt-17", "models.policy.path")
    # A dataset name is not a model, and a model name is not a dataset.
    with pytest.raises(UserError, match="unknown built-in model 'tiny-prompts'"):
        resolve_model("tiny-prompts")
    with pytest.raises(UserError, match="data.source: unknown built-in dataset 'tiny-gpt2'"):
        load_dataset_rows("tiny-gpt2")
    with pytest.raises(
        UserError, match=r"evaluation.gold_scorer: unknown built-in gold scorer 'afinn'; known: \['vader', 'credit-gym'\]"
    ):
        gold_scorer("afinn")


def test_kit_names_in_config_paths() -> None:
    paths = ["builtin:minilm-rm", "builtin:tiny-gpt2", "some/hub-id", "builtin:smollm2-135m-instruct"]
    assert kit_names_in(paths) == ["smollm2-135m-instruct", "minilm-rm"]
    assert kit_names_in(["builtin:tiny-gpt2", "builtin:tiny-rm"]) == []


def test_quiet_transformers_silences_the_gguf_bar_and_restores_it(capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import modeling_gguf_pytorch_utils as gguf
    from transformers.utils import logging

    bar, bars_on = gguf.tqdm, logging.is_progress_bar_enabled()
    with quiet_transformers():
        assert list(gguf.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2]
        assert not logging.is_progress_bar_enabled()
    assert "GGUF" not in capsys.readouterr().err
    assert gguf.tqdm is bar and logging.is_progress_bar_enabled() == bars_on
    list(gguf.tqdm(range(3), desc="GGUF after", disable=False))
    assert "GGUF after" in capsys.readouterr().err


def test_build_kit_reports_cached_models_without_building(_isolated_cache) -> None:
    folder = model_dir("minilm-rm")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "agreement.json").write_text('{"heldout": {"pairwise_accuracy": 0.9, "spearman": 0.8}}')
    lines: list[str] = []
    assert build_kit(lines.append, names=["minilm-rm"]) == {"minilm-rm": folder}
    assert lines[0] == f"minilm-rm: cached at {folder}"
    assert "pairwise accuracy 0.900, Spearman 0.800" in lines[1]
    assert lines[2].startswith("demo prompts: ")
    shutil.rmtree(folder)


def test_builtin_depends_on_nothing_of_the_library_and_evaluation_not_on_the_demo() -> None:
    graph, _ = import_graph()
    builtin = {module for module in graph if module.startswith("dense_reward.builtin")}
    assert {"dense_reward.builtin.registry", "dense_reward.builtin.demo.kit"} <= builtin
    outside = {
        (module, target)
        for module in builtin
        for target in graph[module]
        if not target.startswith("dense_reward.builtin") and target != "dense_reward.errors"
    }
    assert outside == set()
    # The library reaches the built-ins through the registry only.
    for module, targets in graph.items():
        if module.startswith("dense_reward.") and module not in builtin:
            assert targets & builtin <= {"dense_reward.builtin.registry"}, module
    assert not graph["dense_reward.evaluation"] & builtin
