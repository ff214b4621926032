"""The (l, k)-discrepancy surfaces of Sterin et al. (§V, Figs 10-11).

D(l, k) = mean over random parameter draws of ||h_u - h_v||_2 after a k-unit cell reads
u = 0...0 and v = 1 0...0 of length l (see :mod:`rnnlab.analysis.discrepancy`). The paper drew
2000 N(0, 1) parameter sets of a bias-free ``rnn-sigmoid`` and ``gru-s`` for l = 1..50 and
k = 1..20; its notebooks also try Xavier and uniform weights, computed here as well.

Claims, for every init scheme (the paper's is "normal"), "vanishing" meaning falling below
``vanish_rel`` (1%) of the one-step discrepancy:
  * vanilla (first of ``cells``): max over k of D(l_max, k) / D(1, k) < vanish_rel;
  * every other cell: min over k >= k_min of D(l_max, k) / D(1, k) > vanish_rel.
  * every other cell keeps far more than the vanilla one at the same k: min over k of
    [D(l_max, k) / D(1, k)]_cell / [D(l_max, k) / D(1, k)]_vanilla > ``gap`` (10).
All with 95% bootstrap intervals over the parameter draws (resampled jointly across k).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import discrepancy as dm
from ..analysis.claims import Claim, threshold_claim
from ..cells import init as inits
from ..engine.model import check_size
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import cells_list

NAME = "discrepancy"
PAPER = "sterin"
SOURCE = "Sterin et al., section V, Figs 10-11"
QUESTION = ("Does a randomly drawn vanilla RNN forget the first symbol of a long sequence while a GRU "
            "keeps it, without any training?")
ORDER = 4
VERSION = 1
CHOICES = {
    "vanish_rel": "'D(l, k) goes to ~0' means D(l_max, k) < 1% of D(1, k), for every k (vanilla); the "
                  "gated claim asks the opposite for every k >= k_min (2: k = 1 is a single unit)",
    "intervals": "95% percentile bootstrap over the parameter draws, resampled jointly for all k (and "
                 "independently for the two cells of the gap claim)",
    "gap": "'far more' means the gated cell's retained fraction D(l_max, k) / D(1, k) is > 10x the vanilla "
           "cell's at every k",
    "draws": "the models of different k within one draw share the leading block of the same standard "
             "draw, rescaled (common random numbers across k); every D(., k) is still a mean over `draws` "
             "independent k-unit models",
    "schemes": "normal (paper), xavier N(0, 1/fan_in) and uniform U(+-1/sqrt(fan_in)) (the authors' "
               "notebooks), all without biases; fan_in = 2 for the input weights, k for the recurrent ones",
    "quick": "quick scale = paper scale (2000 draws, l = 1..50, k = 1..20, three schemes): it takes seconds",
    "tiny": "tiny scale (tests only): 40 draws, l <= 6, k <= 3, normal and uniform schemes",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-sigmoid", "gru-s"], "init_schemes": ["normal", "xavier", "uniform"],
           "bias": False, "draws": 2000, "max_length": 50, "max_hidden": 20, "vanish_rel": 0.01,
           "k_min": 2, "gap": 10.0, "n_boot": 1000}
    if scale == "tiny":
        cfg.update(draws=40, max_length=6, max_hidden=3, n_boot=200, init_schemes=["normal", "uniform"])
    return cfg


def validate(cfg: dict) -> None:
    cfg["init_schemes"] = cells_list(cfg["init_schemes"])
    if not cfg["init_schemes"]:
        raise ConfigError("init_schemes: needs at least one init scheme")
    for s in cfg["init_schemes"]:
        if s not in inits.SCHEMES:
            raise ConfigError(f"init_schemes: unknown init scheme {s!r}; known: {', '.join(inits.SCHEMES)}")
    for k in ("draws", "max_length", "max_hidden", "n_boot", "k_min"):
        check_size(k, cfg[k])
    if cfg["max_length"] < 2:
        raise ConfigError(f"max_length: must be >= 2, got {cfg['max_length']!r}")
    if cfg["k_min"] > cfg["max_hidden"]:
        raise ConfigError(f"k_min: must be <= max_hidden ({cfg['max_hidden']}), got {cfg['k_min']!r}")
    if not cfg["gap"] > 0:
        raise ConfigError(f"gap: must be > 0, got {cfg['gap']!r}")
    if not 0 < cfg["vanish_rel"] < 1:
        raise ConfigError(f"vanish_rel: must be in (0, 1), got {cfg['vanish_rel']!r}")
    if not isinstance(cfg["bias"], bool):
        raise ConfigError(f"bias: must be true or false, got {cfg['bias']!r}")


# ----------------------------------------------------------------------------- shard


def discrepancy_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Every init scheme of one cell: D(l, k) with its standard error, the per-draw distances at
    l = 1 and l = l_max (for the bootstrap) and the time spent."""
    lengths = list(range(1, shard["max_length"] + 1))
    ks = list(range(1, shard["max_hidden"] + 1))
    D, ends, times = [], [], []
    for init in shard["inits"]:
        t = {}
        X = dm.discrepancy_draws(shard["cell"], lengths, ks, shard["draws"], init, shard["bias"],
                                 shard["seed"], timing=t)
        times.append({"cell": shard["cell"], "init": init, "draws": shard["draws"], **t})
        mean = X.mean(0)
        se = X.std(0, ddof=1) / np.sqrt(len(X)) if len(X) > 1 else np.zeros(X.shape[1:])
        L, K = np.meshgrid(lengths, ks, indexing="ij")
        D.append(pd.DataFrame({"cell": shard["cell"], "init": init, "l": L.ravel(), "k": K.ravel(),
                               "D": mean.ravel(), "se": se.ravel()}))
        dr, kk = np.meshgrid(np.arange(len(X)), ks, indexing="ij")
        ends.append(pd.DataFrame({"cell": shard["cell"], "init": init, "draw": dr.ravel(), "k": kk.ravel(),
                                  "d_first": X[:, 0].ravel(), "d_last": X[:, -1].ravel()}))
    return {"D": pd.concat(D, ignore_index=True), "endpoints": pd.concat(ends, ignore_index=True),
            "timing": pd.DataFrame(times)}


def execute(ctx: base.Context) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    shards = [{"cell": c, "inits": list(cfg["init_schemes"]), "bias": bool(cfg["bias"]), "draws": int(cfg["draws"]),
               "max_length": int(cfg["max_length"]), "max_hidden": int(cfg["max_hidden"]),
               "seed": int(cfg["seed"])} for c in cfg["cells"]]
    outs = ctx.map(discrepancy_shard, shards, desc=NAME)
    return {t: pd.concat([o[t] for o in outs], ignore_index=True) for t in ("D", "endpoints", "timing")}


# ----------------------------------------------------------------------------- claims


def _retained(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """mean(last) / mean(first) over the draws (axis -2): the fraction of D(1, k) left at l_max."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return last.mean(-2) / first.mean(-2)


def _matrices(ends: pd.DataFrame, cell: str, init: str, k_min: int):
    e = ends[(ends.cell == cell) & (ends.init == init) & (ends.k >= k_min)]
    if e.empty:
        return None, None, []
    first = e.pivot_table(index="draw", columns="k", values="d_first").to_numpy()
    last = e.pivot_table(index="draw", columns="k", values="d_last").to_numpy()
    return first, last, sorted(int(k) for k in e.k.unique())


def _boot_means(first: np.ndarray, last: np.ndarray, n_boot: int, rng):
    """Bootstrap replicates of the per-k means of first and last (draws resampled jointly for all
    k): [n_boot, nk] each, through multinomial weights (one matrix product, no loop)."""
    n = len(first)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    return w @ first, w @ last


def _interval(reps: np.ndarray):
    reps = reps[np.isfinite(reps)]
    return None if len(reps) == 0 else (float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975)))


def ratio_with_interval(ends: pd.DataFrame, cell: str, init: str, k_min: int, how: str, n_boot: int,
                        seed: int = 0):
    """(max or min over k >= k_min of D(l_max, k) / D(1, k), bootstrap interval, ratio per k)."""
    first, last, ks = _matrices(ends, cell, init, k_min)
    if first is None:
        return np.nan, None, {}
    agg = np.max if how == "max" else np.min
    r = _retained(first, last)
    per_k = {k: float(v) for k, v in zip(ks, r)}
    if len(first) < 2:
        return float(agg(r)), None, per_k
    mf, ml = _boot_means(first, last, n_boot, np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = agg(ml / mf, axis=1)
    return float(agg(r)), _interval(reps), per_k


def gap_with_interval(ends: pd.DataFrame, cell: str, vanilla: str, init: str, n_boot: int, seed: int = 0):
    """min over k of retained(cell, k) / retained(vanilla, k), retained = D(l_max, k) / D(1, k);
    the draws of the two cells are resampled independently."""
    a, b = _matrices(ends, cell, init, 1), _matrices(ends, vanilla, init, 1)
    if a[0] is None or b[0] is None or a[2] != b[2]:
        return np.nan, None, {}
    with np.errstate(divide="ignore", invalid="ignore"):
        g = _retained(*a[:2]) / _retained(*b[:2])
    per_k = {k: float(v) for k, v in zip(a[2], g)}
    if len(a[0]) < 2 or len(b[0]) < 2:
        return float(np.min(g)), None, per_k
    rng = np.random.default_rng(seed)
    fa, la = _boot_means(*a[:2], n_boot, rng)
    fb, lb = _boot_means(*b[:2], n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = np.min((la / fa) / (lb / fb), axis=1)
    return float(np.min(g)), _interval(reps), per_k


def claims(tables: dict, cfg: dict) -> list[Claim]:
    out = []
    ends = tables["endpoints"]
    lmax = int(tables["D"].l.max()) if len(tables["D"]) else cfg["max_length"]
    vanilla = cfg["cells"][0]
    rel = cfg["vanish_rel"]
    paper = lambda s: " (the paper's N(0,1))" if s == "normal" else " (beyond the paper)"  # noqa: E731
    for init in cfg["init_schemes"]:
        v, ci, per_k = ratio_with_interval(ends, vanilla, init, 1, "max", cfg["n_boot"], cfg["seed"])
        out.append(threshold_claim(
            f"vanishes[{vanilla}, {init}]",
            f"{vanilla} without biases, {init} weights{paper(init)}: D(l, k) goes to ~0 as l grows, for "
            f"every k (D({lmax}, k) < {rel:g} x D(1, k))",
            f"max over k of D({lmax}, k) / D(1, k) (bootstrap over draws)", v, ci, rel, "<",
            details={"cell": vanilla, "init": init, "ratio_by_k": per_k}))
        for c in cfg["cells"][1:]:
            v, ci, per_k = ratio_with_interval(ends, c, init, cfg["k_min"], "min", cfg["n_boot"], cfg["seed"])
            out.append(threshold_claim(
                f"persists[{c}, {init}]",
                f"{c} without biases, {init} weights{paper(init)}: D(l, k) does not go to ~0, for every "
                f"k >= {cfg['k_min']} (D({lmax}, k) > {rel:g} x D(1, k))",
                f"min over k >= {cfg['k_min']} of D({lmax}, k) / D(1, k) (bootstrap over draws)", v, ci,
                rel, ">", details={"cell": c, "init": init, "ratio_by_k": per_k}))
            v, ci, per_k = gap_with_interval(ends, c, vanilla, init, cfg["n_boot"], cfg["seed"])
            out.append(threshold_claim(
                f"gap[{c} vs {vanilla}, {init}]",
                f"{init} weights{paper(init)}: at every k, {c} keeps more than {cfg['gap']:g}x the fraction "
                f"of its one-step discrepancy that {vanilla} keeps after {lmax} steps",
                f"min over k of [D({lmax}, k) / D(1, k)] of {c} over that of {vanilla} (bootstrap over draws)",
                v, ci, cfg["gap"], ">", details={"cell": c, "vanilla": vanilla, "init": init,
                                                 "gap_by_k": per_k}))
    return out


# ----------------------------------------------------------------------------- figures


def _grid(D: pd.DataFrame, cell: str, init: str):
    d = D[(D.cell == cell) & (D.init == init)]
    piv = d.pivot_table(index="l", columns="k", values="D")
    return piv.index.to_numpy(), piv.columns.to_numpy(), piv.to_numpy()


def _sparse_log_ticks(axis) -> None:
    """A few decade ticks, no minor ticks: log axes over ~20 decades otherwise draw hundreds."""
    from matplotlib.ticker import LogLocator, NullLocator
    axis.set_major_locator(LogLocator(base=10, numticks=6))
    axis.set_minor_locator(NullLocator())


def figures(tables: dict, cfg: dict) -> dict:
    from matplotlib.colors import LogNorm

    D = tables["D"]
    cells, schemes = cfg["cells"], cfg["init_schemes"]
    figs = {}
    # 3-D surfaces (Figs 10-11): rows = schemes, columns = cells
    fig = style.plt.figure(figsize=(4.6 * len(cells), 3.8 * len(schemes)))
    for i, init in enumerate(schemes):
        for j, c in enumerate(cells):
            ax = fig.add_subplot(len(schemes), len(cells), i * len(cells) + j + 1, projection="3d")
            ls, ks, z = _grid(D, c, init)
            if z.size == 0:
                continue
            K, L = np.meshgrid(ks, ls)
            ax.plot_surface(K, L, z, cmap="viridis", linewidth=0, antialiased=True, rasterized=True,
                            rcount=min(len(ls), 50), ccount=min(len(ks), 20))
            ax.set_xlabel("k (units)", fontsize=8)
            ax.set_ylabel("l (length)", fontsize=8)
            ax.set_zlabel("D(l, k)", fontsize=8)
            ax.set_title(f"{c}, {init}", fontsize=9)
            ax.view_init(elev=25, azim=-130)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"(l, k)-discrepancy, {int(tables['timing'].draws.iloc[0]) if len(tables['timing']) else '?'} "
                 "random draws, no biases", fontsize=11)
    figs["surfaces"] = fig
    # heatmaps with a log colour scale (the vanilla tail spans many decades)
    fig, axes = style.figure(len(schemes), len(cells), w=4.4, h=3.4)
    fig.subplots_adjust(hspace=0.4, wspace=0.3)
    pos = D.D[D.D > 0]
    lo = max(float(pos.min()), 1e-18) if len(pos) else 1e-18
    hi = float(D.D.max()) if len(D) else 1.0
    im = None
    for i, init in enumerate(schemes):
        for j, c in enumerate(cells):
            ax = axes[i, j]
            ls, ks, z = _grid(D, c, init)
            if z.size == 0:
                continue
            im = ax.imshow(np.clip(z, lo, None), origin="lower", aspect="auto", cmap="magma",
                           norm=LogNorm(vmin=lo, vmax=hi),
                           extent=(ks[0] - 0.5, ks[-1] + 0.5, ls[0] - 0.5, ls[-1] + 0.5))
            ax.set_xlabel("k (units)")
            ax.set_ylabel("l (sequence length)")
            ax.set_title(f"D(l, k): {c}, {init}", fontsize=9)
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), label="D(l, k) (log scale)", shrink=0.8)
        _sparse_log_ticks(cb.ax.yaxis)
    figs["heatmaps"] = fig
    # decay curves D(l, k) / D(1, k) for a few k
    fig, axes = style.figure(1, len(schemes), w=4.2, h=3.4)
    fig.subplots_adjust(wspace=0.3)
    kmax = int(D.k.max()) if len(D) else 1
    show = sorted({k for k in (1, 2, 5, 10, 20, kmax) if k <= kmax})
    for i, init in enumerate(schemes):
        ax = axes[0, i]
        for c, ls_ in zip(cells, ("-", "--", ":", "-.")):
            ls, ks, z = _grid(D, c, init)
            if z.size == 0:
                continue
            for k in show:
                col = list(ks).index(k)
                shade = style.plt.cm.viridis(show.index(k) / max(len(show) - 1, 1))
                ax.plot(ls, np.maximum(z[:, col] / z[0, col], 1e-20), ls_, color=shade, label=f"{c}, k={k}", lw=1.2)
        ax.axhline(cfg["vanish_rel"], color="k", lw=0.8, ls=":", label=f"vanish_rel = {cfg['vanish_rel']:g}")
        ax.set_yscale("log")
        _sparse_log_ticks(ax.yaxis)
        ax.set_xlabel("l (sequence length)")
        ax.set_ylabel("D(l, k) / D(1, k)")
        ax.set_title(f"Decay of the discrepancy, {init}", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    figs["decay"] = fig
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
