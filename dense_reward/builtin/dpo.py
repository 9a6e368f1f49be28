"""Build a DPO-tuned policy offline from built-in parts: a policy, a reward model that ranks its samples, prompts.

Direct preference optimisation (Rafailov et al., arXiv 2305.18290): for a prompt x with a chosen
response y_w and a rejected y_l, minimise

    -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

where pi starts as, and pi_ref stays, the base policy. The pairs are on-policy: two sampled responses
per prompt (in the policy's chat template when it has one), and the one the reward model scores
higher (reading ``prompt + "\\n" + response``) is chosen; ties are dropped. The result is what the
`log_ratio` credit source reads, with the base policy as its reference. A `DPORecipe` names the
built-ins, so the same builder makes a DPO policy for any built-in task (see the registry).
Like every builder here it uses transformers directly, not the library.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DPORecipe:
    """What a DPO-tuned built-in policy is made of, and how it is trained."""

    policy: str
    """Built-in name of the base policy (also the reference)."""
    reward: str
    """Built-in name of the sequence-classification reward model that ranks each pair."""
    prompts: str
    """Built-in name of the prompt dataset."""
    pairs: int = 64
    """Prompts sampled (two responses each)."""
    max_new_tokens: int = 16
    """Length cap of a sampled response."""
    beta: float = 0.1
    """DPO's beta (strength of the implicit KL to the reference)."""
    epochs: int = 3
    """Passes over the preference pairs."""
    batch_size: int = 8
    """Pairs per optimiser step."""
    learning_rate: float = 1e-4
    """AdamW learning rate."""
    seed: int = 0
    """Seed of the prompt choice, the sampling and the pair order."""


def build_dpo_policy(
    folder: Path,
    progress: Callable[[str], None],
    recipe: DPORecipe,
    resolve: Callable[[str], Path],
    dataset_rows: Callable[[str], list[dict[str, Any]]],
) -> Path:
    """Sample pairs with the base policy, rank them with the RM, train with DPO, save into `folder`.

    Args:
        folder: where the model (safetensors), its tokenizer and ``dpo.json`` (the recipe, the pairs kept,
            each epoch's loss and pair accuracy) are written.
        progress: receives one line per phase.
        recipe: the built-ins and the training settings.
        resolve: built-in model name -> its folder (built on first use).
        dataset_rows: built-in dataset name -> its ``{"prompt": ...}`` rows.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(recipe.seed)
    base = resolve(recipe.policy)
    tokenizer = AutoTokenizer.from_pretrained(base)
    policy = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    raw = [row["prompt"] for row in dataset_rows(recipe.prompts)]
    random.Random(recipe.seed).shuffle(raw)
    raw = raw[: recipe.pairs]
    texts = [_chat(tokenizer, prompt) for prompt in raw]
    query = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
    query_ids, query_mask = query["input_ids"], query["attention_mask"]  # (P, Tq)

    # ---- pairs: two samples per prompt, ranked by the RM ----------------------------------------
    policy.eval()
    samples = [_sample(policy, tokenizer, query_ids, query_mask, recipe.max_new_tokens) for _ in range(2)]
    scores = [_score(resolve(recipe.reward), raw, tokenizer, response, mask) for response, mask in samples]
    first_wins = scores[0] > scores[1]  # (P,)
    keep = (scores[0] != scores[1]).nonzero().flatten()
    progress(f"DPO pairs: {len(keep)} of {len(raw)} prompts (ties dropped)")

    def pair_logprobs(model, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) summed response log-probs, each (N,), of the pairs at `rows`."""
        sums = [_logprob(model, query_ids[rows], query_mask[rows], r[rows], m[rows]) for r, m in samples]
        wins = first_wins[rows]
        return torch.where(wins, sums[0], sums[1]), torch.where(wins, sums[1], sums[0])

    with torch.no_grad():
        ref_chosen, ref_rejected = pair_logprobs(reference, keep)  # (K,) each

    # ---- DPO ------------------------------------------------------------------------------------
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=recipe.learning_rate)
    order = random.Random(recipe.seed + 1)
    history = []
    for epoch in range(recipe.epochs):
        positions = list(range(len(keep)))
        order.shuffle(positions)
        losses, correct = [], []
        for start in range(0, len(positions), recipe.batch_size):
            batch = torch.tensor(positions[start : start + recipe.batch_size])
            chosen, rejected = pair_logprobs(policy, keep[batch])
            margin = recipe.beta * ((chosen - ref_chosen[batch]) - (rejected - ref_rejected[batch]))  # (N,)
            loss = -torch.nn.functional.logsigmoid(margin).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            correct += (margin > 0).tolist()
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), "pair_accuracy": sum(correct) / len(correct)})
        progress(f"DPO epoch {epoch + 1}: loss {history[-1]['loss']:.4f}, pair accuracy {history[-1]['pair_accuracy']:.2f}")

    folder.mkdir(parents=True, exist_ok=True)
    policy.eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    summary = {"recipe": asdict(recipe), "pairs_kept": len(keep), "history": history}
    (folder / "dpo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return folder


def _chat(tokenizer, prompt: str) -> str:
    """The prompt in the tokenizer's chat template with the generation prompt, or as it is when there is none."""
    if not getattr(tokenizer, "chat_template", None):
        return prompt
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _sample(policy, tokenizer, query_ids, query_mask, max_new_tokens: int):
    """One sampled response per prompt: ids (P, Tr) and mask (P, Tr), 1 up to and including the first EOS."""
    import torch

    with torch.no_grad():
        sequences = policy.generate(
            input_ids=query_ids, attention_mask=query_mask, do_sample=True, top_k=0, max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    response = sequences[:, query_ids.shape[1] :]
    is_eos = (response == tokenizer.eos_token_id).long()
    mask = ((is_eos.cumsum(dim=1) - is_eos) == 0).long()
    return torch.where(mask.bool(), response, tokenizer.pad_token_id), mask


def _score(reward_folder: Path, prompts: list[str], tokenizer, response, mask):
    """(P,) reward-model scores of the decoded responses."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reward_tokenizer = AutoTokenizer.from_pretrained(reward_folder)
    reward = AutoModelForSequenceClassification.from_pretrained(reward_folder).eval()
    replies = [tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(response, mask, strict=True)]
    texts = [f"{prompt}\n{reply}" for prompt, reply in zip(prompts, replies, strict=True)]
    encoded = reward_tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        return reward(**encoded).logits[:, 0].float()


def _logprob(model, query_ids, query_mask, response, mask):
    """(N,) summed log-probabilities of the responses (masked tokens left out) given their left-padded prompts."""
    import torch

    input_ids = torch.cat([query_ids, response], dim=1)  # (N, Tq + Tr)
    attention_mask = torch.cat([query_mask, mask], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    logits = logits[:, query_ids.shape[1] - 1 : -1].float()  # (N, Tr, V): position p predicts token p + 1
    picked = torch.log_softmax(logits, dim=-1).gather(-1, response.unsqueeze(-1)).squeeze(-1)  # (N, Tr)
    return (picked * mask).sum(dim=1)
