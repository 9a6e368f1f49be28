"""Merge the RM calls of many concurrent explanations into shared forwards.

`shap` and `lime` explain one response at a time and call the model with a handful of perturbed
token sequences per call. To keep their algorithms untouched yet score a whole PPO batch in large RM
batches, each response is explained in its own thread whose model function blocks on a shared
`ScoreBatcher`: once every live thread is waiting, the batcher scores all their sequences together
(each distinct sequence at most once per batcher) and wakes them with their results. On a causal
RM each explanation's prompt is encoded once per batcher and every sequence is scored as a
continuation of it (`dense_reward.prompt_cache`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from dense_reward.prompt_cache import PromptCache
from dense_reward.reward_model import RewardModel

T = TypeVar("T")
MAX_WORKERS = 64
"""Default cap on concurrent explanations (threads) per batch."""

TokenIds = tuple[int, ...]


class Scorer:
    """Scores RM token-id sequences right away (no merging); the interface `ScoreBatcher` shares.

    Args:
        reward_model: the RM.
        prompt_cache: encode each prompt once and score the rest as its continuation
            (`prompt_cache.PromptCache`), when the RM supports it (a causal RM); else plain forwards.
    """

    def __init__(self, reward_model: RewardModel, prompt_cache: bool = True) -> None:
        self.reward_model = reward_model
        self.prompt_cache = PromptCache(reward_model) if prompt_cache and reward_model.supports_prompt_cache else None

    def score(self, sequences: Sequence[Sequence[int]], prompt_length: int = 0) -> np.ndarray:
        """(N,) float64 RM scores of N token-id sequences (prompt, response and template tokens).

        `prompt_length`: the first tokens of every sequence that are the same prompt (0: unknown).
        """
        return self._score(sequences, [prompt_length] * len(sequences))

    def _score(self, sequences: Sequence[Sequence[int]], prompt_lengths: Sequence[int]) -> np.ndarray:
        if self.prompt_cache is None or not sequences:
            return self.reward_model.score_ids(sequences)
        cached = [i for i, length in enumerate(prompt_lengths) if length > 0]
        scores = np.zeros(len(sequences))
        if cached:
            scores[cached] = self.prompt_cache.score([sequences[i] for i in cached], [prompt_lengths[i] for i in cached])
        plain = [i for i, length in enumerate(prompt_lengths) if length <= 0]
        if plain:
            scores[plain] = self.reward_model.score_ids([sequences[i] for i in plain])
        return scores


@dataclass
class _Request:
    sequences: list[TokenIds]
    prompt_length: int = 0
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class BatcherStats:
    """What a batcher did: requests served, sequences asked for, sequences actually scored, flushes run."""

    requests: int = 0
    sequences: int = 0
    scored: int = 0
    flushes: int = 0
    flush_sizes: list[int] = field(default_factory=list)


class ScoreBatcher(Scorer):
    """A rendezvous: `score` blocks until every live client waits, then one merged RM pass serves all.

    Args:
        reward_model: the RM.
        clients: number of threads that will call `score` and finally `leave`.
        known: scores already known by token ids, e.g. of the unperturbed responses; never rescored.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        clients: int,
        known: Mapping[TokenIds, float] | None = None,
        prompt_cache: bool = True,
    ) -> None:
        super().__init__(reward_model, prompt_cache)
        self._condition = threading.Condition()
        self._active = clients
        self._pending: list[_Request] = []
        self._scores: dict[TokenIds, float] = dict(known or {})
        self.stats = BatcherStats()

    def score(self, sequences: Sequence[Sequence[int]], prompt_length: int = 0) -> np.ndarray:
        request = _Request([tuple(int(i) for i in sequence) for sequence in sequences], prompt_length)
        with self._condition:
            self._pending.append(request)
            self._flush_if_all_waiting()
            while not request.done:
                self._condition.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def leave(self) -> None:
        """A client is finished: it will call `score` no more."""
        with self._condition:
            self._active -= 1
            self._flush_if_all_waiting()

    def _flush_if_all_waiting(self) -> None:
        # Called with the lock held; the other clients are all blocked in `wait`, so running the
        # forward under the lock costs nothing and keeps the cache consistent.
        if not self._pending or len(self._pending) < self._active:
            return
        pending, self._pending = self._pending, []
        try:
            wanted: dict[TokenIds, int] = {}
            for request in pending:
                for sequence in request.sequences:
                    wanted.setdefault(sequence, request.prompt_length)
            fresh = {sequence: length for sequence, length in wanted.items() if sequence not in self._scores}
            try:
                self._score_fresh(fresh)
            except Exception:
                # One input broke the merged forward: score each request alone, so only the
                # requests (explanations) that hold a failing input see the error.
                for request in pending:
                    try:
                        self._score_fresh(
                            {s: request.prompt_length for s in request.sequences if s not in self._scores}
                        )
                    except Exception as error:
                        request.error = error
            for request in pending:
                if request.error is None:
                    request.result = np.array([self._scores[s] for s in request.sequences], dtype=np.float64)
            self.stats.requests += len(pending)
            self.stats.sequences += sum(len(request.sequences) for request in pending)
            self.stats.scored += len(fresh)
            self.stats.flushes += 1
            self.stats.flush_sizes.append(len(fresh))
        except BaseException as error:  # every waiting client must wake up and see the failure
            for request in pending:
                request.error = error
        finally:
            for request in pending:
                request.done = True
            self._condition.notify_all()

    def _score_fresh(self, prompt_lengths: dict[TokenIds, int]) -> None:
        """Score the sequences keyed in `prompt_lengths` (sequence -> its prompt length) into the cache."""
        if prompt_lengths:
            sequences = list(prompt_lengths)
            scores = self._score(sequences, list(prompt_lengths.values()))
            self._scores.update(zip(sequences, scores.tolist(), strict=True))


def run_concurrently(
    tasks: Sequence[Callable[[Scorer], T]],
    reward_model: RewardModel,
    workers: int | None = None,
    known: Mapping[TokenIds, float] | None = None,
    prompt_cache: bool = True,
) -> tuple[list[T], BatcherStats]:
    """Run ``task(scorer)`` for every task on `workers` threads sharing one `ScoreBatcher`.

    Each worker takes every `workers`-th task in turn, so at most `workers` explanations wait on the
    batcher at once (default: all tasks, up to `MAX_WORKERS`). Results come back in task order. When
    tasks fail, the error of the first failing task (by position, not by time) is raised here after
    every thread has stopped, so the same batch always reports the same failure.
    """
    workers = max(1, min(workers or MAX_WORKERS, len(tasks)))
    batcher = ScoreBatcher(reward_model, clients=workers, known=known, prompt_cache=prompt_cache)
    results: list[T | None] = [None] * len(tasks)
    errors: dict[int, BaseException] = {}

    def work(first: int) -> None:
        index = first
        try:
            for index in range(first, len(tasks), workers):
                results[index] = tasks[index](batcher)
        except BaseException as error:
            errors[index] = error
        finally:
            batcher.leave()

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[min(errors)]
    return results, batcher.stats  # type: ignore[return-value]
