"""Prompt datasets in each format, chat templates, deterministic splits and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dense_reward.config import DataConfig
from dense_reward.data import DataError, hh_messages, hh_prompt, load_prompts
from dense_reward.models import load_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_hh_rlhf_prompt_is_dialogue_up_to_last_assistant() -> None:
    splits = load_prompts(DataConfig(source=str(FIXTURES / "hh_rlhf.jsonl"), validation_fraction=0.2))
    prompts = splits.train + splits.validation
    assert len(prompts) == 5
    multi = next(p for p in prompts if "cat" in p)
    assert multi.endswith("\n\nAssistant:")
    assert "Sir Whiskerton" not in multi and "Maybe Miso?" in multi and "Something longer?" in multi


def test_hh_messages_alternate_roles() -> None:
    prompt = hh_prompt("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: Bye now.")
    assert hh_messages(prompt) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]


def test_ultrafeedback_and_plain_formats() -> None:
    uf = load_prompts(DataConfig(source=str(FIXTURES / "ultrafeedback.jsonl"), format="ultrafeedback"))
    assert "Explain photosynthesis to a ten-year-old." in uf.train + uf.validation
    plain = load_prompts(DataConfig(source=str(FIXTURES / "plain.jsonl")))
    assert len(plain.train) + len(plain.validation) == 6


def test_parquet_is_read(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "plain.jsonl").read_text().splitlines()]
    path = tmp_path / "plain.parquet"
    pd.DataFrame(rows).to_parquet(path)
    splits = load_prompts(DataConfig(source=str(path)))
    assert sorted(splits.train + splits.validation) == sorted(r["prompt"] for r in rows)


def test_split_is_deterministic_by_seed_and_disjoint() -> None:
    config = DataConfig(source="builtin:tiny-prompts", validation_fraction=0.25, seed=3)
    a, b = load_prompts(config), load_prompts(config)
    assert a.train == b.train and a.validation == b.validation
    assert not set(a.train) & set(a.validation)
    assert len(a.validation) == round(0.25 * (len(a.train) + len(a.validation)))
    other = load_prompts(config.model_copy(update={"seed": 4}))
    assert other.validation != a.validation


def test_max_prompts_caps() -> None:
    splits = load_prompts(DataConfig(source="builtin:tiny-prompts", max_prompts=10, validation_fraction=0.2))
    assert len(splits.train) == 8 and len(splits.validation) == 2


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"rows.jsonl row 1 has no 'prompt' column"):
        load_prompts(DataConfig(source=str(path), format="plain"))


def test_unknown_columns_and_empty_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"question": "a"}\n')
    with pytest.raises(DataError, match="expected 'prompt'"):
        load_prompts(DataConfig(source=str(path)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="has no rows"):
        load_prompts(DataConfig(source=str(empty)))
    with pytest.raises(DataError, match="file not found"):
        load_prompts(DataConfig(source=str(tmp_path / "absent.jsonl")))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_prompts(DataConfig(source=str(broken)))


def test_unknown_format_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        DataConfig(source="x.jsonl", format="alpaca")


def test_chat_template_applied_and_raw_kept(tiny_policy_spec) -> None:
    tokenizer = load_tokenizer(tiny_policy_spec)
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    config = DataConfig(source=str(FIXTURES / "hh_rlhf.jsonl"), validation_fraction=0.2)
    splits = load_prompts(config, tokenizer)
    formatted = next(p for p in splits.train + splits.validation if "cat" in p)
    assert formatted.startswith("<user>What is a good name for a cat?<assistant>Maybe Miso?<user>Something")
    assert formatted.endswith("<assistant>")
    assert splits.raw_prompts([formatted])[0].endswith("\n\nAssistant:")
    off = load_prompts(config.model_copy(update={"chat_template": "off"}), tokenizer)
    assert all(p.endswith("Assistant:") for p in off.train)


def test_chat_template_on_without_template_errors(tiny_policy_spec) -> None:
    tokenizer = load_tokenizer(tiny_policy_spec)
    config = DataConfig(source=str(FIXTURES / "plain.jsonl"), chat_template="on")
    with pytest.raises(DataError, match="no chat template"):
        load_prompts(config, tokenizer)


def test_unknown_hub_dataset_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load hub dataset 'nobody/no-such-dataset'"):
        load_prompts(DataConfig(source="nobody/no-such-dataset"))
