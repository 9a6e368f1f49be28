"""Prompt datasets in each format, chat templates, deterministic splits and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dense_reward.config import DataConfig
from dense_reward.data import DataError, hh_messages, hh_prompt, load_prompts
from dense_reward.models import load_tokenizer
from tests.support.paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "data"


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
    with pytest.raises(DataError, match=r"rows.jsonl line 2 has no 'prompt' column"):
        load_prompts(DataConfig(source=str(path), format="plain"))


def test_jsonl_errors_give_the_line_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    # Blank lines count as lines; U+2028 inside a JSON string is valid and does not end a line.
    path.write_text('{"prompt": "a"}\n\n{"prompt": "one\u2028two"}\n\n{"prompt": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.jsonl line 5 column 'prompt' is not text: 3"):
        load_prompts(DataConfig(source=str(path)))
    path.write_text('{"prompt": "a"}\n\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.jsonl line 3 is not an object with columns"):
        load_prompts(DataConfig(source=str(path)))
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", "rejected": "x"}\n\n{"chosen": "no turns", "rejected": "x"}\n'
    )
    with pytest.raises(DataError, match=r"hh.jsonl line 3: no '\\n\\nAssistant:' turn"):
        load_prompts(DataConfig(source=str(hh)))


def test_jsonl_rows_keep_u2028_and_a_byte_order_mark_is_not_data(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + '{"prompt": "one\u2028two"}\n{"prompt": "three"}\n'.encode())
    splits = load_prompts(DataConfig(source=str(path), validation_fraction=0.5))
    assert sorted(splits.train + splits.validation) == ["one\u2028two", "three"]


def test_text_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "fine"}\n{"prompt": "café"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl line 2 is not UTF-8 text"):
        load_prompts(DataConfig(source=str(path)))


def test_json_and_parquet_rows_are_named_by_index(tmp_path: Path) -> None:
    listed = tmp_path / "rows.json"
    listed.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}, {"text": "c"}]))
    with pytest.raises(DataError, match=r"rows.json list index 2 has no 'prompt' column"):
        load_prompts(DataConfig(source=str(listed), format="plain"))
    table = tmp_path / "rows.parquet"
    pd.DataFrame({"prompt": ["a", None, "c"]}).to_parquet(table)
    with pytest.raises(DataError, match=r"rows.parquet row index 1 column 'prompt' is not text"):
        load_prompts(DataConfig(source=str(table)))
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"^data.source: cannot read .*damaged.parquet as parquet"):
        load_prompts(DataConfig(source=str(damaged)))


def test_unknown_builtin_dataset_names_the_field() -> None:
    with pytest.raises(
        DataError,
        match=r"^data.source: unknown built-in dataset 'nope'; known: \['tiny-prompts', 'demo-prompts', 'credit-gym-prompts'\]",
    ):
        load_prompts(DataConfig(source="builtin:nope"))


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


def test_system_prompt_goes_first_in_the_template_and_needs_one(tiny_policy_spec) -> None:
    tokenizer = load_tokenizer(tiny_policy_spec)
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<system>Default.{% endif %}"
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    config = DataConfig(source=str(FIXTURES / "plain.jsonl"))
    default = load_prompts(config, tokenizer)
    assert all(p.startswith("<system>Default.<user>") for p in default.train)
    for system, start in (("", "<system><user>"), ("Be brief.", "<system>Be brief.<user>")):
        splits = load_prompts(config.model_copy(update={"system_prompt": system}), tokenizer)
        assert all(p.startswith(start) for p in splits.train + splits.validation)
        # The RM still reads the raw prompt behind the template.
        assert splits.raw_prompts(splits.train) == default.raw_prompts(default.train)
    for mode, tok in (("off", tokenizer), ("auto", load_tokenizer(tiny_policy_spec))):
        unset = config.model_copy(update={"system_prompt": "Be brief.", "chat_template": mode})
        with pytest.raises(DataError, match="data.system_prompt"):
            load_prompts(unset, tok)


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
