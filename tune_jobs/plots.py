"""Plots of a sweep (matplotlib, Agg backend, PNG): BO convergence and the weights every trial tried."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from tune_jobs.results import SweepResults


def convergence_plot(results: SweepResults, path: Path) -> Path:
    """val_reward of each trial (dots, in creation order) and the best so far (step line).

    A curve that keeps jumping without a rising envelope is the "BO oscillates" failure signature.
    """
    rows = [row for row in results.trials if row.best_val_reward is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if rows:
        x = np.arange(1, len(rows) + 1)
        y = np.array([row.best_val_reward for row in rows])  # (N,)
        ax.scatter(x, y, color="tab:blue", label="trial val_reward (best epoch)", zorder=3)
        ax.step(x, np.maximum.accumulate(y), where="post", color="tab:orange", label="best so far")
        ax.set_xticks(x)
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no trial reported val_reward", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel("val_reward")
    ax.set_title(f"BO convergence: {results.name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def weights_plot(results: SweepResults, path: Path) -> Path:
    """One stacked bar per trial (the weights on the simplex), trials sorted by val_reward, best on the right."""
    rows = sorted(
        results.trials,
        key=lambda row: -np.inf if row.best_val_reward is None else row.best_val_reward,
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4), dpi=100)
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))  # (N,)
    colors = plt.get_cmap("tab10")
    for index, source in enumerate(results.sources):
        heights = np.array([row.weights.get(source, 0.0) for row in rows])  # (N,)
        ax.bar(x, heights, bottom=bottom, color=colors(index), label=source)
        bottom += heights
    labels = [
        f"#{row.index}\n" + ("-" if row.best_val_reward is None else f"{row.best_val_reward:.3f}")
        for row in rows
    ]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight")
    ax.set_xlabel("trial (val_reward), worst to best")
    ax.set_title(f"mixing weights per trial: {results.name}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
