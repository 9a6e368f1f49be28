"""Token heatmaps: per-token credit as an HTML page, a PNG, or coloured terminal text.

Rows are aligned on the same tokens (e.g. one row per attribution source plus the shaped dense
reward); each row is coloured on its own scale, red for negative, green for positive, white for 0.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_NEGATIVE = (214, 39, 40)
_POSITIVE = (44, 160, 44)


@dataclass
class HeatmapSection:
    """One response drawn as rows of per-token values."""

    title: str
    tokens: list[str]
    """Display text of each token (one per value)."""
    rows: dict[str, np.ndarray]
    """Row label -> (T,) values over `tokens`."""
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    """Small key-value facts shown under the title (reward, weights, ...)."""


def token_labels(text: str, offsets: Sequence[tuple[int, int]], empty: str = "⟨eos⟩") -> list[str]:
    """Display strings of tokens given their character spans; an empty span (EOS) shows as `empty`."""
    return [text[s:e] if e > s else empty for s, e in offsets]


def _colour(value: float, scale: float) -> tuple[int, int, int]:
    """White blended toward red (< 0) or green (> 0) by |value| / scale."""
    if scale <= 0 or not np.isfinite(value):
        return (255, 255, 255)
    strength = min(abs(value) / scale, 1.0)
    target = _POSITIVE if value > 0 else _NEGATIVE
    return tuple(int(round(255 + (c - 255) * strength)) for c in target)  # type: ignore[return-value]


def _scale(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def _visible(token: str) -> str:
    return token.replace("\n", "⏎").replace("\t", "⇥")


# --------------------------------------------------------------------------------------------------
# terminal
# --------------------------------------------------------------------------------------------------


def terminal_heatmap(tokens: Sequence[str], values: np.ndarray, colour: bool = True) -> str:
    """The tokens in a row, each on a background coloured by its value (24-bit ANSI).

    Without colour, each token is followed by its value in brackets instead.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(tokens) != len(values):
        raise ValueError(f"got {len(tokens)} tokens but {len(values)} values")
    if not colour:
        return " ".join(f"{_visible(t)}[{v:+.3g}]" for t, v in zip(tokens, values, strict=True))
    scale = _scale(values)
    parts = []
    for token, value in zip(tokens, values, strict=True):
        r, g, b = _colour(float(value), scale)
        parts.append(f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{_visible(token)}\x1b[0m")
    return "".join(parts)


def terminal_table(tokens: Sequence[str], rows: Mapping[str, np.ndarray], precision: int = 4) -> str:
    """A plain text table: one line per token, one column per row label."""
    labels = list(rows)
    width = max([len(_visible(t)) for t in tokens] + [5])
    column = max([len(label) for label in labels] + [precision + 6])
    lines = ["token".ljust(width) + "  " + "  ".join(label.rjust(column) for label in labels)]
    for i, token in enumerate(tokens):
        cells = "  ".join(f"{float(rows[label][i]):+{column}.{precision}g}" for label in labels)
        lines.append(f"{_visible(token)!s:{width}}  {cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table.heat { border-collapse: collapse; margin: 0.5em 0 1.5em; }
table.heat td { padding: 2px 0; vertical-align: top; }
td.label { padding-right: 1em; font-weight: 600; white-space: nowrap; }
span.tok { font-family: ui-monospace, monospace; white-space: pre; padding: 1px 0; border-radius: 2px; }
.facts { color: #555; font-size: 0.9em; } .note { color: #777; font-size: 0.85em; }
"""


def section_html(section: HeatmapSection) -> str:
    """One section: title, facts, and a row of coloured tokens per row label (values in tooltips)."""
    facts = " · ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in section.extra.items())
    rows = []
    for label, values in section.rows.items():
        values = np.asarray(values, dtype=np.float64)
        if len(values) != len(section.tokens):
            raise ValueError(f"row {label!r} has {len(values)} values for {len(section.tokens)} tokens")
        scale = _scale(values)
        cells = []
        for token, value in zip(section.tokens, values, strict=True):
            r, g, b = _colour(float(value), scale)
            cells.append(
                f'<span class="tok" style="background: rgb({r},{g},{b})" title="{value:+.5g}">'
                f"{html.escape(_visible(token))}</span>"
            )
        rows.append(f'<tr><td class="label">{html.escape(label)}</td><td>{"".join(cells)}</td></tr>')
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if facts:
        parts.append(f'<div class="facts">{facts}</div>')
    parts.append(f'<table class="heat">{"".join(rows)}</table>')
    if section.note:
        parts.append(f'<div class="note">{html.escape(section.note)}</div>')
    return "\n".join(parts)


def heatmap_page(sections: Sequence[HeatmapSection], title: str = "Per-token rewards") -> str:
    """A standalone HTML page with one heatmap section per response."""
    body = "\n".join(section_html(s) for s in sections)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n"
        '<p class="note">Each row is coloured on its own scale: green positive, red negative; '
        "hover a token for its value.</p></body></html>\n"
    )


def write_heatmap_html(path: str | Path, sections: Sequence[HeatmapSection], title: str = "Per-token rewards") -> Path:
    """Write `heatmap_page` to `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(heatmap_page(sections, title), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------------------------------


def write_heatmap_png(path: str | Path, section: HeatmapSection, max_tokens: int = 64) -> Path:
    """A matplotlib image of one section: rows x tokens, each row on its own symmetric scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = [_visible(t) for t in section.tokens[:max_tokens]]
    labels = list(section.rows)
    grid = np.zeros((len(labels), len(tokens)))
    for i, label in enumerate(labels):
        values = np.asarray(section.rows[label], dtype=np.float64)[: len(tokens)]
        scale = _scale(values)
        grid[i] = values / scale if scale > 0 else 0.0
    figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * len(tokens) + 2), 0.5 * len(labels) + 1.5))
    axes.imshow(grid, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    axes.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_title(section.title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
