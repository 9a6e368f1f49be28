"""The tiny test models build to the same files every time, so every test sees the same models."""

from __future__ import annotations

from pathlib import Path

import pytest

from dense_reward.builtin.tiny import build_tiny_policy, build_tiny_reward_model


@pytest.mark.parametrize("build", [build_tiny_policy, build_tiny_reward_model], ids=["tiny-gpt2", "tiny-rm"])
def test_two_builds_write_identical_files(tmp_path: Path, build) -> None:
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(names)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_the_tiny_rm_vocabulary_holds_whole_words_and_pieces(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_reward_model(tmp_path / "rm"))
    assert tokenizer.tokenize("Thank you, that is very important.") == [
        "thank", "you", ",", "that", "is", "very", "important", ".",
    ]  # fmt: skip
    assert tokenizer.tokenize("thankyou") == ["thank", "##y", "##o", "##u"]
    assert tokenizer.convert_tokens_to_ids("[MASK]") == tokenizer.mask_token_id == 4
