"""Save and restore a PPO run: weights (safetensors), optimizer, LR schedule, RNG states and step.

Nothing here unpickles arbitrary objects: weights and RNG tensors are safetensors, the optimizer and
scheduler states are read with `torch.load(weights_only=True)`, and the step counter and the numpy /
python RNG states are JSON. Under LoRA only the trainable parameters (the adapters, plus any value head)
are written; without LoRA the whole model is.

Layout of a checkpoint folder:
    policy.safetensors   value.safetensors (critic or value head)   optimizer.pt   scheduler.pt
    rng.safetensors (torch CPU/CUDA generators)   trainer_state.json (step, numpy/python RNG, metadata)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dense_reward.errors import UserError

FILES = ("policy.safetensors", "optimizer.pt", "scheduler.pt", "rng.safetensors", "trainer_state.json")


class CheckpointError(UserError):
    """A checkpoint folder is missing a file or does not fit the model it is loaded into."""


def trainable_state(model: nn.Module, adapters_only: bool) -> dict[str, torch.Tensor]:
    """The tensors to save: trainable parameters under LoRA, else the whole state dict.

    Tied weights (GPT-2's `lm_head` and `wte`) are stored once; `load_weights` restores the tie.
    """
    if adapters_only:
        state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    else:
        state = model.state_dict()
    seen: set[int] = set()
    unique = {}
    for name, tensor in state.items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel() > 0:
            continue
        seen.add(key)
        unique[name] = tensor.detach().contiguous().cpu()
    return unique


def save_weights(model: nn.Module, path: Path, adapters_only: bool) -> None:
    """Write `model`'s weights (or only its trainable ones) to a safetensors file."""
    save_file(trainable_state(model, adapters_only), str(path))


def load_weights(model: nn.Module, path: Path, adapters_only: bool) -> None:
    """Copy the tensors of a safetensors file into `model`; every expected tensor must be there."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint: {path} not found")
    tensors = load_file(str(path))
    expected = trainable_state(model, adapters_only)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint: {path} does not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]}); "
            "was it saved with the same models and LoRA settings?"
        )
    model.load_state_dict(tensors, strict=False)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(torch generator states as tensors, numpy and python states as JSON-able data)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    plain = {
        "numpy": [kind, keys.tolist(), position, has_gauss, cached_gaussian],
        "python": [version, list(python_state), gauss_next],
    }
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    """Restore the states returned by `rng_state`."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    kind, keys, position, has_gauss, cached_gaussian = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    version, python_state, gauss_next = plain["python"]
    random.setstate((version, tuple(python_state), gauss_next))


def save_checkpoint(
    directory: str | Path,
    policy: nn.Module,
    value_model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    adapters_only: bool,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder (see the module docstring) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(policy, directory / "policy.safetensors", adapters_only)
    if value_model is not None:
        save_weights(value_model, directory / "value.safetensors", adapters_only)
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    torch.save(scheduler.state_dict(), directory / "scheduler.pt")
    rng_tensors, rng_plain = rng_state()
    save_file(rng_tensors, str(directory / "rng.safetensors"))
    state = {"step": step, "adapters_only": adapters_only, "rng": rng_plain, "metadata": metadata or {}}
    (directory / "trainer_state.json").write_text(json.dumps(state))
    return directory


def load_checkpoint(
    directory: str | Path,
    policy: nn.Module,
    value_model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    adapters_only: bool,
) -> dict[str, Any]:
    """Restore a folder written by `save_checkpoint` in place; returns the trainer state (with `step`)."""
    directory = Path(directory)
    missing = [name for name in FILES if not (directory / name).is_file()]
    if value_model is not None and not (directory / "value.safetensors").is_file():
        missing.append("value.safetensors")
    if missing:
        raise CheckpointError(f"checkpoint: {directory} is missing {missing}; is it a PPO checkpoint folder?")
    state = json.loads((directory / "trainer_state.json").read_text())
    if state["adapters_only"] != adapters_only:
        raise CheckpointError(
            f"checkpoint: {directory} was saved with models.lora.enabled={state['adapters_only']}, "
            f"but the trainer has models.lora.enabled={adapters_only}"
        )
    load_weights(policy, directory / "policy.safetensors", adapters_only)
    if value_model is not None:
        load_weights(value_model, directory / "value.safetensors", adapters_only)
    device = next(policy.parameters()).device
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    set_rng_state(load_file(str(directory / "rng.safetensors")), state["rng"])
    return state
