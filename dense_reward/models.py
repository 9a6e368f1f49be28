"""Load policy, reference, reward and value models by hub id, local folder or `builtin:<name>`.

`builtin:` models come from `dense_reward.builtin.registry`: built offline once into the cache folder
(``$DENSE_REWARD_CACHE`` or ``~/.cache/dense-reward``), then loaded with ``from_pretrained`` exactly
like a hub model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from dense_reward.builtin.registry import UnknownBuiltinError, resolve_model
from dense_reward.config import LoraSpec, ModelSpec, RewardModelSpec
from dense_reward.errors import UserError


class ModelLoadError(UserError):
    """A model could not be found or loaded; the message names the config field and the path or id."""


def resolve_model_path(path: str, field: str = "model") -> str:
    """Turn a config `path` into something `from_pretrained` takes; build `builtin:` models on first use."""
    if path.startswith("builtin:"):
        try:
            return str(resolve_model(path.removeprefix("builtin:"), field))
        except UnknownBuiltinError as error:
            raise ModelLoadError(str(error)) from None
    local = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or local.exists()
    if looks_local:
        if not local.is_dir():
            raise ModelLoadError(f"{field}: local model folder not found: {local}")
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"{field}: {local} has no config.json; is it a Hugging Face model folder?")
        return str(local)
    return path


def pick_device(device: str) -> torch.device:
    """`auto` = CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but CUDA is not available")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device, trained: bool = False) -> torch.dtype:
    """`auto` = bf16 on CUDA for frozen models, fp32 otherwise.

    Trained models (the policy) keep fp32 weights under `auto` even on CUDA: the trainer runs them
    under bf16 autocast, and AdamW updates on bf16 weights would round small steps away.
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and not trained else torch.float32
    return getattr(torch, dtype)


def _from_pretrained(loader, spec: ModelSpec, field: str, trained: bool = False, **kwargs):
    path = resolve_model_path(spec.path, field)
    device = pick_device(spec.device)
    try:
        model = loader.from_pretrained(
            path,
            revision=spec.revision,
            dtype=pick_dtype(spec.dtype, device, trained),
            trust_remote_code=spec.trust_remote_code,
            **kwargs,
        )
    except OSError as error:
        raise ModelLoadError(f"{field}: cannot load {spec.path!r}: {error}") from None
    return model.to(device)


def load_tokenizer(spec: ModelSpec, field: str = "model", padding_side: str = "left"):
    """The tokenizer of a model, with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec.path, field)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except OSError as error:
        raise ModelLoadError(f"{field}: cannot load the tokenizer of {spec.path!r}: {error}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_policy(spec: ModelSpec, lora: LoraSpec | None = None, field: str = "models.policy"):
    """(model, tokenizer) of a causal LM; LoRA adapters attached when `lora.enabled`."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, spec, field, trained=True)
    tokenizer = load_tokenizer(spec, field, padding_side="left")
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if lora is not None and lora.enabled:
        model = add_lora(model, lora, task_type="CAUSAL_LM")
    return model, tokenizer


def load_reference(policy, spec: ModelSpec | None, field: str = "models.reference"):
    """The frozen reference: a separate model when `spec` is given, else a frozen copy of the policy.

    Under LoRA with no `spec`, returns None: the reference is the policy with adapters disabled.
    """
    if spec is not None:
        from transformers import AutoModelForCausalLM

        reference = _from_pretrained(AutoModelForCausalLM, spec, field)
    elif hasattr(policy, "disable_adapter"):
        return None
    else:
        reference = copy.deepcopy(policy)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def load_reward_model(spec: RewardModelSpec, field: str = "models.reward", attn_implementation: str = "eager"):
    """(model, tokenizer) of a sequence-classification reward model with one output, frozen.

    Eager attention is the default so the `attention` source can read attention weights.
    """
    from transformers import AutoModelForSequenceClassification

    model = _from_pretrained(
        AutoModelForSequenceClassification, spec, field, num_labels=1, attn_implementation=attn_implementation
    )
    if model.config.num_labels != 1:
        raise ModelLoadError(f"{field}: {spec.path!r} has num_labels={model.config.num_labels}; a reward model needs 1")
    tokenizer = load_tokenizer(spec, field, padding_side="right")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def add_lora(model, lora: LoraSpec, task_type: str):
    """Wrap `model` with peft LoRA adapters."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, config)
