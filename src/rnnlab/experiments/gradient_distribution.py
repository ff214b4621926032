"""Distribution of gradient coefficients of the two embedded-Reber models (Sterin et al. §IV, Fig 9).

The populations trained by ``embedded-reber`` are reused as they are (same shard function, same
shard dicts: the store returns them without retraining). For every model, the gradient of the
per-string loss of the protocol (squared error for Sterin's) with respect to every parameter is
taken for every training string (``vmap`` of ``grad`` over strings and models), at the trained
(best-validation) parameters and at initialisation. The absolute values of these coefficients are
pooled per cell and compared: histograms at the paper's four ranges, quantiles, the
Kolmogorov-Smirnov distance and the ratio of medians.

Claim (paper): the two distributions are similar, so exploding/vanishing gradients do not explain
the vanilla RNN's failure: KS distance between the pooled |gradient| samples of each gated cell
and the vanilla one (first of ``cells``) < ``ks_threshold``, with a bootstrap interval over models.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..analysis.claims import Claim, ks_distance, threshold_claim
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
RANGES = [[0.0, 4.0], [0.0, 0.5], [0.0, 0.002], [0.0, 0.0005]]
QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]
#: ECDF grid (log-spaced) used for the bootstrap over models
GRID = np.concatenate([[0.0], np.logspace(-14, 3, 341)])

CHOICES = {
    **{k: v for k, v in er.CHOICES.items() if k in ("seeds", "sizes", "bias", "init", "data", "quick", "tiny")},
    "reuse": "the models are embedded-reber's populations (same config keys and defaults, same shards)",
    "gradients": "per-string gradients of the protocol's loss (squared error summed over the string, the "
                 "quantity each per-sequence SGD step follows), every parameter, every training string, "
                 "every seed of a cell pooled; computed in float64",
    "stages": "at the trained parameters (best validation checkpoint) and at initialisation; the paper "
              "does not say which (its Fig 9 is 'when learning'); the claim is checked at both",
    "distance": "two-sample Kolmogorov-Smirnov distance of the pooled samples; its 95% interval is a "
                "bootstrap over models (resampling seeds within each cell) on the pooled ECDF evaluated on "
                "a log grid of 341 points in [1e-14, 1e3]; the median ratio is reported alongside",
    "ks_threshold": "'similar' means KS < 0.2 (the upper bound of the interval below it: holds; the lower "
                    "bound at or above it: fails)",
    "histograms": "fraction of ALL coefficients falling in each of `bins` equal bins of the range",
    "diverged": "models that diverged during training are left out (their 'trained' parameters are their "
                "initial ones) unless every model of the cell diverged; exclude_diverged=false keeps them",
}


def default_config(scale: str) -> dict:
    cfg = er.default_config(scale)
    cfg.update({"ranges": [list(r) for r in RANGES], "bins": 40, "ks_threshold": 0.2,
                "n_boot": 1000, "max_examples": 0, "exclude_diverged": True})
    if scale == "tiny":
        cfg.update(n_boot=200)
    return cfg


def validate(cfg: dict) -> None:
    er.validate(cfg)
    for r in cfg["ranges"]:
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and 0 <= r[0] < r[1]):
            raise ConfigError(f"ranges: every range must be [lo, hi] with 0 <= lo < hi, got {r!r}")
    for k in ("bins", "n_boot"):
        if isinstance(cfg[k], bool) or not isinstance(cfg[k], int) or cfg[k] < 1:
            raise ConfigError(f"{k}: must be a positive integer, got {cfg[k]!r}")
    if isinstance(cfg["max_examples"], bool) or not isinstance(cfg["max_examples"], int) or cfg["max_examples"] < 0:
        raise ConfigError(f"max_examples: must be an integer >= 0 (0: all), got {cfg['max_examples']!r}")
    if not isinstance(cfg["exclude_diverged"], bool):
        raise ConfigError(f"exclude_diverged: must be true or false, got {cfg['exclude_diverged']!r}")
    if not 0 < cfg["ks_threshold"] <= 1:
        raise ConfigError(f"ks_threshold: must be in (0, 1], got {cfg['ks_threshold']!r}")


# ----------------------------------------------------------------------------- gradients


@partial(jax.jit, static_argnames=("spec", "loss", "hmax"))
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
    sub = base.Context(er.NAME, er.VERSION, cfg, ctx.store, ctx.backend, ctx.progress)
    shards = er.shards(cfg)
    outs = sub.map(rb.sequence_shard, shards, desc=f"{NAME} (embedded-reber models)")
    ctx.shards_computed += sub.shards_computed
    ctx.shards_reused += sub.shards_reused

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
                counts = np.histogram(flat, bins=edges)[0]
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
                               "median": float(np.median(gs)), "mean": float(gs.mean()),
                               "q99": float(np.quantile(gs, 0.99)), "max": float(gs[-1]),
                               "frac_below_1e-6": float(np.mean(gs < 1e-6))})
    dist = []
    vanilla = cfg["cells"][0]
    for c in cfg["cells"][1:]:
        for stage in ("trained", "init"):
            a, b = pooled[(c, stage)], pooled[(vanilla, stage)]
            dist.append({"stage": stage, "cell": c, "vanilla": vanilla, "ks": ks_distance(a, b),
                         "median_ratio": float(np.median(a) / np.median(b)) if np.median(b) > 0 else np.nan,
                         "n_cell": len(a), "n_vanilla": len(b)})
    return {"hist": pd.concat(hist, ignore_index=True), "quantiles": pd.concat(quant, ignore_index=True),
            "ecdf": pd.concat(ecdf, ignore_index=True), "models": pd.DataFrame(models),
            "distance": pd.DataFrame(dist)}


# ----------------------------------------------------------------------------- claims


def _pooled_median(x: np.ndarray, F: np.ndarray) -> float:
    """Median of a pooled ECDF given on the grid (log-linear interpolation)."""
    i = int(np.searchsorted(F, 0.5))
    if i == 0:
        return float(x[0])
    if i >= len(F):
        return float(x[-1])
    f0, f1 = F[i - 1], F[i]
    x0, x1 = max(x[i - 1], 1e-300), x[i]
    w = (0.5 - f0) / max(f1 - f0, 1e-300)
    return float(np.exp(np.log(x0) + w * (np.log(x1) - np.log(x0))))


def bootstrap_distance(ecdf: pd.DataFrame, cell: str, vanilla: str, stage: str, n_boot: int, seed: int = 0):
    """(grid KS, (lo, hi), median ratio, (lo, hi)) resampling models within each cell."""
    def mat(c):
        e = ecdf[(ecdf.cell == c) & (ecdf.stage == stage)]
        return e.pivot_table(index="model", columns="x", values="F").to_numpy()
    A, B = mat(cell), mat(vanilla)
    if A.size == 0 or B.size == 0:
        return np.nan, None, np.nan, None

    def stats(a, b):
        fa, fb = a.mean(0), b.mean(0)
        mb = _pooled_median(GRID, fb)
        return np.max(np.abs(fa - fb)), _pooled_median(GRID, fa) / mb if mb > 0 else np.nan
    ks0, mr0 = stats(A, B)
    if len(A) < 2 or len(B) < 2:
        return ks0, None, mr0, None
    rng = np.random.default_rng(seed)
    reps = np.array([stats(A[rng.integers(0, len(A), len(A))], B[rng.integers(0, len(B), len(B))])
                     for _ in range(n_boot)])
    def ci(v):
        v = v[np.isfinite(v)]
        return None if len(v) == 0 else (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975)))
    return ks0, ci(reps[:, 0]), mr0, ci(reps[:, 1])


def claims(tables: dict, cfg: dict) -> list[Claim]:
    out = []
    vanilla = cfg["cells"][0]
    dist = tables["distance"]
    for c in cfg["cells"][1:]:
        for stage in ("trained", "init"):
            row = dist[(dist.cell == c) & (dist.stage == stage)]
            ks = float(row.ks.iloc[0]) if len(row) else np.nan
            ks_grid, ci, mr, mr_ci = bootstrap_distance(tables["ecdf"], c, vanilla, stage, cfg["n_boot"],
                                                        cfg["seed"])
            mt = tables.get("models")
            used = {} if mt is None else {
                f"{cc}_models": int(((mt.cell == cc) & (mt.stage == stage)).sum()) for cc in (c, vanilla)}
            if mt is not None and "diverged" in mt:
                used.update({f"{cc}_diverged_models": int(((mt.cell == cc) & (mt.stage == stage) & mt.diverged).sum())
                             for cc in (c, vanilla)})
            q = tables["quantiles"]
            qd = {f"{cc}_{r.q}": float(r.value) for cc in (c, vanilla)
                  for r in q[(q.cell == cc) & (q.stage == stage)].itertuples()}
            # the interval is the bootstrap of the grid KS, shifted onto the exact KS
            interval = None if ci is None else (max(0.0, ci[0] + ks - ks_grid), min(1.0, ci[1] + ks - ks_grid))
            out.append(threshold_claim(
                f"gradients-similar[{c} vs {vanilla}, {stage}]",
                f"the |gradient coefficients| of {c} and {vanilla} on embedded Reber ({stage} parameters) "
                "are similarly distributed (no vanishing or exploding gradients for the vanilla RNN)",
                "two-sample KS distance of the pooled |gradient| samples (bootstrap over models)",
                ks, interval, cfg["ks_threshold"], "<",
                details={"stage": stage, **used, "ks_grid": ks_grid, "median_ratio": mr, "median_ratio_ci": mr_ci,
                         "median_ratio_point": float(row.median_ratio.iloc[0]) if len(row) else None,
                         **qd}))
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
