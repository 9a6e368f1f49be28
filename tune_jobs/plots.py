"""Plots of a sweep (matplotlib, Agg backend, PNG) from plain arrays: BO convergence and the weights tried."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def convergence_plot(
    values: Sequence[float | None], sems: Sequence[float | None], title: str, path: Path
) -> Path:
    """val_reward of each trial in creation order (dots with ±1 standard error) and the best so far (steps).

    Args:
        values: (N,) each trial's val_reward; None for a trial that reported none (left out).
        sems: (N,) the standard error of each value; None where unknown (no error bar).
        title: the sweep's name.
        path: the PNG to write.

    A curve that keeps jumping without a rising envelope is the "BO oscillates" failure signature.
    """
    kept = [(v, s) for v, s in zip(values, sems, strict=True) if v is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if kept:
        x = np.arange(1, len(kept) + 1)
        y = np.array([v for v, _ in kept])  # (M,)
        err = np.array([0.0 if s is None else s for _, s in kept])  # (M,)
        ax.errorbar(x, y, yerr=err, fmt="o", color="tab:blue", label="trial val_reward ±1 s.e.", zorder=3)
        ax.step(x, np.maximum.accumulate(y), where="post", color="tab:orange", label="best so far")
        ax.set_xticks(x)
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no trial reported val_reward", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel("val_reward")
    ax.set_title(f"BO convergence: {title}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def weights_plot(
    weights: np.ndarray,
    values: Sequence[float | None],
    labels: Sequence[str],
    sources: Sequence[str],
    title: str,
    path: Path,
) -> Path:
    """One stacked bar per trial (its weights on the simplex), trials sorted by val_reward, best on the right.

    Args:
        weights: (N, d) each trial's weights, columns in the order of `sources`.
        values: (N,) each trial's val_reward (None sorts first).
        labels: (N,) a short name per trial (e.g. ``#3``), printed under its bar with its value.
        sources: (d,) the source names.
        title: the sweep's name.
        path: the PNG to write.
    """
    order = sorted(range(len(values)), key=lambda i: -np.inf if values[i] is None else values[i])
    weights = np.asarray(weights, dtype=float).reshape(len(values), len(sources))[order]  # (N, d)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 2), 4), dpi=100)
    x = np.arange(len(order))
    bottom = np.zeros(len(order))  # (N,)
    colors = plt.get_cmap("tab10")
    for column, source in enumerate(sources):
        ax.bar(x, weights[:, column], bottom=bottom, color=colors(column), label=source)
        bottom += weights[:, column]
    names = [f"{labels[i]}\n" + ("-" if values[i] is None else f"{values[i]:.3f}") for i in order]
    ax.set_xticks(x, names, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight")
    ax.set_xlabel("trial (val_reward), worst to best")
    ax.set_title(f"mixing weights per trial: {title}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
