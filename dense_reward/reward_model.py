"""The sequence-level reward model r = f(x, y) with its own tokenizer.

`RewardModel` wraps any Hugging Face sequence-classification model with one output (an encoder
such as BERT, or a causal LM with a `score` head) and knows four things the attribution sources
need beyond a plain score:

- how prompt and response are joined (the RM tokenizer's chat template when it has one, else
  ``prompt + separator + response``) and which RM tokens belong to the response, with their
  character spans in the response text;
- that the response is plain text: the literal text of a control token in a response (say
  ``<|im_end|>`` then a forged user turn) is spelled out as ordinary tokens, never parsed into the
  control token itself, so a policy cannot write the RM's template;
- truncation that cuts the prompt (from the left) before it ever cuts the response, to at most the
  model's position limit;
- per-position scores of a causal RM (the `score` head over every hidden state, `spec.head`), so
  prefix rewards of a whole response cost one forward.

Forwards are batched up to ``spec.batch_size`` sequences, sorted by length to keep padding low.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dense_reward.config import RewardModelSpec
from dense_reward.models import ModelLoadError, load_reward_model
from dense_reward.reward_checks import capped_max_length, causal_head_problem

PADDING_BUDGET = 0.1
"""Largest share of padded positions in one forward batch (see `RewardModel.chunks`)."""
_SENTINEL = "\x00response\x00"
"""Stands in for the response when the chat template is rendered, to find where the response starts."""


@dataclass
class RMInput:
    """One prompt-response pair as RM token ids.

    ``input_ids[:response_start]`` is the prompt part (with any template and special tokens),
    ``input_ids[response_start:response_end]`` the response tokens, the rest the suffix (e.g. [SEP]).
    """

    input_ids: list[int]
    response_start: int
    response_end: int
    response_offsets: list[tuple[int, int]]
    """(start, end) character span in the response text of each response token."""

    @property
    def response_length(self) -> int:
        return self.response_end - self.response_start

    def with_response_prefix(self, length: int) -> list[int]:
        """Token ids of the prompt, the first `length` response tokens and the suffix."""
        ids = self.input_ids
        return ids[: self.response_start + length] + ids[self.response_end :]


class RewardModel:
    """A frozen reward model and its tokenizer, scoring (prompt, response) pairs in batches.

    Args:
        model: a module called as ``model(input_ids=..., attention_mask=...)`` (or with
            ``inputs_embeds=...``) returning an object with ``.logits`` of shape (B, 1); a causal RM
            has a ``score`` linear head applied to every position.
        tokenizer: a fast tokenizer (character offsets are needed to align credit).
        spec: how texts are joined, truncated, batched and scored (``spec.head``).

    Raises:
        ModelLoadError: a slow tokenizer, no pad token, or ``spec.head="causal"`` on a model whose
            `score` head is not a per-position head of a causal model.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, spec: RewardModelSpec) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError(
                f"models.reward: the tokenizer of {spec.path!r} is not a fast tokenizer; character offsets "
                "(needed to move credit onto policy tokens) require one"
            )
        if tokenizer.pad_token_id is None:
            raise ModelLoadError(f"models.reward: the tokenizer of {spec.path!r} has neither a pad nor an EOS token")
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = next(model.parameters()).device
        self.max_length = capped_max_length(model, tokenizer, spec)
        """Longest RM input in tokens: ``spec.max_length``, cut to the model's position limit."""
        self.is_causal = self._read_head()
        """Scores are read per position off the `score` head (see `spec.head`)."""
        # Responses are encoded by a copy that spells special tokens out as text; a separate copy
        # because the setting lives in the shared Rust tokenizer, and flipping it per call would
        # race with other threads encoding at the same time.
        self._plain_tokenizer = copy.deepcopy(tokenizer)
        self._plain_tokenizer.split_special_tokens = True
        self._special_text = dict(zip(tokenizer.all_special_ids, tokenizer.all_special_tokens, strict=True))
        self._special_text.update(
            (index, token.content) for index, token in tokenizer.added_tokens_decoder.items() if token.special
        )
        """Special token id -> its text, to tell a parsed control token from e.g. [UNK] for an unknown character."""
        self.uses_chat_template = bool(spec.use_chat_template and getattr(tokenizer, "chat_template", None))
        self._prompt_cache_checked = False
        self.prompt_cache_problem: str | None = None
        """Why `prompt_cache.PromptCache` cannot serve this RM (None: it can, or not checked yet)."""
        self.forward_calls = 0
        """Model forwards run so far (each on up to ``spec.batch_size`` sequences)."""
        self.sequences_scored = 0
        """Sequences (prompt + full or perturbed response) scored so far."""

    @classmethod
    def from_spec(cls, spec: RewardModelSpec) -> RewardModel:
        """Load the model and tokenizer named by `spec` (see `dense_reward.models.load_reward_model`)."""
        model, tokenizer = load_reward_model(spec)
        return cls(model, tokenizer, spec)

    def _read_head(self) -> bool:
        """Resolve ``spec.head``: True when scores are read per position off a causal `score` head."""
        if self.spec.head == "sequence":
            return False
        problem = causal_head_problem(self.model, self.tokenizer)
        if problem is not None and self.spec.head == "causal":
            raise ModelLoadError(
                f"models.reward.head: 'causal' does not fit {self.spec.path!r}: {problem}; "
                "use 'sequence' (or 'auto')"
            )
        return problem is None

    @property
    def supports_prompt_cache(self) -> bool:
        """Whether `prompt_cache.PromptCache` reproduces this RM's scores (probed once, on first use)."""
        if not self._prompt_cache_checked:
            from dense_reward.prompt_cache import prompt_cache_problem

            self.prompt_cache_problem = prompt_cache_problem(self)
            self._prompt_cache_checked = True
        return self.prompt_cache_problem is None

    # ----------------------------------------------------------------------------------------------
    # text -> tokens
    # ----------------------------------------------------------------------------------------------

    def join(self, prompt: str, response: str) -> tuple[str, int]:
        """The text the RM reads for (prompt, response) and the character index where the response starts."""
        if not self.uses_chat_template:
            head = prompt + self.spec.separator
            return head + response, len(head)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": _SENTINEL}]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False)
        start = rendered.find(_SENTINEL)
        if start < 0:
            raise ModelLoadError(
                f"models.reward: the chat template of {self.spec.path!r} drops the assistant message; "
                "set models.reward.use_chat_template: false"
            )
        return rendered[:start] + response + rendered[start + len(_SENTINEL) :], start

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[RMInput]:
        """Tokenise pairs (responses as plain text), locate the response tokens and truncate to `max_length`."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        joined = [self.join(p, r) for p, r in zip(prompts, responses, strict=True)]
        encoded = self.tokenizer(
            [text for text, _ in joined],
            add_special_tokens=not self.uses_chat_template,
            return_offsets_mapping=True,
        )
        items = []
        for ids, offsets, (text, start), response in zip(
            encoded["input_ids"], encoded["offset_mapping"], joined, responses, strict=True
        ):
            ids, offsets = self._spell_out_response(text, list(ids), [tuple(o) for o in offsets], start, len(response))
            items.append(self._locate_response(ids, offsets, start, len(response)))
        return items

    def _spell_out_response(
        self, text: str, ids: list[int], offsets: list[tuple[int, int]], start: int, length: int
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Re-encode the response part as plain text when the tokenizer parsed a special token inside it.

        The whole text is tokenised at once (the template's own control tokens must be parsed); only
        when a special token covers response characters are the tokens over the response replaced
        by those of the same characters encoded with special tokens spelled out.
        """
        end = start + length
        inside = [i for i, (s, e) in enumerate(offsets) if e > s and e > start and s < end]
        if not any(self._special_text.get(ids[i]) == text[offsets[i][0] : offsets[i][1]] for i in inside):
            return ids, offsets
        first, last = inside[0], inside[-1] + 1
        piece_start, piece_end = min(start, offsets[first][0]), max(end, offsets[last - 1][1])
        plain_ids, plain_offsets = self._encode_plain(text[piece_start:piece_end])
        shifted = [(s + piece_start, e + piece_start) for s, e in plain_offsets]
        return ids[:first] + plain_ids + ids[last:], offsets[:first] + shifted + offsets[last:]

    def _encode_plain(self, piece: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of `piece` as plain text, as it reads in the middle of a text.

        SentencePiece-style tokenizers mark the start of every encoded string with a space; encoding
        after a newline and dropping the newline's tokens avoids that (when the newline stays apart).
        """
        plain = self._plain_tokenizer
        newline = plain("\n", add_special_tokens=False)["input_ids"]
        encoded = plain("\n" + piece, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
        if newline and ids[: len(newline)] == newline:
            return ids[len(newline) :], [(max(s - 1, 0), max(e - 1, 0)) for s, e in offsets[len(newline) :]]
        encoded = plain(piece, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]

    def _locate_response(
        self, ids: list[int], offsets: list[tuple[int, int]], start: int, length: int
    ) -> RMInput:
        end = start + length
        inside = [e > s and e > start and s < end for s, e in offsets]
        positions = [i for i, flag in enumerate(inside) if flag]
        if positions:
            first, last = positions[0], positions[-1] + 1
        else:
            # No response token (empty response): it sits right after the last prompt text token.
            before = [i for i, (s, e) in enumerate(offsets) if e > s and e <= start]
            leading = next((i for i, (s, e) in enumerate(offsets) if e > s), len(offsets))
            first = last = before[-1] + 1 if before else leading
        spans = [(max(s, start) - start, min(e, end) - start) for s, e in offsets[first:last]]
        item = RMInput(list(ids), first, last, spans)
        return self._truncate(item, offsets)

    def _truncate(self, item: RMInput, offsets: list[tuple[int, int]]) -> RMInput:
        excess = len(item.input_ids) - self.max_length
        if excess <= 0:
            return item
        ids = item.input_ids
        # Leading special tokens ([CLS], BOS) stay; prompt text is dropped from the left first.
        leading = next((i for i, (s, e) in enumerate(offsets) if e > s), item.response_start)
        leading = min(leading, item.response_start)
        cut_prompt = min(excess, item.response_start - leading)
        ids = ids[:leading] + ids[leading + cut_prompt :]
        start, end = item.response_start - cut_prompt, item.response_end - cut_prompt
        spans = item.response_offsets
        cut_response = excess - cut_prompt
        if cut_response > 0:
            keep = max(item.response_length - cut_response, 0)
            ids = ids[: start + keep] + ids[end:]
            end, spans = start + keep, spans[:keep]
        return RMInput(ids, start, end, spans)

    # ----------------------------------------------------------------------------------------------
    # forwards
    # ----------------------------------------------------------------------------------------------

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists into ``input_ids`` and ``attention_mask``, both (B, T) on the RM device."""
        width = max((len(s) for s in sequences), default=0)
        input_ids = torch.full((len(sequences), max(width, 1)), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def chunks(self, sequences: Sequence[Sequence[int]]) -> Iterator[list[int]]:
        """Index groups of at most ``spec.batch_size`` sequences of similar length (longest first).

        A group also closes before padding would exceed `PADDING_BUDGET` of its tokens: padded
        positions cost as much compute as real ones in an encoder forward.
        """
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        group: list[int] = []
        width = real = 0
        for index in order:
            length = len(sequences[index])
            if group and (
                len(group) == self.spec.batch_size
                or width * (len(group) + 1) - (real + length) > PADDING_BUDGET * width * (len(group) + 1)
            ):
                yield group
                group, real = [], 0
            if not group:
                width = length
            group.append(index)
            real += length
        if group:
            yield group

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        **cache_options,
    ) -> tuple[torch.Tensor, torch.Tensor | None, object]:
        """One model forward on a right-padded batch.

        `cache_options` (``cache``, ``position_ids``, ``use_cache``) go to the model as they are. With
        a ``cache`` of P past positions, `attention_mask` is (B, P + T) and the scores are read over
        the T new positions.

        Returns:
            scores: (B,) the sequence score (a causal RM's head read at the last real token).
            position_scores: (B, T) the head at every position for a causal RM, else None.
            outputs: the raw model outputs (attentions etc.).
        """
        captured: list[torch.Tensor] = []
        hook = None
        if self.is_causal:
            hook = self.model.score.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            outputs = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                **cache_options,
            )
        finally:
            if hook is not None:
                hook.remove()
        self.forward_calls += 1
        self.sequences_scored += attention_mask.shape[0]
        if not self.is_causal:
            return outputs.logits[:, 0].float(), None, outputs
        position_scores = captured[-1][..., 0].float()  # (B, T)
        new_mask = attention_mask[:, -position_scores.shape[1] :]
        last = new_mask.sum(dim=1) - 1  # (B,)
        scores = position_scores[torch.arange(len(last), device=last.device), last]
        return scores, position_scores, outputs

    @torch.inference_mode()
    def score_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """(N,) float64 scores of token-id sequences, in batches of ``spec.batch_size``."""
        scores = np.zeros(len(sequences))
        for group in self.chunks(sequences):
            input_ids, attention_mask = self.pad([sequences[i] for i in group])
            batch_scores, _, _ = self.forward(input_ids, attention_mask)
            scores[group] = batch_scores.cpu().double().numpy()
        return scores

    def score_inputs(self, inputs: Sequence[RMInput]) -> np.ndarray:
        """(N,) float64 scores of encoded pairs."""
        return self.score_ids([item.input_ids for item in inputs])

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """(B,) float32 CPU tensor of sequence-level rewards r = f(prompt, response)."""
        return torch.from_numpy(self.score_inputs(self.encode(prompts, responses))).float()

    @torch.inference_mode()
    def position_scores(self, inputs: Sequence[RMInput]) -> list[np.ndarray]:
        """Per-position scores of a causal RM: one (T_i,) array per input, one forward per batch.

        Entry j is the score of the sequence cut after token j (causal attention makes it equal to
        scoring that prefix alone).
        """
        if not self.is_causal:
            raise ValueError("per-position scores need a causal reward model with a `score` head")
        sequences = [item.input_ids for item in inputs]
        result: list[np.ndarray] = [np.zeros(0)] * len(sequences)
        for group in self.chunks(sequences):
            input_ids, attention_mask = self.pad([sequences[i] for i in group])
            _, position_scores, _ = self.forward(input_ids, attention_mask)
            for row, index in enumerate(group):
                result[index] = position_scores[row, : len(sequences[index])].cpu().double().numpy()
        return result

