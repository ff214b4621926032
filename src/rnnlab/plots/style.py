"""Figures that look like the papers': annotated heatmaps, histograms with box plots, curves
with bands. Every figure is saved as PNG and SVG.

No matplotlib backend is chosen here (a library must not switch its user's): the ``rnnlab``
command sets MPLBACKEND=Agg for itself; without a display matplotlib falls back to Agg anyway."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

CELL_COLORS = {"rnn-tanh": "#d62728", "rnn-sigmoid": "#d62728", "gru": "#1f77b4", "gru-s": "#1f77b4",
               "lstm": "#2ca02c", "ugrnn": "#9467bd", "mingru": "#8c564b"}


#: resolution of the PNG files
DPI = 110


def color(cell: str) -> str:
    return CELL_COLORS.get(cell, "#7f7f7f")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    # the tight bounding box once, at the PNG's resolution, for both formats: bbox_inches="tight"
    # draws the whole figure once more per format to measure it (measured: a 2x4 annotated
    # heatmap 2.2 -> 1.4 s for both files)
    fig.set_dpi(DPI)
    bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    for ext in ("png", "svg"):
        p = out_dir / f"{name}.{ext}"
        fig.savefig(p, dpi=DPI, bbox_inches=bbox)
        paths.append(p)
    plt.close(fig)
    return paths


def annotated_heatmap(ax, values: np.ndarray, row_labels, col_labels, *, vmin=50, vmax=100,
                      fmt="{:.0f}", cmap="viridis", title=None, xlabel=None, ylabel=None):
    im = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, origin="lower", aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if np.isfinite(v):
                shade = (v - vmin) / max(vmax - vmin, 1e-12)
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                        color="black" if shade > 0.6 else "white")
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return im


def curve_band(ax, x, ys: np.ndarray, label: str, c: str):
    """Median curve with an interquartile band; ys [n_curves, len(x)] may hold NaN."""
    ys = np.asarray(ys, float)
    med = np.nanmedian(ys, axis=0)
    lo, hi = np.nanpercentile(ys, 25, axis=0), np.nanpercentile(ys, 75, axis=0)
    ax.plot(x, med, color=c, label=label)
    ax.fill_between(x, lo, hi, color=c, alpha=0.25, linewidth=0)


def figure(nrows=1, ncols=1, w=4.0, h=3.2, **kw):
    return plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, **kw)
