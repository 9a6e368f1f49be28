"""Prompt datasets: hub id, local jsonl/json/parquet or `builtin:<name>`; HH-RLHF, UltraFeedback, plain.

A dataset becomes a list of raw prompts, is shuffled by seed and split into train and validation.
When the policy tokenizer has a chat template (and `chat_template` is not `off`), each prompt is
wrapped in it with the generation prompt appended; `PromptSplits.raw` maps every formatted prompt
back to its raw text, which is what the reward model sees.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dense_reward.builtin.registry import UnknownBuiltinError, load_dataset_rows
from dense_reward.config import DataConfig
from dense_reward.errors import UserError


class DataError(UserError):
    """A dataset could not be read or has the wrong shape; the message names the file and column."""


@dataclass
class PromptSplits:
    """Formatted prompts for the policy, split by seed; `raw[p]` is the prompt text before formatting."""

    train: list[str]
    validation: list[str]
    raw: dict[str, str] = field(default_factory=dict)

    def raw_prompts(self, prompts: list[str]) -> list[str]:
        """The raw texts of formatted prompts (a prompt that was never formatted maps to itself)."""
        return [self.raw.get(p, p) for p in prompts]


# --------------------------------------------------------------------------------------------------
# reading rows
# --------------------------------------------------------------------------------------------------

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")

Located = list[tuple[str, Any]]
"""Rows with where each one is in its source: (location, row), e.g. ("line 7", {"prompt": ...})."""


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the first row.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"data.source: {path} line {line} is not UTF-8 text ({error.reason})") from None


def _read_local(path: Path) -> Located:
    if not path.is_file():
        raise DataError(f"data.source: file not found: {path}")
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises its own types for a damaged or foreign file
            raise DataError(f"data.source: cannot read {path} as parquet: {error}") from None
        return [(f"row index {index}", row) for index, row in enumerate(frame.to_dict(orient="records"))]
    text = _decode(path)
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"data.source: {path} is not valid JSON: {error}") from None
        if not isinstance(rows, list):
            raise DataError(f"data.source: {path} must hold a JSON list of objects")
        return [(f"list index {index}", row) for index, row in enumerate(rows)]
    rows = []
    # JSON Lines ends a row at "\n" only: str.splitlines would also split inside a row at characters
    # such as U+2028 that JSON strings may hold unescaped, and misnumber every line after it.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise DataError(f"data.source: {path} line {number} is not valid JSON: {error}") from None
    return rows


def _read_hub(config: DataConfig) -> Located:
    import datasets

    try:
        dataset = datasets.load_dataset(config.source, config.subset, split=config.split)
    except Exception as error:  # datasets raises many types for a missing id, split or network
        raise DataError(
            f"data.source: cannot load hub dataset {config.source!r} (split {config.split!r}): {error}"
        ) from None
    return [(f"row index {index}", row) for index, row in enumerate(dataset)]


def _located_rows(config: DataConfig) -> Located:
    source = config.source
    if source.startswith("builtin:"):
        try:
            rows = load_dataset_rows(source.removeprefix("builtin:"), "data.source")
        except UnknownBuiltinError as error:
            raise DataError(str(error)) from None
        located = [(f"row index {index}", row) for index, row in enumerate(rows)]
    else:
        path = Path(source).expanduser()
        if source.endswith(LOCAL_SUFFIXES) or path.exists():
            if path.is_dir():
                raise DataError(f"data.source: {path} is a folder; give a .jsonl, .json or .parquet file")
            located = _read_local(path)
        else:
            located = _read_hub(config)
    for where, row in located:
        if not isinstance(row, dict):
            raise DataError(f"data.source: {source} {where} is not an object with columns: {row!r:.80}")
    return located


def read_rows(config: DataConfig) -> list[dict[str, Any]]:
    """All rows of the configured dataset, as dicts."""
    return [row for _, row in _located_rows(config)]


# --------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_prompt(transcript: str) -> str:
    """The HH-RLHF dialogue up to and including the last `Assistant:` tag."""
    cut = transcript.rfind("\n\nAssistant:")
    if cut < 0:
        raise ValueError("no '\\n\\nAssistant:' turn in the transcript")
    return transcript[: cut + len("\n\nAssistant:")]


def hh_messages(prompt: str) -> list[dict[str, str]]:
    """An HH-RLHF prompt (ending in `Assistant:`) as chat messages, without the empty last turn."""
    parts = _HH_TURN.split("\n\n" + prompt.strip("\n").removesuffix("Assistant:").rstrip() + "\n\n")
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=False):
        role_name = "user" if role == "Human" else "assistant"
        if content.strip():
            messages.append({"role": role_name, "content": content.strip()})
    return messages


def detect_format(rows: list[dict[str, Any]], source: str) -> str:
    columns = set(rows[0])
    if {"chosen", "rejected"} <= columns and "prompt" not in columns:
        return "hh_rlhf"
    if "prompt" in columns:
        return "ultrafeedback" if {"completions", "chosen"} & columns else "plain"
    raise DataError(
        f"data.source: {source} has columns {sorted(columns)}; expected 'prompt' (plain, UltraFeedback) "
        "or 'chosen'/'rejected' (HH-RLHF); set data.format to say which"
    )


def extract_prompts(
    rows: list[dict[str, Any]], fmt: str, source: str, where: list[str] | None = None
) -> list[str]:
    """Raw prompt texts of the rows in format `fmt` (`plain`, `hh_rlhf`, `ultrafeedback` or `auto`).

    `where[i]` says where row i is in `source` for error messages (e.g. ``line 7`` of a .jsonl file);
    by default its 0-based index.
    """
    if not rows:
        raise DataError(f"data.source: {source} has no rows")
    if where is None:
        where = [f"row index {index}" for index in range(len(rows))]
    if fmt == "auto":
        fmt = detect_format(rows, source)
    column = "chosen" if fmt == "hh_rlhf" else "prompt"
    prompts = []
    for row, location in zip(rows, where, strict=True):
        if column not in row:
            raise DataError(f"data.source: {source} {location} has no {column!r} column (format {fmt})")
        value = row[column]
        if not isinstance(value, str):
            raise DataError(f"data.source: {source} {location} column {column!r} is not text: {value!r:.80}")
        if fmt == "hh_rlhf":
            try:
                value = hh_prompt(value)
            except ValueError as error:
                raise DataError(f"data.source: {source} {location}: {error}") from None
        if value.strip():
            prompts.append(value)
    if not prompts:
        raise DataError(f"data.source: {source} has no non-empty prompts")
    return prompts


# --------------------------------------------------------------------------------------------------
# formatting and splitting
# --------------------------------------------------------------------------------------------------


def format_prompt(
    prompt: str, tokenizer: Any, mode: str = "auto", hh: bool = False, system_prompt: str | None = None
) -> str:
    """Wrap a raw prompt in the tokenizer's chat template (with the generation prompt) when asked.

    `mode`: `auto` = when the tokenizer has a template, `on` = always (error if none), `off` = never.
    `system_prompt`: a system message put first (`None`: whatever the template does without one).
    """
    has_template = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    if mode == "off" or (mode == "auto" and not has_template):
        if system_prompt is not None:
            why = "is off" if mode == "off" else "is not there (the policy tokenizer has none)"
            raise DataError(f"data.system_prompt: set, but the chat template that would carry it {why}")
        return prompt
    if not has_template:
        raise DataError("data.chat_template: 'on' but the policy tokenizer has no chat template")
    messages = hh_messages(prompt) if hh else [{"role": "user", "content": prompt}]
    if system_prompt is not None:
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def load_prompts(config: DataConfig, tokenizer: Any = None) -> PromptSplits:
    """Read, format, shuffle by `config.seed` and split the prompts of `config`."""
    located = _located_rows(config)
    rows = [row for _, row in located]
    fmt = config.format if config.format != "auto" or not rows else detect_format(rows, config.source)
    raw = extract_prompts(rows, fmt, config.source, [where for where, _ in located])
    raw = [p[-config.max_prompt_chars :] for p in raw]
    raw = list(dict.fromkeys(raw))
    random.Random(config.seed).shuffle(raw)
    if config.max_prompts is not None:
        raw = raw[: config.max_prompts]
    if len(raw) < 2:
        raise DataError(f"data.source: {config.source} has {len(raw)} distinct prompt(s); a split needs at least 2")
    n_val = min(max(1, round(len(raw) * config.validation_fraction)), len(raw) - 1)
    formatted = {
        format_prompt(p, tokenizer, config.chat_template, fmt == "hh_rlhf", config.system_prompt): p
        for p in raw
    }
    ordered = list(formatted)
    return PromptSplits(train=ordered[n_val:], validation=ordered[:n_val], raw=formatted)
