"""Merge the RM calls of many concurrent explanations into shared forwards.

`shap` and `lime` explain one text at a time and call the model with a handful of perturbed texts
per call. To keep their algorithms untouched yet score a whole PPO batch in large RM batches, each
response is explained in its own thread whose model function blocks on a shared `ScoreBatcher`:
once every live thread is waiting, the batcher scores all their texts together (each distinct RM
input at most once per batcher, however many texts map to it) and wakes them with their results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from dense_reward.reward_model import RewardModel

T = TypeVar("T")
MAX_WORKERS = 64
"""Default cap on concurrent explanations (threads) per batch."""


class Scorer:
    """Scores texts of one prompt right away (no merging); the interface `ScoreBatcher` shares."""

    def __init__(self, reward_model: RewardModel) -> None:
        self.reward_model = reward_model

    def score(self, prompt: str, texts: Sequence[str]) -> np.ndarray:
        """(N,) float64 RM scores of ``(prompt, text)`` for each text."""
        return self.reward_model.score_inputs(self.reward_model.encode([prompt] * len(texts), list(texts)))


@dataclass
class _Request:
    pairs: list[tuple[str, str]]
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class BatcherStats:
    """What a batcher did: requests served, texts asked for, texts actually scored, flushes run."""

    requests: int = 0
    texts: int = 0
    scored: int = 0
    flushes: int = 0
    flush_sizes: list[int] = field(default_factory=list)


class ScoreBatcher(Scorer):
    """A rendezvous: `score` blocks until every live client waits, then one merged RM pass serves all.

    Args:
        reward_model: the RM.
        clients: number of threads that will call `score` and finally `leave`.
        known: scores already known, e.g. ``{(prompt, response): r}``; texts with the same RM token ids
            are never rescored.
    """

    def __init__(
        self, reward_model: RewardModel, clients: int, known: Mapping[tuple[str, str], float] | None = None
    ) -> None:
        super().__init__(reward_model)
        self._condition = threading.Condition()
        self._active = clients
        self._pending: list[_Request] = []
        self._by_text: dict[tuple[str, str], float] = dict(known or {})
        # Texts that differ only where the RM tokenizer does not look (spacing, case for an
        # uncased RM) give the same token ids: those are scored once too.
        self._by_ids: dict[tuple[int, ...], float] = {}
        if known:
            pairs = list(known)
            items = reward_model.encode([p for p, _ in pairs], [t for _, t in pairs])
            self._by_ids.update((tuple(item.input_ids), known[pair]) for item, pair in zip(items, pairs, strict=True))
        self.stats = BatcherStats()

    def score(self, prompt: str, texts: Sequence[str]) -> np.ndarray:
        request = _Request([(prompt, text) for text in texts])
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
            wanted = dict.fromkeys(pair for request in pending for pair in request.pairs)
            missing = [pair for pair in wanted if pair not in self._by_text]
            fresh: list[tuple[int, ...]] = []
            if missing:
                rm = self.reward_model
                keys = [tuple(item.input_ids) for item in rm.encode([p for p, _ in missing], [t for _, t in missing])]
                fresh = [key for key in dict.fromkeys(keys) if key not in self._by_ids]
                if fresh:
                    self._by_ids.update(zip(fresh, rm.score_ids(fresh).tolist(), strict=True))
                self._by_text.update((pair, self._by_ids[key]) for pair, key in zip(missing, keys, strict=True))
            for request in pending:
                request.result = np.array([self._by_text[pair] for pair in request.pairs], dtype=np.float64)
            self.stats.requests += len(pending)
            self.stats.texts += sum(len(request.pairs) for request in pending)
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


def run_concurrently(
    tasks: Sequence[Callable[[Scorer], T]],
    reward_model: RewardModel,
    workers: int | None = None,
    known: Mapping[tuple[str, str], float] | None = None,
) -> tuple[list[T], BatcherStats]:
    """Run ``task(scorer)`` for every task on `workers` threads sharing one `ScoreBatcher`.

    Each worker takes every `workers`-th task in turn, so at most `workers` explanations wait on the
    batcher at once (default: all tasks, up to `MAX_WORKERS`). Results come back in task order; the
    first error raised by a task is raised here after every thread has stopped.
    """
    workers = max(1, min(workers or MAX_WORKERS, len(tasks)))
    batcher = ScoreBatcher(reward_model, clients=workers, known=known)
    results: list[T | None] = [None] * len(tasks)
    errors: list[BaseException] = []

    def work(first: int) -> None:
        try:
            for index in range(first, len(tasks), workers):
                results[index] = tasks[index](batcher)
        except BaseException as error:
            errors.append(error)
        finally:
            batcher.leave()

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results, batcher.stats  # type: ignore[return-value]
