"""The bundled demo prompts: everyday requests that invite a positive, helpful reply."""

from __future__ import annotations

import json
from pathlib import Path

from dense_reward.builtin.demo import DEMO_PROMPTS_PATH
from dense_reward.errors import UserError


def load_demo_prompts(path: str | Path = DEMO_PROMPTS_PATH) -> list[str]:
    """The prompt texts of a `{"prompt": ...}` jsonl file, in file order (the bundled set by default)."""
    path = Path(path)
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f'{path}:{number}: expected {{"prompt": "<non-empty text>"}}')
        prompts.append(prompt)
    return prompts


def demo_prompt_rows() -> list[dict[str, str]]:
    """The `demo-prompts` dataset: one ``{"prompt": <text>}`` row per bundled prompt, in file order."""
    return [{"prompt": prompt} for prompt in load_demo_prompts()]
