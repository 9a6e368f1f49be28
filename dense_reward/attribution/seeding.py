"""A seeded stream of numpy's global random numbers for code that can only draw from the global RNG.

shap's PartitionExplainer breaks ties between equally promising nodes of its partition tree with
``np.random.randn()`` (the process-wide generator): when RM scores tie (bf16 scores on a GPU often
do) the nodes it expands within ``max_evals``, hence the credit, depend on that draw. With many
responses explained in threads at once, their draws interleave in whatever order the threads run.

`GlobalRandomLease` gives one explanation its own seeded state of the global generator: inside
``with lease:`` the global generator holds this lease's state, one lease at a time (a lock), and
the state the rest of the process sees is put back on exit. ``lease.released()`` steps out while
the explanation blocks (waiting for a merged RM forward), so other explanations draw meanwhile from
their own states. Each explanation then draws the same numbers as it would alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_GLOBAL_RANDOM = threading.Lock()
"""Held by the lease whose state the global generator holds."""


class GlobalRandomLease:
    """numpy's global random state for one caller, seeded with `seed`, lent under a process-wide lock."""

    def __init__(self, seed: int) -> None:
        self._state: Any = np.random.RandomState(seed).get_state()
        self._outside: Any = None

    def __enter__(self) -> GlobalRandomLease:
        _GLOBAL_RANDOM.acquire()
        self._outside = np.random.get_state()
        np.random.set_state(self._state)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._state = np.random.get_state()
        np.random.set_state(self._outside)
        _GLOBAL_RANDOM.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give the global generator back for a while (e.g. while blocked on another thread), then take it again."""
        self.__exit__(None, None, None)
        try:
            yield
        finally:
            self.__enter__()
