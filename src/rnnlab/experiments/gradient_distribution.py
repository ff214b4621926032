"""Distribution of gradient coefficients of the two embedded-Reber models (Sterin et al. §IV, Fig 9).

The populations trained by ``embedded-reber`` are reused as they are (same shard function, same
shard dicts: the store returns them without retraining). For every model, the gradient of the
per-string loss of the protocol (squared error for Sterin's) with respect to every parameter is
taken for every training string (``vmap`` of ``grad`` over strings and models), at the trained
(best-validation) parameters and at initialisation. The absolute values of these coefficients are
pooled per cell and compared: histograms at the paper's four ranges, quantiles, the
Kolmogorov-Smirnov distance and the ratio of medians.

Claim (paper): the two distributions are similar, so exploding/vanishing gradients do not explain
the vanilla RNN's failure. Vanishing or exploding gradients shift magnitudes by orders of
magnitude, and KS barely sees the tails where they show, so the statistic is on the log scale
and on the tails: per model the 1%, 50% and 99% quantiles of |gradient| (log10), and the claim
asks that at each of the three the mean over models of the gated cell and of the vanilla one
(first of ``cells``) differ by less than ``decade_margin`` (1: a factor 10) - the largest of the
three |differences|, from Welch intervals made simultaneous (Bonferroni over the three).
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._jaxcfg import jit
from ..analysis import stats
from ..analysis.claims import Claim, Declaration
from ..engine.population import make_population, sequence_loss
from ..errors import ConfigError
from ..plots import style
from . import base
from . import embedded_reber as er
from . import reber as rb
from .common import model_spec, params_from_frame, protocol_from, task_data

NAME = "gradient-distribution"
PAPER = "sterin"
SOURCE = "Sterin et al., section IV, Fig 9"
QUESTION = ("Are the gradients of a vanilla RNN trained on the embedded Reber grammar distributed "
            "differently (vanishing or exploding) from those of a GRU?")
ORDER = 3
VERSION = 1
ROUNDS = er.ROUNDS
RANGES = [[0.0, 4.0], [0.0, 0.5], [0.0, 0.002], [0.0, 0.0005]]
QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]
#: ECDF grid (log-spaced) of every model, for the ECDF figure
GRID = np.concatenate([[0.0], np.logspace(-14, 3, 341)])

CHOICES = {
    **{k: v for k, v in er.CHOICES.items() if k in ("seeds", "sizes", "bias", "init", "data", "quick", "tiny")},
    "reuse": "the models are embedded-reber's populations (same config keys and defaults, same shards)",
    "gradients": "per-string gradients of the protocol's loss (squared error summed over the string, the "
                 "quantity each per-sequence SGD step follows), every parameter, every training string, "
                 "every seed of a cell pooled; computed in float64",
    "stages": "at the trained parameters (best validation checkpoint) and at initialisation; the paper "
              "does not say which (its Fig 9 is 'when learning'); the claim is checked at both",
    "distance": "per model, the 1%, 50% and 99% quantiles of its |gradient coefficients| on the log10 scale; the "
                "cells are compared quantile by quantile by the mean over models (Welch intervals, Bonferroni over "
                "the three quantiles); the pooled KS distance and median ratio are reported beside (descriptive)",
    "decade_margin": "'similar' = within a factor 10 at the median and both tails (vanishing/exploding gradients "
                     "move magnitudes by orders of magnitude over the ~10-20 steps of a string); it fails when a "
                     "quantile differs by more than a decade; min effect 0.5 decade for the seeds needed",
    "histograms": "fraction of ALL coefficients falling in each of `bins` equal bins of the range",
    "diverged": "models that diverged during training are left out (their 'trained' parameters are their "
                "initial ones) unless every model of the cell diverged; exclude_diverged=false keeps them",
}


def default_config(scale: str) -> dict:
    cfg = er.default_config(scale)
    cfg.update({"ranges": [list(r) for r in RANGES], "bins": 40, "decade_margin": 1.0,
                "max_examples": 0, "exclude_diverged": True})
    return cfg


def validate(cfg: dict) -> None:
    er.validate(cfg)
    for r in cfg["ranges"]:
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and 0 <= r[0] < r[1]):
            raise ConfigError(f"ranges: every range must be [lo, hi] with 0 <= lo < hi, got {r!r}")
    for k in ("bins",):
        if isinstance(cfg[k], bool) or not isinstance(cfg[k], int) or cfg[k] < 1:
            raise ConfigError(f"{k}: must be a positive integer, got {cfg[k]!r}")
    if isinstance(cfg["max_examples"], bool) or not isinstance(cfg["max_examples"], int) or cfg["max_examples"] < 0:
        raise ConfigError(f"max_examples: must be an integer >= 0 (0: all), got {cfg['max_examples']!r}")
    if not isinstance(cfg["exclude_diverged"], bool):
        raise ConfigError(f"exclude_diverged: must be true or false, got {cfg['exclude_diverged']!r}")
    if not cfg["decade_margin"] > 0:
        raise ConfigError(f"decade_margin: must be > 0, got {cfg['decade_margin']!r}")


# ----------------------------------------------------------------------------- gradients


@partial(jit, static_argnames=("spec", "loss", "hmax"))
def per_example_abs_grads(spec, loss: str, hmax: int, params, data: dict):
    """|d loss(string) / d theta| for every model (leading axis of params), every string and
    every parameter: [M, N, P] (tensors in sorted tree order)."""
    def one_model(p):
        def one(tok, ln, tg, tm, ac):
            f = lambda q: sequence_loss(spec, loss, q, tok, ln, tg, tm, ac, hmax)[0]  # noqa: E731
            g = jax.grad(f)(p)
            return jnp.concatenate([jnp.abs(x).ravel() for x in jax.tree_util.tree_leaves(g)])
        return jax.vmap(one)(data["tokens"], data["lengths"], data["targets"], data["target_mask"],
                             data["accept"])
    return jax.vmap(one_model)(params)


def _stack_trees(trees: list[dict]) -> dict:
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs), jnp.float64), *trees)


def cell_gradients(shard: dict, params_df: pd.DataFrame, max_examples: int,
                   models: list[int] | None = None) -> dict[str, np.ndarray]:
    """{"trained": [M, N*P], "init": [M, N*P]} absolute gradient coefficients of the models
    `models` (indices in the shard's population; default all) of one cell."""
    spec = model_spec(shard["task"], shard["cell"], shard["init"], "float64", shard["bias"])
    prot = protocol_from(shard)
    train = task_data(shard)["train"]
    if max_examples:
        train = train.subset(np.arange(min(max_examples, len(train))))
    dev = {"tokens": jnp.asarray(train.tokens, jnp.int32), "lengths": jnp.asarray(train.lengths, jnp.int32),
           "targets": jnp.asarray(train.targets, jnp.int32),
           "target_mask": jnp.asarray(train.target_mask, jnp.float64),
           "accept": jnp.asarray(train.accept, jnp.float64)}
    models = sorted(int(m) for m in params_df.model.unique()) if models is None else list(models)
    trained = _stack_trees([params_from_frame(params_df, m) for m in models])
    sizes = np.asarray(shard["sizes"]).reshape(-1, 2)[models]
    if len(set(sizes[:, 1])) != 1:
        raise ConfigError("hidden: gradient-distribution needs one hidden size per cell")
    hmax = int(sizes[0, 1])
    pop = make_population(spec, sizes[:, 0], sizes[:, 1], np.asarray(shard["seeds"])[models])
    init = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), pop.params)
    out = {}
    for stage, params in (("trained", trained), ("init", init)):
        g = per_example_abs_grads(spec, prot.loss, hmax, params, dev)
        out[stage] = np.asarray(g).reshape(len(models), -1)
    return out


# ----------------------------------------------------------------------------- experiment


def _ecdf(sorted_x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_x, grid, side="right") / len(sorted_x)


def execute(ctx: base.Context) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    # embedded-reber's own shards, through its own namespace in the store
    shards = er.shards(cfg)
    outs = ctx.map_as(er, rb.sequence_shard, shards, desc=f"{NAME} (embedded-reber models)")

    hist, quant, ecdf, models, pooled = [], [], [], [], {}
    for shard, o in zip(shards, outs):
        c = shard["cell"]
        summ = o["summary"]
        keep = summ[summ.status != "diverged"] if cfg["exclude_diverged"] else summ
        if keep.empty:          # every model diverged: measure them anyway (flagged in `models`)
            keep = summ
        keep_models = sorted(int(m) for m in keep.model)
        grads = cell_gradients(shard, o["params"], cfg["max_examples"], keep_models)
        for stage, g in grads.items():
            flat = np.sort(g.ravel())
            pooled[(c, stage)] = flat
            n = len(flat)
            for j, (lo, hi) in enumerate(cfg["ranges"]):
                edges = np.linspace(lo, hi, cfg["bins"] + 1)
                counts = stats.histogram_sorted(flat, edges)
                hist.append(pd.DataFrame({"cell": c, "stage": stage, "range_id": j, "range_lo": lo,
                                          "range_hi": hi, "bin_left": edges[:-1], "bin_right": edges[1:],
                                          "count": counts, "frac": counts / n}))
            qs = np.quantile(flat, QUANTILES)
            quant.append(pd.DataFrame({"cell": c, "stage": stage, "q": QUANTILES + ["max", "mean"],
                                       "value": list(qs) + [flat[-1], flat.mean()]}).astype({"q": str}))
            for j, m in enumerate(keep_models):
                gs = np.sort(g[j])
                ecdf.append(pd.DataFrame({"cell": c, "stage": stage, "model": m, "x": GRID,
                                          "F": _ecdf(gs, GRID)}))
                r = summ[summ.model == m].iloc[0]
                models.append({"cell": c, "stage": stage, "model": m, "seed": int(r.seed),
                               "diverged": bool(r.status == "diverged"),
                               "long_term_test": float(r.long_term_test), "n": len(gs),
                               "q01": float(np.quantile(gs, 0.01)), "median": float(np.median(gs)),
                               "mean": float(gs.mean()),
                               "q99": float(np.quantile(gs, 0.99)), "max": float(gs[-1]),
                               "frac_below_1e-6": float(np.mean(gs < 1e-6))})
    dist = []
    vanilla = cfg["cells"][0]
    for c in cfg["cells"][1:]:
        for stage in ("trained", "init"):
            a, b = pooled[(c, stage)], pooled[(vanilla, stage)]
            dist.append({"stage": stage, "cell": c, "vanilla": vanilla, "ks": stats.ks_distance_sorted(a, b),
                         "median_ratio": float(np.median(a) / np.median(b)) if np.median(b) > 0 else np.nan,
                         "n_cell": len(a), "n_vanilla": len(b)})
    return {"hist": pd.concat(hist, ignore_index=True), "quantiles": pd.concat(quant, ignore_index=True),
            "ecdf": pd.concat(ecdf, ignore_index=True), "models": pd.DataFrame(models),
            "distance": pd.DataFrame(dist)}


# ----------------------------------------------------------------------------- claims


SIMILAR = Declaration(
    "gradients-similar[{gated} vs {vanilla}, {stage}]",
    "the |gradient coefficients| of {gated} and {vanilla} on embedded Reber ({stage} parameters) are similarly "
    "distributed: within a factor {factor:g} at the median and both tails (no vanishing or exploding gradients for "
    "the vanilla RNN)",
    "max over q in (0.01, 0.5, 0.99) of |mean log10 q-quantile {gated} - {vanilla}| over models (decades)",
    1.0, "<", 0.5, "normal", effect=False, planning={"sd": 0.5, "m": 3}, units="models (seeds) per cell",
    paper="Both distributions are similar and discredit the hypothesis that instable gradient's coefficients are "
          "responsible for the unability of Vanilla RNNs to correctly infer the embedded Reber's grammar.",
    figure="histograms_trained")
DECLARATIONS = [SIMILAR]
QS = ("q01", "median", "q99")


def claims(tables: dict, cfg: dict) -> list[Claim]:
    out = []
    vanilla = cfg["cells"][0]
    mt, dist = tables["models"], tables["distance"]
    decl = replace(SIMILAR, threshold=float(cfg["decade_margin"]))
    for c in cfg["cells"][1:]:
        for stage in ("trained", "init"):
            lv = stats.bonferroni(decl.level(cfg), len(QS))
            sel = {x: mt[(mt.cell == x) & (mt.stage == stage)] for x in (c, vanilla)}
            logq = {x: {q: np.log10(sel[x][q].to_numpy(float).clip(min=1e-300)) for q in QS} for x in sel}
            ests = [stats.absolute(stats.mean_difference(logq[c][q], logq[vanilla][q], lv)) for q in QS]
            row = dist[(dist.cell == c) & (dist.stage == stage)]
            details = {"stage": stage, **{f"{x}_models": len(sel[x]) for x in sel},
                       **{f"{x}_diverged_models": int(sel[x].diverged.sum()) for x in sel if "diverged" in sel[x]},
                       **{f"log10_{q}_diff": e.value if e.defined else None for q, e in zip(QS, ests)},
                       "pooled_ks": float(row.ks.iloc[0]) if len(row) else None,
                       "pooled_median_ratio": float(row.median_ratio.iloc[0]) if len(row) else None}
            out.append(decl.decide(stats.extreme(ests, "max", decl.level(cfg), "quantiles"),
                                   dict(gated=c, vanilla=vanilla, stage=stage, factor=10 ** decl.threshold),
                                   details, scale=("inits", cfg["inits"])))
    return out


# ----------------------------------------------------------------------------- figures


def figures(tables: dict, cfg: dict) -> dict:
    figs = {}
    hist = tables["hist"]
    for stage in ("trained",):          # the paper's figure; the init stage is in the ECDF figure
        n = len(cfg["ranges"])
        ncol = 2 if n > 1 else 1
        nrow = -(-n // ncol)
        fig, axes = style.figure(nrow, ncol, w=4.4, h=3.0)
        fig.subplots_adjust(hspace=0.45, wspace=0.3)
        for j in range(nrow * ncol):
            ax = axes[j // ncol, j % ncol]
            if j >= n:
                ax.axis("off")
                continue
            for c in cfg["cells"]:
                h = hist[(hist.cell == c) & (hist.stage == stage) & (hist.range_id == j)]
                if h.empty:
                    continue
                ax.stairs(h.frac.to_numpy(), np.r_[h.bin_left.to_numpy(), h.bin_right.iloc[-1]],
                          color=style.color(c), label=f"{c} ({h['count'].sum() / h.frac.sum():,.0f} coeffs)"
                          if h.frac.sum() > 0 else c, lw=1.4)
            lo, hi = cfg["ranges"][j]
            ax.set_yscale("log")
            ax.set_xlim(lo, hi)
            ax.xaxis.set_major_locator(style.plt.MaxNLocator(5))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
            ax.set_xlabel("|gradient coefficient|")
            ax.set_ylabel("fraction of all coefficients")
            ax.set_title(f"range [{lo:g}, {hi:g}]", fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(f"Embedded Reber: |per-string gradient coefficients|, {stage} parameters", fontsize=10)
        figs[f"histograms_{stage}"] = fig
    fig, axes = style.figure(1, 1, w=5.5, h=3.6)
    ax = axes[0, 0]
    e = tables["ecdf"]
    for c in cfg["cells"]:
        for stage, ls in (("trained", "-"), ("init", "--")):
            sel = e[(e.cell == c) & (e.stage == stage)]
            if sel.empty:
                continue
            F = sel.groupby("x").F.mean()
            ax.plot(np.maximum(F.index.to_numpy(), 1e-14), F.to_numpy(), ls, color=style.color(c),
                    label=f"{c}, {stage}")
    ax.set_xscale("log")
    ax.set_xlabel("|gradient coefficient|")
    ax.set_ylabel("cumulative fraction (pooled over seeds)")
    ax.text(0.02, 0.12, "the step at the left: coefficients that are exactly 0\n(e.g. input weights of symbols "
            "never fed)", transform=ax.transAxes, fontsize=7)
    d = tables["distance"]
    ks = ", ".join(f"{r.cell} vs {r.vanilla} {r.stage}: KS {r.ks:.3f}" for r in d.itertuples())
    ax.set_title(f"Empirical CDFs\n{ks}", fontsize=8)
    ax.legend(fontsize=7)
    figs["ecdf"] = fig
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
