"""Random search on the weight simplex (and knob box), as a Ray ``Searcher``: the baseline of the others."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from tune_jobs.search.base import HistorySearcher


class RandomSimplexSearcher(HistorySearcher):
    """Start points first, then weights from Dirichlet(1) (uniform on the simplex) and uniform knobs."""

    kind = "random"

    def _propose(self, index: int) -> dict[str, Any]:
        if index < len(self.points_to_evaluate):
            return copy.deepcopy(self.points_to_evaluate[index])
        return self.space.sample_uniform(np.random.default_rng(self._suggestion_seed(index)))
