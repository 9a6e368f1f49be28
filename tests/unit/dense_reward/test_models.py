"""Model loading through the same from_pretrained path as hub models, on locally built folders."""

from __future__ import annotations

import json
import shutil
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from dense_reward.config import Config, LoraSpec, ModelSpec, RewardModelSpec
from dense_reward.models import (
    ModelLoadError,
    check_model_paths,
    load_policy,
    load_reference,
    load_reward_model,
    load_tokenizer,
    resolve_model_path,
)
from tests.support.paths import TINY_CONFIG

CUSTOM_MODULE = textwrap.dedent(
    """
    import torch
    from transformers import PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput


    class BagConfig(PretrainedConfig):
        model_type = "dense-reward-test-bag"

        def __init__(self, vocab_size=512, hidden_size=8, pad_token_id=None, **kwargs):
            self.vocab_size = vocab_size
            self.hidden_size = hidden_size
            self.pad_token_id = pad_token_id
            super().__init__(**kwargs)


    class BagRewardModel(PreTrainedModel):
        config_class = BagConfig

        def __init__(self, config):
            super().__init__(config)
            self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
            self.score = torch.nn.Linear(config.hidden_size, config.num_labels)
            self.post_init()

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            return SequenceClassifierOutput(logits=self.score(self.embed(input_ids).mean(1)))
    """
)


@pytest.fixture()
def custom_code_folder(tmp_path: Path, tiny_rm_spec) -> Path:
    """A reward model whose architecture only its own `bag_model.py` defines (config.json `auto_map`)."""
    import importlib.util

    folder = tmp_path / "custom-rm"
    folder.mkdir()
    (folder / "bag_model.py").write_text(CUSTOM_MODULE)
    spec = importlib.util.spec_from_file_location("bag_model_for_test", folder / "bag_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.BagRewardModel(module.BagConfig(vocab_size=512, num_labels=1))
    model.save_pretrained(folder)
    settings = json.loads((folder / "config.json").read_text())
    settings["auto_map"] = {
        "AutoConfig": "bag_model.BagConfig",
        "AutoModelForSequenceClassification": "bag_model.BagRewardModel",
    }
    (folder / "config.json").write_text(json.dumps(settings))
    load_tokenizer(tiny_rm_spec).save_pretrained(folder)
    return folder


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


@pytest.mark.parametrize("lora", [False, True])
def test_lm_head_gets_a_contiguous_input_and_the_same_logits(tiny_policy_spec, lora: bool) -> None:
    from transformers import AutoModelForCausalLM

    policy, _ = load_policy(tiny_policy_spec, LoraSpec(enabled=lora, r=4, target_modules=["c_attn"]))
    plain = AutoModelForCausalLM.from_pretrained(resolve_model_path(tiny_policy_spec.path))
    seen: list[bool] = []
    policy.get_output_embeddings().register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    ids = torch.randint(0, plain.config.vocab_size, (3, 9))
    with torch.no_grad():
        # logits_to_keep slices the last hidden states: a strided input without the hook.
        ours = policy(input_ids=ids, logits_to_keep=4).logits
        theirs = plain(input_ids=ids, logits_to_keep=4).logits
    assert seen == [True]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_lora_policy_uses_adapters_and_no_separate_reference(tiny_policy_spec) -> None:
    with warnings.catch_warnings():
        # peft's read of transformers' deprecated `is_gradient_checkpointing` stays quiet.
        warnings.filterwarnings("error", message=".*is_gradient_checkpointing", category=FutureWarning)
        policy, _ = load_policy(tiny_policy_spec, LoraSpec(enabled=True, r=4, target_modules=["c_attn"]))
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert load_reference(policy, None) is None


def test_missing_local_folder_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="models.policy.path: local model folder not found"):
        load_policy(ModelSpec(path=str(tmp_path / "nothing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="models.reward.path: .* has no config.json"):
        load_reward_model(RewardModelSpec(path=str(tmp_path / "empty")))
    with pytest.raises(ModelLoadError, match="models.policy.path: unknown built-in model 'gpt-17'"):
        load_policy(ModelSpec(path="builtin:gpt-17"))


def test_unknown_hub_id_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelLoadError, match="models.policy.path: cannot load a model from 'nobody/no-such-model'"
    ) as caught:
        load_policy(ModelSpec(path="nobody/no-such-model"))
    assert "\n" not in str(caught.value)


def test_custom_code_without_trust_is_one_line_naming_the_fields(custom_code_folder: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_reward_model(RewardModelSpec(path=str(custom_code_folder)))
    assert str(caught.value) == (
        f"models.reward.path: {custom_code_folder} needs custom code; "
        "set models.reward.trust_remote_code: true if you trust it"
    )


def test_custom_code_loads_when_trusted(custom_code_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from transformers import dynamic_module_utils

    # transformers copies trusted code into its modules cache; keep that out of the user's home.
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    model, tokenizer = load_reward_model(
        RewardModelSpec(path=str(custom_code_folder), trust_remote_code=True)
    )
    assert type(model).__name__ == "BagRewardModel"
    batch = tokenizer(["thanks, that helps"], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 1)


def test_auto_map_on_an_architecture_transformers_knows_needs_no_trust(tmp_path: Path, tiny_rm_spec) -> None:
    folder = tmp_path / "rm-with-auto-map"
    shutil.copytree(resolve_model_path(tiny_rm_spec.path), folder)
    settings = json.loads((folder / "config.json").read_text())
    settings["auto_map"] = {
        "AutoModelForSequenceClassification": "modeling_bert.BertForSequenceClassification"
    }
    (folder / "config.json").write_text(json.dumps(settings))
    spec = RewardModelSpec(path=str(folder))
    model, _ = load_reward_model(spec)
    assert type(model).__name__ == "BertForSequenceClassification"
    config = Config.model_validate(
        {
            "models": {"policy": {"path": "builtin:tiny-gpt2"}, "reward": {"path": str(folder)}},
            "data": {"source": "builtin:tiny-prompts"},
        }
    )
    assert f"models.reward.path: local folder {folder} found" in check_model_paths(config)


def test_damaged_weights_are_one_line_naming_the_field(tmp_path: Path, tiny_policy_spec) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(resolve_model_path(tiny_policy_spec.path), folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(
        ModelLoadError, match=r"^models.policy.path: cannot load a model from '.*damaged'"
    ) as caught:
        load_policy(ModelSpec(path=str(folder)))
    assert "\n" not in str(caught.value)


def test_lora_target_modules_the_model_lacks_name_the_field(tiny_policy_spec) -> None:
    with pytest.raises(ModelLoadError, match="^models.lora.target_modules: ") as caught:
        load_policy(tiny_policy_spec, LoraSpec(enabled=True, target_modules=["no_such_projection"]))
    assert "\n" not in str(caught.value)


def test_check_model_paths_without_loading(tmp_path: Path, custom_code_folder: Path) -> None:
    def config(policy: str, reward: str, reference: str | None = None, **reward_extra: object) -> Config:
        models = {"policy": {"path": policy}, "reward": {"path": reward, **reward_extra}}
        if reference is not None:
            models["reference"] = {"path": reference}
        return Config.model_validate({"models": models, "data": {"source": "builtin:tiny-prompts"}})

    notes = check_model_paths(config("builtin:tiny-gpt2", "nobody/some-rm", reference="builtin:tiny-gpt2"))
    assert notes == [
        "models.policy.path: builtin:tiny-gpt2 is a built-in model (built on first use)",
        "models.reward.path: 'nobody/some-rm' is taken as a hub id; not checked (needs the network)",
        "models.reference.path: builtin:tiny-gpt2 is a built-in model (built on first use)",
    ]
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ModelLoadError) as caught:
        check_model_paths(config("builtin:gpt-17", str(missing)))
    assert str(caught.value) == (
        "models.policy.path: unknown built-in model 'gpt-17'; known: "
        "['tiny-gpt2', 'tiny-rm', 'smollm2-135m-instruct', 'minilm-rm', 'tiny-gpt2-dpo', "
        "'smollm2-135m-instruct-dpo', 'credit-gym-policy', 'credit-gym-rm', 'credit-gym-policy-dpo']; "
        f"models.reward.path: local model folder not found: {missing}"
    )
    with pytest.raises(ModelLoadError, match="models.reward.trust_remote_code: true"):
        check_model_paths(config("builtin:tiny-gpt2", str(custom_code_folder)))
    trusted = check_model_paths(config("builtin:tiny-gpt2", str(custom_code_folder), trust_remote_code=True))
    assert trusted[1] == f"models.reward.path: local folder {custom_code_folder} found"


def test_cuda_device_is_used_or_refused_clearly(tiny_policy_spec) -> None:
    spec = tiny_policy_spec.model_copy(update={"device": "cuda"})
    if torch.cuda.is_available():
        policy, _ = load_policy(spec)
        assert next(policy.parameters()).device.type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_policy(spec)


def test_a_reward_max_length_past_the_position_limit_is_refused_before_any_trial(tmp_path: Path, tiny_rm_spec) -> None:
    """`config validate` and the sweep's pre-flight refuse it (loading alone would only cap it)."""
    import yaml

    from tune_jobs.cli import main
    from tune_jobs.config import load_sweep_config
    from tune_jobs.sweep import preflight

    folder = tmp_path / "rm"
    shutil.copytree(resolve_model_path(tiny_rm_spec.path), folder)
    data = yaml.safe_load(TINY_CONFIG.read_text())
    data["models"]["reward"] = {"path": str(folder), "max_length": 2000}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(data))
    expected = f"models.reward.max_length: 2000 is above the 512 positions '{folder}' takes; set it to 512 or less"
    with pytest.raises(ModelLoadError) as caught:
        check_model_paths(load_sweep_config(path))
    assert str(caught.value) == expected
    with pytest.raises(ModelLoadError, match=r"^models\.reward\.max_length: 2000"):
        preflight(load_sweep_config(path))
    assert main(["config", "validate", str(path)]) == 2

    data["models"]["reward"]["max_length"] = 256
    path.write_text(yaml.safe_dump(data))
    assert f"models.reward.max_length: 256 fits the 512 positions of '{folder}'" in check_model_paths(
        load_sweep_config(path)
    )
