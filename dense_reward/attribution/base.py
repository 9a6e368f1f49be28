"""The explainer contract: what every attribution source takes and returns, and the facts it carries.

Every source turns a scored batch into one float array per response over the response's **policy**
tokens. Sources that work on RM tokens return `TokenCredit` (RM-token spans and their credit)
from `credit`, and `RMTokenExplainer.explain` moves it onto policy tokens with `align.align_credit`.
The registry of sources by name is `dense_reward.attribution.registry.EXPLAINERS`.
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from dense_reward.attribution.align import align_credit
from dense_reward.errors import UserError
from dense_reward.reward_model import RewardModel


def import_detached(name: str) -> ModuleType:
    """``importlib.import_module(name)``, with a first import run on a new thread's empty stack.

    Some libraries keep the ImportErrors of their optional dependencies, tracebacks included, in a module
    global (shap's `record_import_error`, for cv2, pyspark and more). A traceback keeps every frame of the
    importing stack alive with its locals: shap first imported inside an explanation held the first
    trial's reward model and scored batches for the life of the process, so a reused Ray worker began its
    next trial ~450 MiB heavier. A new thread's stack holds nothing of ours.
    """
    module = sys.modules.get(name)
    if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
        return module
    outcome: dict[str, object] = {}

    def load() -> None:
        try:
            outcome["module"] = importlib.import_module(name)
        except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=load, name=f"import {name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["module"]  # type: ignore[return-value]


class ExplanationError(UserError):
    """A source failed on one response of a batch; the message names the source and the sample.

    Attributes:
        source: the source name.
        sample: index of the failing response in the batch (None when only the whole batch fails).
    """

    def __init__(self, source: str, sample: int | None, response: str, error: BaseException) -> None:
        where = f"sample {sample} ({response[:60]!r})" if sample is not None else "the batch (each sample alone works)"
        first_line = next(iter(str(error).splitlines()), "")
        super().__init__(f"shaping: source {source!r} failed on {where}: {type(error).__name__}: {first_line}")
        self.source = source
        self.sample = sample


@dataclass
class ScoredBatch:
    """Responses with their sequence-level rewards, as the explainers receive them."""

    prompts: list[str]
    """Prompt texts as the RM sees them (no chat template)."""
    responses: list[str]
    """Decoded response texts."""
    response_offsets: list[list[tuple[int, int]]]
    """Per response: the (start, end) character span in ``responses[i]`` of each policy token."""
    scores: np.ndarray
    """(B,) sequence-level r from the RM."""

    def __post_init__(self) -> None:
        sizes = {len(self.prompts), len(self.responses), len(self.response_offsets), len(self.scores)}
        if len(sizes) != 1:
            raise ValueError(
                f"ScoredBatch fields differ in length: {len(self.prompts)} prompts, {len(self.responses)} "
                f"responses, {len(self.response_offsets)} offset lists, {len(self.scores)} scores"
            )

    def __len__(self) -> int:
        return len(self.responses)

    def select(self, indices: list[int]) -> ScoredBatch:
        """The sub-batch of the responses at `indices`, in that order."""
        return ScoredBatch(
            [self.prompts[i] for i in indices],
            [self.responses[i] for i in indices],
            [self.response_offsets[i] for i in indices],
            self.scores[indices],
        )


@runtime_checkable
class Explainer(Protocol):
    """A per-token credit source, constructed as ``cls(reward_model, **options)``."""

    name: ClassVar[str]
    """The source name, as in ``shaping.sources``."""
    is_distribution: ClassVar[bool]
    """The credit is already a distribution over the tokens (>= 0, sums to 1): shaping only renormalises it."""

    def explain(self, batch: ScoredBatch) -> list[np.ndarray]:
        """One (T_i,) float array per response over its policy tokens."""
        ...


@dataclass
class TokenCredit:
    """Credit over RM tokens (or word spans) of one response."""

    spans: list[tuple[int, int]]
    """(start, end) character span in the response of each RM token."""
    values: np.ndarray
    """(S,) credit of each span."""


class RMTokenExplainer:
    """Base of the sources that attribute over RM tokens and align the result to policy tokens."""

    name: ClassVar[str] = ""
    is_distribution: ClassVar[bool] = False

    def __init__(self, reward_model: RewardModel) -> None:
        self.reward_model = reward_model

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        """Credit over the RM tokens of each response."""
        raise NotImplementedError

    def explain(self, batch: ScoredBatch) -> list[np.ndarray]:
        """One (T_i,) credit array per response over its policy tokens.

        Raises:
            ExplanationError: naming this source and the first response it fails on.
            UserError: a problem with the source's setup (e.g. no attention weights), as raised.
        """
        try:
            credits = self.credit(batch)
        except UserError:  # already names what to fix (e.g. a model setting), whatever the sample
            raise
        except Exception as error:
            raise self._locate_failure(batch, error) from error
        aligned = []
        for index, (credit, offsets) in enumerate(zip(credits, batch.response_offsets, strict=True)):
            try:
                aligned.append(align_credit(credit.spans, credit.values, offsets))
            except Exception as error:
                raise ExplanationError(self.name, index, batch.responses[index], error) from error
        return aligned

    def _locate_failure(self, batch: ScoredBatch, error: Exception) -> ExplanationError:
        """The error of the first response that fails alone (batch-wide sources fail all at once)."""
        if len(batch) > 1:
            for index in range(len(batch)):
                try:
                    self.credit(batch.select([index]))
                except Exception as alone:
                    return ExplanationError(self.name, index, batch.responses[index], alone)
        sample = 0 if len(batch) == 1 else None
        return ExplanationError(self.name, sample, batch.responses[0] if sample == 0 else "", error)
