"""Model loading through the same from_pretrained path as hub models, on locally built folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dense_reward.config import LoraSpec, ModelSpec, RewardModelSpec
from dense_reward.models import (
    ModelLoadError,
    load_policy,
    load_reference,
    load_reward_model,
    resolve_model_path,
)


def test_builtin_models_are_built_once_and_cached(tiny_policy_spec) -> None:
    first = resolve_model_path(tiny_policy_spec.path)
    stamp = (Path(first) / "config.json").stat().st_mtime_ns
    assert resolve_model_path(tiny_policy_spec.path) == first
    assert (Path(first) / "config.json").stat().st_mtime_ns == stamp
    assert (Path(first) / "model.safetensors").is_file()


def test_policy_and_reward_model_have_different_tokenizers(tiny_policy_spec, tiny_rm_spec) -> None:
    policy, policy_tok = load_policy(tiny_policy_spec)
    reward, reward_tok = load_reward_model(tiny_rm_spec)
    text = "Thanks, that is really helpful!"
    assert policy_tok(text)["input_ids"] != reward_tok(text)["input_ids"]
    assert policy_tok.padding_side == "left" and reward_tok.padding_side == "right"
    assert reward.config.num_labels == 1
    assert not any(p.requires_grad for p in reward.parameters())
    batch = reward_tok([text, "bad"], padding=True, return_tensors="pt")
    assert reward(**batch).logits.shape == (2, 1)
    out = policy.generate(**policy_tok([text], return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 0


def test_local_folder_loads_like_a_hub_model(tmp_path: Path, tiny_policy_spec) -> None:
    policy, tokenizer = load_policy(tiny_policy_spec)
    policy.save_pretrained(tmp_path / "copy")
    tokenizer.save_pretrained(tmp_path / "copy")
    loaded, _ = load_policy(ModelSpec(path=str(tmp_path / "copy")))
    for (name, a), (_, b) in zip(policy.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_reference_is_a_frozen_copy(tiny_policy_spec) -> None:
    policy, _ = load_policy(tiny_policy_spec)
    reference = load_reference(policy, None)
    assert reference is not policy
    assert not any(p.requires_grad for p in reference.parameters())
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    assert not torch.equal(next(policy.parameters()), next(reference.parameters()))


def test_lora_policy_uses_adapters_and_no_separate_reference(tiny_policy_spec) -> None:
    policy, _ = load_policy(tiny_policy_spec, LoraSpec(enabled=True, r=4, target_modules=["c_attn"]))
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert load_reference(policy, None) is None


def test_missing_local_folder_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="models.policy: local model folder not found"):
        load_policy(ModelSpec(path=str(tmp_path / "nothing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_reward_model(RewardModelSpec(path=str(tmp_path / "empty")))
    with pytest.raises(ModelLoadError, match="unknown built-in model 'gpt-17'"):
        load_policy(ModelSpec(path="builtin:gpt-17"))


def test_unknown_hub_id_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="models.policy: cannot load 'nobody/no-such-model'"):
        load_policy(ModelSpec(path="nobody/no-such-model"))


def test_cuda_device_is_used_or_refused_clearly(tiny_policy_spec) -> None:
    spec = tiny_policy_spec.model_copy(update={"device": "cuda"})
    if torch.cuda.is_available():
        policy, _ = load_policy(spec)
        assert next(policy.parameters()).device.type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_policy(spec)
