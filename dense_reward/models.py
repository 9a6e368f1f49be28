"""Load policy, reference, reward and value models by hub id, local folder or `builtin:<name>`.

`builtin:` models come from `dense_reward.builtin.registry`: built offline once into the cache folder
(``$DENSE_REWARD_CACHE`` or ``~/.cache/dense-reward``), then loaded with ``from_pretrained`` exactly
like a hub model.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch

from dense_reward.builtin.registry import UnknownBuiltinError, model_entry, resolve_model
from dense_reward.config import Config, LoraSpec, ModelsConfig, ModelSpec, RewardModelSpec
from dense_reward.errors import UserError
from dense_reward.reward_checks import position_limit


class ModelLoadError(UserError):
    """A model could not be found or loaded; the message names the config field and the path or id."""


def _one_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, with its type when the message is empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _needs_custom_code(folder: Path) -> bool:
    """Whether a local model folder names code it ships (`auto_map`) for an architecture transformers lacks.

    A folder can carry `auto_map` for an architecture transformers has since taken in (its `model_type`
    is known); transformers then loads its own classes without running the folder's code.
    """
    try:
        settings = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(settings, dict) or not settings.get("auto_map"):
        return False
    from transformers import CONFIG_MAPPING

    return settings.get("model_type") not in CONFIG_MAPPING


def _custom_code_error(spec: ModelSpec, field: str) -> ModelLoadError:
    return ModelLoadError(
        f"{field}.path: {spec.path} needs custom code; set {field}.trust_remote_code: true if you trust it"
    )


def resolve_model_path(path: str, field: str = "model") -> str:
    """Turn a config `path` into something `from_pretrained` takes; build `builtin:` models on first use.

    `field` is the config field that holds `path` (e.g. ``models.policy.path``); errors name it.
    """
    if path.startswith("builtin:"):
        try:
            return str(resolve_model(path.removeprefix("builtin:"), field))
        except UnknownBuiltinError as error:
            raise ModelLoadError(str(error)) from None
    local = Path(path).expanduser()
    if _looks_local(path):
        if not local.is_dir():
            raise ModelLoadError(f"{field}: local model folder not found: {local}")
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"{field}: {local} has no config.json; is it a Hugging Face model folder?")
        return str(local)
    return path


def _looks_local(path: str) -> bool:
    """A path that names a folder on this machine (anything else is taken as a hub id)."""
    return path.startswith((".", "/", "~")) or Path(path).expanduser().exists()


def model_specs(models: ModelsConfig) -> list[tuple[str, ModelSpec]]:
    """``(field, spec)`` of every model the `models` section configures, e.g. ``("models.policy", spec)``."""
    specs = [("models.policy", models.policy), ("models.reward", models.reward)]
    if models.reference is not None:
        specs.append(("models.reference", models.reference))
    return specs


def resolve_model_paths(models: ModelsConfig) -> None:
    """`resolve_model_path` for every model of the section: builds `builtin:` ones, checks local folders."""
    for field, spec in model_specs(models):
        resolve_model_path(spec.path, f"{field}.path")


def check_model_paths(config: Config) -> list[str]:
    """Check, without loading anything, that the config's model paths can be found; one note per model.

    Local folders must exist, hold a `config.json`, and ship no custom code unless the model's
    `trust_remote_code` is set; `builtin:` names must be registered (they are built on first use). Hub ids
    are not looked up (that needs the network), and the note says so.

    Returns:
        One line per configured model, naming its field, e.g. ``models.policy.path: local folder /m found``.

    Raises:
        ModelLoadError: one line naming every path that cannot be found.
    """
    notes, problems = [], []
    for field, spec in model_specs(config.models):
        path = spec.path
        if path.startswith("builtin:"):
            try:
                model_entry(path.removeprefix("builtin:"), f"{field}.path")
            except UnknownBuiltinError as error:
                problems.append(str(error))
            else:
                notes.append(f"{field}.path: {path} is a built-in model (built on first use)")
        elif _looks_local(path):
            try:
                folder = Path(resolve_model_path(path, f"{field}.path"))
            except ModelLoadError as error:
                problems.append(str(error))
                continue
            if not spec.trust_remote_code and _needs_custom_code(folder):
                problems.append(str(_custom_code_error(spec, field)))
            else:
                notes.append(f"{field}.path: local folder {folder} found")
                if field == "models.reward":
                    try:
                        notes.append(check_reward_length(spec, field))
                    except ModelLoadError as error:
                        problems.append(str(error))
        else:
            revision = f" at revision {spec.revision!r}" if spec.revision else ""
            notes.append(
                f"{field}.path: {path!r}{revision} is taken as a hub id; not checked (needs the network)"
            )
    if problems:
        raise ModelLoadError("; ".join(problems))
    return notes


def pick_device(device: str, field: str = "device") -> torch.device:
    """`auto` = CUDA when present, else CPU. `field` names the config field in errors."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"{field}: {device!r} was asked for but CUDA is not available")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"{field}: not a torch device: {device!r} ({_one_line(error)})") from None


def pick_dtype(dtype: str, device: torch.device, trained: bool = False) -> torch.dtype:
    """`auto` = bf16 on CUDA for frozen models, fp32 otherwise.

    Trained models (the policy) keep fp32 weights under `auto` even on CUDA: the trainer runs them
    under bf16 autocast, and AdamW updates on bf16 weights would round small steps away.
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and not trained else torch.float32
    return getattr(torch, dtype)


def _pretrained(loader, spec: ModelSpec, field: str, what: str, **kwargs):
    """`loader.from_pretrained(<resolved spec.path>, **kwargs)`, every failure one `ModelLoadError` line.

    `field` is the model's config section (e.g. ``models.reward``); `what` says what was loaded.
    """
    path = resolve_model_path(spec.path, f"{field}.path")
    try:
        return loader.from_pretrained(
            path, revision=spec.revision, trust_remote_code=spec.trust_remote_code, **kwargs
        )
    except Exception as error:
        # from_pretrained fails with many types (OSError for missing files or ids, ValueError for
        # unknown architectures and refused custom code, ImportError for packages custom code
        # needs, RuntimeError for mismatched weights); each becomes one line naming the field.
        # Refused custom code is told by transformers' own message, which names the argument.
        if not spec.trust_remote_code and "trust_remote_code" in str(error):
            raise _custom_code_error(spec, field) from None
        raise ModelLoadError(
            f"{field}.path: cannot load {what} {spec.path!r}: {type(error).__name__}: {_one_line(error)}"
        ) from None


def check_reward_length(spec: RewardModelSpec, field: str = "models.reward") -> str:
    """Refuse a ``max_length`` beyond the reward model's position limit, reading only its config and tokenizer.

    Loading caps it with a warning (`reward_checks.capped_max_length`); a check before any trial refuses
    it instead, so the config says what the model really reads.

    Returns:
        A note naming the limit, e.g. ``models.reward.max_length: 512 fits the 512 positions of 'rm'``.

    Raises:
        ModelLoadError: naming ``<field>.max_length``, the value and the limit.
    """
    from transformers import AutoConfig, AutoTokenizer

    model_config = _pretrained(AutoConfig, spec, field, "the config of")
    limit = position_limit(model_config, _pretrained(AutoTokenizer, spec, field, "the tokenizer of"))
    if limit is None:
        return f"{field}.max_length: {spec.path!r} states no position limit; {spec.max_length} not checked"
    if spec.max_length > limit:
        raise ModelLoadError(
            f"{field}.max_length: {spec.max_length} is above the {limit} positions {spec.path!r} takes; "
            f"set it to {limit} or less"
        )
    return f"{field}.max_length: {spec.max_length} fits the {limit} positions of {spec.path!r}"


def load_pretrained(loader, spec: ModelSpec, field: str, trained: bool = False, **kwargs) -> torch.nn.Module:
    """A model from `loader` (e.g. `AutoModelForCausalLM`) on the spec's device and dtype.

    Args:
        loader: a transformers auto class.
        spec: where the model comes from and how it is placed.
        field: the model's config section (e.g. ``models.policy``); every error names a field under it.
        trained: whether the model is trained (keeps fp32 weights under ``dtype: auto``).
        **kwargs: passed to `from_pretrained`.
    """
    device = pick_device(spec.device, f"{field}.device")
    model = _pretrained(
        loader, spec, field, "a model from", dtype=pick_dtype(spec.dtype, device, trained), **kwargs
    )
    return model.to(device)


def load_tokenizer(spec: ModelSpec, field: str = "model", padding_side: str = "left"):
    """The tokenizer of a model, with a pad token (EOS when it has none). `field` is the model's config section."""
    from transformers import AutoTokenizer

    tokenizer = _pretrained(AutoTokenizer, spec, field, "the tokenizer of")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def contiguous_lm_head(model: torch.nn.Module) -> None:
    """Give the LM head a contiguous input (a forward pre-hook on `get_output_embeddings()`).

    transformers' causal LMs apply the head to `hidden_states[:, -logits_to_keep:]`, a strided view. On
    CPU torch's linear then takes a batched-matmul path with the weight broadcast per sequence, about
    2x slower than the single matmul a contiguous input gets (SmolLM2-135M's 49152x576 head: 266 -> 147 ms
    for 4x25 positions, forward; the backward gains alike). Same values either way.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)


def load_policy(spec: ModelSpec, lora: LoraSpec | None = None, field: str = "models.policy"):
    """(model, tokenizer) of a causal LM; LoRA adapters attached when `lora.enabled`."""
    from transformers import AutoModelForCausalLM

    model = load_pretrained(AutoModelForCausalLM, spec, field, trained=True)
    contiguous_lm_head(model)
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

        reference = load_pretrained(AutoModelForCausalLM, spec, field)
        contiguous_lm_head(reference)
    elif hasattr(policy, "disable_adapter"):
        return None
    else:
        reference = copy.deepcopy(policy)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def load_reward_model(
    spec: RewardModelSpec, field: str = "models.reward", attn_implementation: str = "eager"
):
    """(model, tokenizer) of a sequence-classification reward model with one output, frozen.

    Eager attention is the default so the `attention` source can read attention weights.
    """
    from transformers import AutoModelForSequenceClassification

    model = load_pretrained(
        AutoModelForSequenceClassification, spec, field, num_labels=1, attn_implementation=attn_implementation
    )
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"{field}.path: {spec.path!r} has num_labels={model.config.num_labels}; a reward model needs 1"
        )
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
    try:
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing`, whose FutureWarning
            # (once per LoRA model) is about peft's code, not about anything a user can change.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as error:
        # peft raises ValueError for target modules the model lacks or that LoRA cannot adapt.
        raise ModelLoadError(f"models.lora.target_modules: {_one_line(error)}") from None


def is_peft_model(model: torch.nn.Module) -> bool:
    """True when `model` carries peft adapters (its reference is then itself with adapters disabled)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)
