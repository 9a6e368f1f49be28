"""GPU check: bf16 PPO throughput and attribution cost on realistic model shapes, the library alone.

Random-weight models of real shapes, built in memory from config objects (no download, no network):

- policies: SmolLM2-135M shape (Llama, 30 layers, 576 hidden) and Qwen2.5-0.5B shape (Qwen2, 24 layers,
  896 hidden), each with its own vocabulary size, a critic of the same backbone, and bf16 autocast
  (`dense_reward.ppo.trainer.PPOTrainer` on CUDA);
- reward models: BERT-base shape (12 layers, 768 hidden, an encoder) and, for the prompt cache,
  SmolLM2-135M shape with a `score` head (a causal RM) reading HH-RLHF-length prompts.

Tokenizers are built offline with `tokenizers`: a byte-level BPE whose merges spell every short
lower-case letter string up to the policy's vocabulary size (so every sampled id decodes to text),
and a WordPiece vocabulary of the BERT-base size built the same way.

Reported: PPO tokens/s (response tokens of the timed steps per second) and peak GPU memory per policy;
seconds per response of every source in `dense_reward.attribution.registry.EXPLAINERS` on each RM
(a source whose constructor needs more than the RM, or whose optional library such as captum is
not installed, is skipped and listed); ours against the plain
per-response loop for `shap` and `lime` (same calls, same values; ``batched=False, prompt_cache=False``).

Imports only torch, transformers, peft, pydantic, shap, lime, numpy (and their dependencies) and the
`dense_reward` library: no Ray, no MLflow, no BoTorch. Run ``tests/benchmarks/gpu_check.sh`` (GPU,
about 3-5 minutes) or ``python tests/benchmarks/gpu_check.py --device cpu --smoke`` (tiny sizes, seconds).
Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out`` (default ``docs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
LETTERS = "abcdefghijklmnopqrstuvwxyz"

POLICIES: dict[str, dict[str, Any]] = {
    "smollm2-135m": dict(
        kind="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b": dict(
        kind="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True,
    ),
}
SMOKE_POLICY = dict(
    kind="llama", vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=True,
)
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
SMOKE_BERT = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


# --------------------------------------------------------------------------------------------------
# offline tokenizers and random-weight models
# --------------------------------------------------------------------------------------------------


def letter_strings(prefixes: list[str]):
    """Every lower-case letter string, shortest first, each behind every prefix: (stem, last letter) pairs."""
    stems = list(prefixes)
    while True:
        grown = []
        for stem, letter in product(stems, LETTERS):
            yield stem, letter
            grown.append(stem + letter)
        stems = grown


def policy_tokenizer(vocab_size: int):
    """A byte-level BPE of exactly `vocab_size` ids (the last is ``<|endoftext|>``), left-padded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = []
    for stem, letter in letter_strings(["", "\u0120"]):  # U+0120 is the byte-level space
        if len(vocab) >= vocab_size - 1:
            break
        if stem and stem + letter not in vocab:
            vocab[stem + letter] = len(vocab)
            merges.append((stem, letter))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=special, eos_token=special, unk_token=special, pad_token=special,
        padding_side="left",
    )


def wordpiece_tokenizer(vocab_size: int):
    """A BERT-style WordPiece tokenizer of `vocab_size` tokens (letter strings and ``##`` pieces)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,!?:;'\"-()", *"0123456789"]
    for stem, letter in letter_strings(["", "##"]):
        if len(tokens) >= vocab_size:
            break
        tokens.append(stem + letter)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )


def decoder_config(shape: dict[str, Any], tokenizer, num_labels: int | None = None):
    from transformers import LlamaConfig, Qwen2Config

    fields = {k: v for k, v in shape.items() if k != "kind"}
    config_class = LlamaConfig if shape["kind"] == "llama" else Qwen2Config
    extra = {"num_labels": num_labels} if num_labels else {}
    return config_class(
        **fields, max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **extra,
    )


def build_policy(shape: dict[str, Any], device: torch.device):
    """Random-weight causal LM of `shape` (fp32 weights: PPO trains under bf16 autocast) and its tokenizer."""
    from transformers import AutoModelForCausalLM

    tokenizer = policy_tokenizer(shape["vocab_size"])
    config = decoder_config(shape, tokenizer)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with device:
        policy = AutoModelForCausalLM.from_config(config)
    return policy, tokenizer


def build_reward_models(smoke: bool, device: torch.device, batch_size: int) -> dict[str, Any]:
    """The BERT-base-shape encoder RM and the SmolLM2-shape causal RM, as `RewardModel`s (eager attention)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    from dense_reward.config import RewardModelSpec
    from dense_reward.reward_model import RewardModel

    models = {}
    bert_tokenizer = wordpiece_tokenizer((SMOKE_BERT if smoke else BERT_BASE)["vocab_size"])
    bert_config = BertConfig(**(SMOKE_BERT if smoke else BERT_BASE), num_labels=1, max_position_embeddings=512)
    causal_shape = SMOKE_POLICY if smoke else POLICIES["smollm2-135m"]
    causal_tokenizer = policy_tokenizer(causal_shape["vocab_size"])
    causal_tokenizer.padding_side = "right"
    causal_config = decoder_config(causal_shape, causal_tokenizer, num_labels=1)
    for name, config, tokenizer in (
        ("bert-base", bert_config, bert_tokenizer), ("smollm2-135m-rm", causal_config, causal_tokenizer)
    ):
        config._attn_implementation = "eager"  # the `attention` source reads attention weights
        torch.manual_seed(0)
        with device:
            module = AutoModelForSequenceClassification.from_config(config).eval().requires_grad_(False)
        spec = RewardModelSpec(path=f"random-{name}", batch_size=batch_size, max_length=512, device=str(device))
        models[name] = RewardModel(module, tokenizer, spec)
    return models


# --------------------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset (CUDA), else this process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompts_of(count: int, words: int, seed: int) -> list[str]:
    """Dialogue-like prompts of about `words` random letter words each."""
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(count):
        lengths = rng.integers(2, 9, words)
        text = " ".join("".join(rng.choice(list(LETTERS), n)) for n in lengths)
        prompts.append(f"Human: {text}\n\nAssistant:")
    return prompts


def ppo_throughput(name: str, shape: dict[str, Any], args: argparse.Namespace, device: torch.device) -> dict:
    """bf16 PPO steps (CUDA autocast) with a sparse reward from the BERT-base-shape RM; tokens/s and peak memory."""
    import copy

    from dense_reward.config import PPOConfig, ShapingConfig
    from dense_reward.ppo.trainer import PPOTrainer
    from dense_reward.ppo.value import Critic
    from dense_reward.shaping import DenseReward

    gc.collect()  # the previous policy, critic and optimiser state go before the next peak is measured
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    policy, tokenizer = build_policy(shape, device)
    critic = Critic(copy.deepcopy(policy.model), policy.config.hidden_size)
    reward = DenseReward(args.reward_models["bert-base"], tokenizer, ShapingConfig(sources=["sparse"]), {"sparse": 1.0})
    config = PPOConfig(
        batch_size=args.ppo_batch, mini_batch_size=args.ppo_batch // 2, update_epochs=2,
        max_new_tokens=args.response_tokens, lr_schedule="constant", seed=0,
    )
    trainer = PPOTrainer(config, policy, tokenizer, reward, critic=critic)
    prompts = prompts_of(args.ppo_batch * (args.ppo_steps + 1), args.prompt_words, seed=1)
    times, tokens = [], []
    for step in range(args.ppo_steps + 1):
        synchronize(device)
        started = time.perf_counter()
        metrics = trainer.step(prompts[step * args.ppo_batch : (step + 1) * args.ppo_batch])
        synchronize(device)
        times.append(time.perf_counter() - started)
        tokens.append(metrics["response_length"] * args.ppo_batch)
    result = {
        "parameters_millions": sum(p.numel() for p in policy.parameters()) / 1e6,
        "batch_size": args.ppo_batch,
        "max_new_tokens": args.response_tokens,
        "timed_steps": args.ppo_steps,
        "first_step_seconds": times[0],
        "step_seconds_median": statistics.median(times[1:]),
        "tokens_per_second": sum(tokens[1:]) / sum(times[1:]),
        "peak_memory_mb": peak_memory_mb(device),
    }
    del trainer, policy, critic
    print(f"  {name}: {result['tokens_per_second']:.0f} tokens/s, peak {result['peak_memory_mb']:.0f} MiB")
    return result


def attribution_batch(reward_model, args: argparse.Namespace, long_prompts: bool):
    """A ScoredBatch of random responses (policy tokens of the SmolLM2-shape vocabulary, decoded)."""
    from dense_reward.attribution import ScoredBatch, policy_token_offsets

    tokenizer = args.response_tokenizer
    rng = np.random.default_rng(2)
    eos = tokenizer.eos_token_id
    ids = [[int(t) for t in rng.integers(256, eos, args.response_tokens - 1)] + [eos] for _ in range(args.responses)]
    decoded = [policy_token_offsets(tokenizer, row) for row in ids]
    prompts = prompts_of(args.responses, args.long_prompt_words if long_prompts else args.prompt_words, seed=3)
    texts = [text for text, _ in decoded]
    scores = reward_model.score(prompts, texts).double().numpy()
    return ScoredBatch(prompts, texts, [offsets for _, offsets in decoded], scores)


def timed(device: torch.device, function) -> tuple[float, Any]:
    synchronize(device)
    started = time.perf_counter()
    value = function()
    synchronize(device)
    return time.perf_counter() - started, value


def attribution_costs(name: str, reward_model, args: argparse.Namespace, device: torch.device) -> dict:
    """Seconds per response of every registered source, and ours vs plain for shap and lime."""
    from dense_reward.attribution.registry import EXPLAINERS, build_explainer
    from dense_reward.errors import UserError

    batch = attribution_batch(reward_model, args, long_prompts=reward_model.is_causal)
    items = reward_model.encode(batch.prompts, batch.responses)
    options = {"shap": {"max_evals": args.max_evals}, "lime": {"num_samples": args.num_samples}}
    sources, skipped = {}, {}
    for source in EXPLAINERS:
        try:
            explainer = build_explainer(source, reward_model, **options.get(source, {}))
        except ModuleNotFoundError as error:  # its optional library (imported when it is built), e.g. captum
            skipped[source] = f"needs the {error.name!r} package, not installed"
            continue
        except (TypeError, ValueError, UserError) as error:  # e.g. a source that needs a model of its own
            skipped[source] = str(error).splitlines()[0]
            continue
        try:
            explainer.explain(batch.select([0]))  # warm-up (kernels, shap's numba code)
        except Exception as error:  # a source whose optional library is not installed (e.g. captum)
            missing = error if isinstance(error, ModuleNotFoundError) else error.__cause__
            if not isinstance(missing, ModuleNotFoundError):
                raise
            skipped[source] = f"needs the {missing.name!r} package, not installed"
            continue
        seconds, _ = timed(device, lambda explainer=explainer: explainer.explain(batch))
        sources[source] = seconds / len(batch)
    versus = {}
    for source in ("shap", "lime"):
        option = options[source]
        plain = build_explainer(source, reward_model, **option, batched=False, prompt_cache=False)
        ours = build_explainer(source, reward_model, **option)
        plain.credit(batch.select([0]))  # warm-up of the plain path too
        pairs = []
        for _ in range(args.repeats):  # alternating, so load changes hit both alike
            plain_seconds, plain_credit = timed(device, lambda plain=plain: plain.credit(batch))
            ours_seconds, ours_credit = timed(device, lambda ours=ours: ours.credit(batch))
            pairs.append((plain_seconds, ours_seconds))
        difference = max(
            float(np.max(np.abs(a.values - b.values), initial=0.0)) for a, b in zip(ours_credit, plain_credit, strict=True)
        )
        versus[source] = {
            "plain_seconds_per_response": statistics.median(p for p, _ in pairs) / len(batch),
            "ours_seconds_per_response": statistics.median(o for _, o in pairs) / len(batch),
            "ratio": statistics.median(p / o for p, o in pairs),
            "max_abs_difference": difference,
            **option,
        }
    result = {
        "prompt_rm_tokens": float(np.mean([item.response_start for item in items])),
        "response_rm_tokens": float(np.mean([item.response_length for item in items])),
        "prompt_cache": reward_model.supports_prompt_cache,
        "seconds_per_response": sources,
        "skipped_sources": skipped,
        "vs_plain": versus,
    }
    print(f"  {name}: " + ", ".join(f"{s} {t * 1000:.1f} ms" for s, t in sources.items()))
    for source, row in versus.items():
        print(f"  {name} {source}: ours {row['ratio']:.1f}x the plain loop, max |diff| {row['max_abs_difference']:.1e}")
    return result


# --------------------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, save) -> dict[str, Any]:
    """The whole check; `save(report)` is called after every part, so a run cut short keeps what it measured."""
    from dense_reward.models import pick_device, pick_dtype

    device = pick_device(args.device, "--device")
    report: dict[str, Any] = {
        "settings": {
            key: getattr(args, key)
            for key in (
                "smoke", "ppo_batch", "ppo_steps", "response_tokens", "prompt_words", "long_prompt_words",
                "responses", "max_evals", "num_samples", "rm_batch_size", "repeats",
            )
        },
        "environment": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "peak_memory": "peak GPU memory allocated" if device.type == "cuda" else "peak process RSS",
        },
    }
    started = time.perf_counter()
    print("reward models:")
    args.reward_models = build_reward_models(args.smoke, device, args.rm_batch_size)
    rm_dtype = pick_dtype("auto", device)  # how `dense_reward.models` loads an RM: bf16 on CUDA, fp32 on CPU
    for reward_model in args.reward_models.values():
        reward_model.model.to(rm_dtype)
    report["environment"]["reward_model_dtype"] = str(rm_dtype).removeprefix("torch.")
    print("PPO (bf16 autocast on CUDA):")
    shapes = {"tiny-llama": SMOKE_POLICY} if args.smoke else POLICIES
    report["ppo"], report["attribution"] = {}, {}
    for name, shape in shapes.items():
        report["ppo"][name] = ppo_throughput(name, shape, args, device)
        report["seconds"] = time.perf_counter() - started
        save(report)
    print("attribution:")
    args.response_tokenizer = policy_tokenizer((SMOKE_POLICY if args.smoke else POLICIES["smollm2-135m"])["vocab_size"])
    for name, reward_model in args.reward_models.items():
        report["attribution"][name] = attribution_costs(name, reward_model, args, device)
        report["seconds"] = time.perf_counter() - started
        save(report)
    return report


def markdown(report: dict[str, Any]) -> str:
    s, env = report["settings"], report["environment"]
    lines = [
        "# GPU check",
        "",
        f"{env['device']}, torch {env['torch']}, RMs in {env['reward_model_dtype']}; "
        f"{'smoke sizes' if s['smoke'] else 'full sizes'}; whole check {report['seconds']:.0f} s.",
        "",
        f"## PPO (bf16 autocast on CUDA; batch {s['ppo_batch']}, {s['response_tokens']} new tokens, "
        f"{s['ppo_steps']} timed steps after one warm-up, critic of the policy's shape, sparse reward from the "
        "BERT-base-shape RM; memory includes both RMs, resident throughout)",
        "",
        f"| policy | parameters (M) | tokens / s | median step s | {env['peak_memory']} (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report["ppo"].items():
        lines.append(
            f"| {name} | {row['parameters_millions']:.0f} | {row['tokens_per_second']:.0f} | "
            f"{row['step_seconds_median']:.2f} | {row['peak_memory_mb']:.0f} |"
        )
    for name, row in report["attribution"].items():
        lines += [
            "",
            f"## Attribution on {name} ({row['prompt_rm_tokens']:.0f} prompt + {row['response_rm_tokens']:.0f} "
            f"response RM tokens, {s['responses']} responses; prompt cache: {'yes' if row['prompt_cache'] else 'no'})",
            "",
            "| source | ms / response |",
            "|---|---:|",
        ]
        lines += [f"| {source} | {seconds * 1000:.1f} |" for source, seconds in row["seconds_per_response"].items()]
        lines += [f"| {source} | skipped: {why} |" for source, why in row["skipped_sources"].items()]
        lines += [
            "",
            "| source | samples | plain ms / response | ours ms / response | median ratio | max abs diff |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for source, c in row["vs_plain"].items():
            samples = c.get("max_evals", c.get("num_samples"))
            lines.append(
                f"| {source} | {samples} | {c['plain_seconds_per_response'] * 1000:.1f} | "
                f"{c['ours_seconds_per_response'] * 1000:.1f} | {c['ratio']:.1f}x | {c['max_abs_difference']:.1e} |"
            )
    lines += [
        "",
        "Plain: one explanation after another, every shap/lime model call one RM forward. Ours: the calls of a "
        "batch merged into shared forwards, and on a causal RM each prompt encoded once. In bf16 the two differ "
        "by bf16 rounding of differently batched forwards; in fp32 they agree within 1e-5.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models and sizes (seconds on a CPU)")
    parser.add_argument("--ppo-batch", type=int, default=32)
    parser.add_argument("--ppo-steps", type=int, default=3, help="timed PPO steps after one warm-up step")
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--prompt-words", type=int, default=24, help="words of a short prompt")
    parser.add_argument("--long-prompt-words", type=int, default=120, help="words of a causal RM's prompt")
    parser.add_argument("--responses", type=int, default=32, help="responses explained per source")
    parser.add_argument("--max-evals", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--rm-batch-size", type=int, default=256, help="largest RM forward batch")
    parser.add_argument("--repeats", type=int, default=3, help="paired timings of plain and ours (median ratio)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.ppo_batch, args.ppo_steps, args.response_tokens = 4, 1, 8
        args.prompt_words, args.long_prompt_words, args.responses = 6, 20, 3
        args.max_evals, args.num_samples, args.rm_batch_size, args.repeats = 12, 8, 64, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def save(report: dict[str, Any]) -> None:
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "gpu_check.md").write_text(markdown(report))

    run(args, save)
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
