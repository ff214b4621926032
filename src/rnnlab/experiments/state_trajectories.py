"""Hidden-state trajectories of trained 4-input, 2-hidden models on Count (Mehta IV.B, Fig 2).

A population of inits is trained per cell; the models reaching ``min_val_acc`` (paper: 98%) are
probed with paired sequences:

  * ``stop-prefix``: three leading stop words vs three other words, then the same suffix; by
    default the other prefix is net-zero (one positive, one negative and one stop word, in random
    order), so a model that counts correctly CAN make the two states coincide (with the paper's
    three sentiment words the counts differ by an odd number and a correct counter must keep the
    states apart);
  * ``lone``: one sentiment word followed only by stop words, up to ``max_len`` (paper 2000);
    the *forgetting horizon* is the largest L such that every prefix of length 1..L is still
    classified as the lone word's sentiment, for a positive-first and a negative-first sentence
    alike;
  * ``swap``: a labelled sentence and the same sentence with one adjacent pos/neg pair swapped.

Claims (declarations; one value per model, counts with Newcombe intervals):
  * after the differing prefix, a gated cell's states coincide (the model's median relative
    final distance over the pairs < ``coincide_eps``) in far more models than the vanilla cell's
    (first of ``cells``): difference of the fractions of models whose states coincide;
  * the gated cell remembers the lone word far longer: a horizon is censored at ``max_len``, so
    the statistic is the difference of the fractions of models that never forget within
    ``max_len`` (one horizon per model: the minimum over the four lone words); Kaplan-Meier
    medians and the log-rank p-value are in the details.
"""
from __future__ import annotations

import importlib
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import tasks as tasks_mod
from .._jaxcfg import jit
from ..analysis import stats
from ..analysis.claims import Declaration
from ..engine import model as mdl
from ..engine.model import check_size
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import cells_list, model_spec, params_from_frame, train_shard
from .word_geometry import models_table, population_shards, validate_single

NAME = "state-trajectories"
PAPER = "mehta"
SOURCE = "Mehta, section IV.B, Fig 2"
QUESTION = ("How does the 2-D hidden state of a trained model move through a sentence: does it ignore "
            "leading stop words, and how long does it remember a lone first sentiment word?")
ORDER = 2
VERSION = 1
ROUNDS = {"units": "inits", "offset": "init_offset"}
CHOICES = {
    "inits": "a population of inits is trained per cell and every model reaching min_val_acc is probed "
             "(paper: one model per cell); the figures show the best model",
    "fallback": "a cell with no model reaching min_val_acc is drawn with its best model, and its claims "
                "are inconclusive",
    "pairs": "n_pairs random pairs per probe (seeded by `seed`); stop-prefix pairs have the same label; "
             "swap pairs are sentences with net sentiment +-1 (the paper's swapped pair had equal counts, "
             "which Count cannot label)",
    "filler": "the stop words after the lone sentiment word are drawn uniformly from the 6 stop words",
    "horizon": "largest L in 1..max_len such that every prefix of length 1..L is classified as the lone "
               "word's sentiment, for a positive-first AND a negative-first sentence with the same stop-word "
               "filler (so a model that always answers one class has horizon 0); all 2x2 pos/neg word pairs",
    "prefix_kind": "net-zero (default): the other prefix is one positive, one negative and one stop word in "
                   "random order, so 'coincide' is what a correct counter can do; 'stop-stop': three other stop "
                   "words; 'paper': three sentiment words (an odd count difference: a correct counter keeps the "
                   "states apart)",
    "coincide_eps": "a model's states coincide when its median over pairs of ||h_a - h_b|| / max(||h_a||, ||h_b||) "
                    "at the last word is < 0.01",
    "horizon_statistic": "one horizon per model (the minimum over the 4 lone words); horizons are censored at "
                         "max_len, so the claim compares the fractions of models that never forget within max_len "
                         "(the paper: RNN ~15 words, GRU >= 2000)",
    "min_effect": "'far longer' / 'coincide while the other does not': at least 0.5 in the difference of fractions",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "batch_size": "32 (the paper does not give it)",
    "quick": "quick scale: 6 inits (paper scale 10) trained with the paper's full M protocol (8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs)",
    "tiny": "tiny scale (tests only): hidden 4 (figures show h1, h2), 8 inits, 300/200/200 sequences, "
            "2 epochs, max_len 200, min_val_acc 0",
}
PAIR_KINDS = ("stop-prefix", "lone", "swap")
PREFIX_KINDS = ("net-zero", "stop-stop", "paper")


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "task": "count", "input": 4, "hidden": 2,
           "inits": 10, "init_scheme": "torch", "protocol": "mehta", "max_epochs": 150,
           "data_sizes": {"train": 8000, "val": 2000, "test": 3000}, "min_val_acc": 0.98,
           "max_len": 2000, "n_pairs": 20, "coincide_eps": 0.01, "prefix_kind": "net-zero"}
    if scale == "quick":
        cfg.update(inits=6)
    elif scale == "tiny":
        # tests only: 4x4 and 8 models, the shapes of the other tiny runs, so the compiled epoch is shared
        cfg.update(hidden=4, inits=8, max_epochs=2, data_sizes={"train": 300, "val": 200, "test": 200},
                   min_val_acc=0.0, max_len=200, n_pairs=4)
    return cfg


def validate(cfg: dict) -> None:
    validate_single(cfg)
    for k in ("max_len", "n_pairs"):
        check_size(k, cfg[k])
    if cfg["max_len"] < 2:
        raise ConfigError(f"max_len: must be at least 2, got {cfg['max_len']!r}")
    if not cfg["coincide_eps"] > 0:
        raise ConfigError(f"coincide_eps: must be > 0, got {cfg['coincide_eps']!r}")
    if cfg["prefix_kind"] not in PREFIX_KINDS:
        raise ConfigError(f"prefix_kind: one of {', '.join(PREFIX_KINDS)}, got {cfg['prefix_kind']!r}")


# ----------------------------------------------------------------------------- probes

STOP, POS, NEG = (np.asarray(x) for x in (tasks_mod.STOP, tasks_mod.POS, tasks_mod.NEG))
SENTIMENT = np.concatenate([POS, NEG])
LENGTH = 10       # the training sentence length of the M tasks
PREFIX = 3


def _rule(task: str):
    return importlib.import_module(tasks_mod.get(task).module).rule


def _label(rule, seq: np.ndarray):
    lab, ok = rule(np.asarray(seq, np.int32)[None])
    return int(lab[0]), bool(ok[0])


def _other_prefix(rng, kind: str) -> np.ndarray:
    if kind == "paper":
        return rng.choice(SENTIMENT, PREFIX)
    if kind == "stop-stop":
        return rng.choice(STOP, PREFIX)
    return rng.permutation([rng.choice(POS), rng.choice(NEG), rng.choice(STOP)])


def make_probes(task: str, seed: int, n_pairs: int, max_len: int, prefix_kind: str = "net-zero") -> dict:
    """Token arrays of the three probes (the same for every cell and model)."""
    rule = _rule(task)
    rng = np.random.default_rng([int(seed), 2024])
    a, a_lab = [], []
    while len(a) < n_pairs:
        suffix = rng.integers(0, 10, LENGTH - PREFIX)
        sa = np.r_[rng.choice(STOP, PREFIX), suffix]
        sb = np.r_[_other_prefix(rng, prefix_kind), suffix]
        (la, oka), (lb, okb) = _label(rule, sa), _label(rule, sb)
        if oka and okb and la == lb:
            a.append([sa, sb])
            a_lab.append([la, lb])
    c, c_lab = [], []
    tries = 0
    while len(c) < n_pairs and tries < 100000:
        tries += 1
        s = rng.integers(0, 10, LENGTH)
        net = np.isin(s, POS).sum() - np.isin(s, NEG).sum()
        adj = [i for i in range(LENGTH - 1) if {word_sign(s[i]), word_sign(s[i + 1])} == {1, -1}]
        if abs(net) != 1 or not adj:
            continue
        t = s.copy()
        i = adj[0]
        t[i], t[i + 1] = s[i + 1], s[i]
        (ls, oks), (lt, okt) = _label(rule, s), _label(rule, t)
        if oks and okt:
            c.append([s, t])
            c_lab.append([ls, lt])
    filler = rng.choice(STOP, max_len)
    lone = np.stack([np.r_[w, filler[1:]] for w in SENTIMENT])
    lone_lab = [_label(rule, row[:1]) for row in lone]
    return {"stop-prefix": (np.asarray(a, np.int32).reshape(-1, 2, LENGTH), np.asarray(a_lab, int).reshape(-1, 2)),
            "swap": (np.asarray(c, np.int32).reshape(-1, 2, LENGTH), np.asarray(c_lab, int).reshape(-1, 2)),
            "lone": (lone.astype(np.int32), np.array([lab if ok else -1 for lab, ok in lone_lab]))}


def word_sign(w) -> int:
    return 1 if w in POS else -1 if w in NEG else 0


@partial(jit, static_argnames=("spec", "hmax"))
def probe(spec, hmax: int, params, tokens):
    """(outputs [M, S, T, n_out], hidden [M, S, T, hmax]) of every model on every sequence."""
    def one_model(p):
        def one_seq(tok):
            out, states = mdl.forward(spec, p, tok, tok.shape[0], hmax)
            return out, spec.cell_def.hidden_of(states, hmax)
        return jax.vmap(one_seq)(tokens)
    return jax.vmap(one_model)(params)


def stacked_params(params_df: pd.DataFrame, models: list[int]) -> dict:
    trees = [params_from_frame(params_df, int(m)) for m in models]
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs), jnp.float64), *trees)


# ----------------------------------------------------------------------------- execute


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = np.maximum(np.maximum(np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)), 1e-12)
    return np.linalg.norm(a - b, axis=-1) / den


def execute(ctx) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    outs = ctx.map(train_shard, population_shards(cfg, tag=2), desc=ctx.name)
    summary = pd.concat([o["summary"] for o in outs], ignore_index=True)
    models = models_table(summary, cfg["min_val_acc"])
    probes = make_probes(cfg["task"], cfg["seed"], cfg["n_pairs"], cfg["max_len"], cfg["prefix_kind"])
    hidden = int(cfg["hidden"])
    pairs_rows, dist_rows, hor_rows, traj = [], [], [], []
    for cell, o in zip(cfg["cells"], outs):
        mc = models[models.cell == cell]
        chosen = mc[mc.qualifies | mc.selected]
        ids = chosen.model.astype(int).tolist()
        qual = dict(zip(ids, chosen.qualifies.tolist()))
        sel = int(mc[mc.selected].model.iloc[0])
        spec = model_spec(cfg["task"], cell, cfg["init_scheme"], "float64")
        params = stacked_params(o["params"], ids)
        res = {}
        for kind in ("stop-prefix", "swap"):
            toks, labs = probes[kind]
            if len(toks) == 0:
                continue
            out, h = probe(spec, hidden, params, jnp.asarray(toks.reshape(-1, LENGTH)))
            out = np.asarray(out).reshape(len(ids), len(toks), 2, LENGTH, -1)
            h = np.asarray(h).reshape(len(ids), len(toks), 2, LENGTH, -1)
            res[kind] = (out, h)
            pred = out[:, :, :, -1].argmax(-1)                    # [M, P, 2]
            rel_t = _rel(h[:, :, 0], h[:, :, 1])                  # [M, P, T]
            for mi, m in enumerate(ids):
                for p in range(len(toks)):
                    pairs_rows.append((cell, m, qual[m], kind, p, int(labs[p, 0]), int(labs[p, 1]),
                                       int(pred[mi, p, 0]), int(pred[mi, p, 1]),
                                       float(np.linalg.norm(h[mi, p, 0, -1] - h[mi, p, 1, -1])),
                                       float(rel_t[mi, p, -1])))
                    if kind == "stop-prefix":
                        for t in range(LENGTH):
                            dist_rows.append((cell, m, qual[m], p, t + 1, float(rel_t[mi, p, t])))
        toks, labs = probes["lone"]
        out, h = probe(spec, hidden, params, jnp.asarray(toks))
        out, h = np.asarray(out), np.asarray(h)                   # [M, 4, T, n_out], [M, 4, T, H]
        pred = out.argmax(-1)
        for mi, m in enumerate(ids):
            hz = {}
            for s, w in enumerate(SENTIMENT):
                if labs[s] < 0:
                    hz[int(w)] = np.nan
                else:
                    wrong = np.flatnonzero(pred[mi, s] != labs[s])
                    hz[int(w)] = int(wrong[0]) if len(wrong) else int(cfg["max_len"])
                kind = "pos" if w in POS else "neg"
                hor_rows.append((cell, m, qual[m], kind, int(w) if kind == "pos" else -1,
                                 int(w) if kind == "neg" else -1, hz[int(w)]))
            for wp in POS:
                for wn in NEG:       # a pos-first and a neg-first sentence must BOTH be classified right
                    hor_rows.append((cell, m, qual[m], "both", int(wp), int(wn),
                                     float(np.fmin(hz[int(wp)], hz[int(wn)]))))
        # trajectories of the selected (best) model
        mi = ids.index(sel)

        def add(kind, which, tokens, hh, oo):
            for t in range(len(tokens)):
                traj.append((cell, sel, kind, which, t + 1, int(tokens[t]),
                             *[float(v) for v in hh[t, :hidden]], float(oo[t, -1] - oo[t, 0]),
                             int(oo[t].argmax())))
        for kind, names in (("stop-prefix", ("stop", "non-stop")), ("swap", ("original", "swapped"))):
            if kind in res:
                o_k, h_k = res[kind]
                for j, nm in enumerate(names):
                    add(kind, nm, probes[kind][0][0, j], h_k[mi, 0, j], o_k[mi, 0, j])
        for s, nm in ((0, "pos"), (len(POS), "neg")):
            add("lone", nm, toks[s], h[mi, s], out[mi, s])
    hcols = [f"h{j + 1}" for j in range(hidden)]
    return {
        "models": models,
        "pairs": pd.DataFrame(pairs_rows, columns=["cell", "model", "qualifies", "pair", "index", "label_a",
                                                   "label_b", "pred_a", "pred_b", "final_dist",
                                                   "rel_final_dist"]),
        "distance": pd.DataFrame(dist_rows, columns=["cell", "model", "qualifies", "index", "t", "rel_dist"]),
        "horizon": pd.DataFrame(hor_rows, columns=["cell", "model", "qualifies", "word_kind", "pos_word",
                                                   "neg_word", "horizon"]),
        "trajectories": pd.DataFrame(traj, columns=["cell", "model", "pair", "which", "t", "token", *hcols,
                                                    "logit_diff", "pred"]),
    }


# ----------------------------------------------------------------------------- claims


COINCIDE = Declaration(
    "prefix-forgotten-{gated}-vs-{vanilla}",
    "After three leading stop words vs a {kind} prefix and the same suffix, {gated}'s states coincide at the end "
    "in far more models than {vanilla}'s.",
    "fraction of models whose states coincide (median rel. final distance < {eps:g}): {gated} - {vanilla}",
    0.0, ">", 0.5, "difference", planning={"p_base": 0.25}, units="qualifying models per cell",
    paper="In the plot of GRU, the state coincides from the 7 word onwards while in RNN the state never coincides "
          "at all.", figure="horizon")
HORIZON = Declaration(
    "horizon-{gated}-vs-{vanilla}",
    "{gated} keeps classifying a lone first sentiment word followed by stop words far longer than {vanilla}: more "
    "of its models never forget it within {max_len} words (paper: RNN ~15 words, GRU >= 2000).",
    "fraction of models never forgetting within {max_len} words: {gated} - {vanilla}",
    0.0, ">", 0.5, "difference", planning={"p_base": 0.25}, units="qualifying models per cell",
    paper="the RNN could only classify correctly till the 15 length sentences ... On the other hand GRU for the "
          "same sentences could surprisingly classify correctly even till the 2000 time steps.", figure="horizon")
DECLARATIONS = [COINCIDE, HORIZON]


def model_horizons(hor: pd.DataFrame) -> pd.Series:
    """One horizon per qualifying model: the minimum over its lone words (cell, model) -> horizon."""
    h = hor[hor.qualifies.astype(bool) & hor.word_kind.isin(["pos", "neg"])]
    return h.groupby(["cell", "model"]).horizon.min()


def claims(tables: dict, config: dict) -> list:
    pairs, hor, models = tables["pairs"], tables["horizon"], tables["models"]
    cells = cells_list(config["cells"])
    vanilla = cells[0]
    eps, max_len = float(config["coincide_eps"]), int(config["max_len"])
    nq = {c: int(models[(models.cell == c) & models.qualifies].shape[0]) for c in cells}
    common = {"min_val_acc": float(config["min_val_acc"]), "qualifying_models": nq, "inits": int(config["inits"])}
    sp = pairs[(pairs.pair == "stop-prefix") & pairs.qualifies.astype(bool)]
    med = sp.groupby(["cell", "model"]).rel_final_dist.median()
    hz = model_horizons(hor)
    out = []
    for gated in cells[1:]:
        kn = {c: (int((med.get(c, pd.Series(dtype=float)) < eps).sum()), int(len(med.get(c, [])))) for c in (gated, vanilla)}
        est = stats.proportion_difference(*kn[gated], *kn[vanilla], COINCIDE.level(config))
        det = dict(common, eps=eps, prefix_kind=config["prefix_kind"],
                   **{f"coincide_{c}": f"{k}/{n}" for c, (k, n) in kn.items()},
                   **{f"median_rel_dist_{c}": float(med[c].median()) if c in med else None for c in kn})
        scale = ("inits", config["inits"])
        out.append(COINCIDE.decide(est, dict(gated=gated, vanilla=vanilla, eps=eps, kind=config["prefix_kind"]),
                                   det, scale=scale))
        h = {c: hz[c].to_numpy(float) if c in hz else np.zeros(0) for c in (gated, vanilla)}
        kn = {c: (int((x >= max_len).sum()), len(x)) for c, x in h.items()}
        est = stats.proportion_difference(*kn[gated], *kn[vanilla], HORIZON.level(config))
        det = dict(common, max_len=max_len, **{f"never_forget_{c}": f"{k}/{n}" for c, (k, n) in kn.items()},
                   **{f"kaplan_meier_{c}": stats.censored(x, max_len) for c, x in h.items()},
                   **{f"horizons_{c}": x.tolist() for c, x in h.items()},
                   logrank_p=stats.logrank_pvalue(h[gated], h[vanilla], max_len))
        out.append(HORIZON.decide(est, dict(gated=gated, vanilla=vanilla, max_len=max_len), det, scale=scale))
    return out


# ----------------------------------------------------------------------------- figures


def _path(ax, g, label, color, ls="-", annotate=True, marker="o"):
    x, y = g.h1.to_numpy(), (g.h2.to_numpy() if "h2" in g else np.zeros(len(g)))
    ax.plot(x, y, ls, color=color, marker=marker, ms=4, lw=1.2, label=label, alpha=0.9)
    ax.scatter(x[:1], y[:1], color=color, marker="s", s=30, zorder=4)
    if annotate:
        for t, (a, b, tok) in enumerate(zip(x, y, g.token)):
            ax.annotate(f"{t + 1}:{tok}", (a, b), textcoords="offset points", xytext=(3, 3), fontsize=6,
                        color=color)


def figures(tables: dict, config: dict) -> dict:
    traj, hor, dist, models = tables["trajectories"], tables["horizon"], tables["distance"], tables["models"]
    cells = cells_list(config["cells"])
    figs = {}
    fig, axes = style.figure(3, len(cells), w=3.8, h=3.4)
    show = min(60, int(config["max_len"]))
    for c, cell in enumerate(cells):
        tc = traj[traj.cell == cell]
        acc = models[(models.cell == cell) & models.selected].best_val_acc
        acc_s = f"val acc {100 * float(acc.iloc[0]):.1f}%" if len(acc) else ""
        for r, (kind, names, colors) in enumerate((
                ("stop-prefix", ("stop", "non-stop"), ("#7f7f7f", "#9467bd")),
                ("lone", ("pos", "neg"), ("#2ca02c", "#d62728")),
                ("swap", ("original", "swapped"), ("#1f77b4", "#ff7f0e")))):
            ax = axes[r][c]
            for nm, col in zip(names, colors):
                g = tc[(tc.pair == kind) & (tc.which == nm)].sort_values("t")
                if kind == "lone":
                    g = g[g.t <= show]
                if g.empty:
                    continue
                lab = nm
                if kind != "lone":
                    lab = f"{nm} (pred {'pos' if g.pred.iloc[-1] == 1 else 'neg'})"
                _path(ax, g, lab, col, annotate=kind != "lone", marker="o" if kind != "lone" else ".")
            title = {"stop-prefix": "3 stop vs 3 sentiment words, same suffix",
                     "lone": f"lone first word + stop words (first {show} steps)",
                     "swap": "adjacent pos/neg pair swapped"}[kind]
            ax.set_title(f"{cell} ({acc_s})\n{title}", fontsize=8)
            ax.set_xlabel("h1")
            ax.set_ylabel("h2")
            ax.legend(fontsize=6, loc="best")
    fig.suptitle(f"Hidden-state trajectories (best model per cell; square = first state, labels t:word; "
                 f"{config['scale']} scale)", fontsize=10)
    fig.tight_layout()
    figs["trajectories"] = fig

    fig2, ax2 = style.figure(1, 3, w=4.2, h=3.4)
    ax = ax2[0][0]
    for cell in cells:
        tc = traj[(traj.cell == cell) & (traj.pair == "lone")]
        for nm, ls in (("pos", "-"), ("neg", "--")):
            g = tc[tc.which == nm].sort_values("t")
            sign = 1 if nm == "pos" else -1
            ax.plot(g.t, sign * g.logit_diff, ls, color=style.color(cell), label=f"{cell}, {nm} first")
    ax.axhline(0, color="black", lw=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("sentence length L")
    ax.set_ylabel("margin toward the first word's class")
    ax.set_title("lone first word + stop words:\ncorrect while > 0 (best model)", fontsize=9)
    ax.legend(fontsize=6)
    ax = ax2[0][1]
    rng = np.random.default_rng(0)
    for i, cell in enumerate(cells):
        mh = model_horizons(hor)
        hq = mh[cell].dropna().to_numpy(float) if cell in mh else np.zeros(0)
        if len(hq):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(hq)), np.maximum(hq, 0.5), color=style.color(cell),
                       s=18, alpha=0.8)
            ax.hlines(np.median(hq), i - 0.3, i + 0.3, color="black")
    ax.axhline(config["max_len"], color="grey", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cells)), cells)
    ax.set_ylabel("forgetting horizon (words)")
    ax.set_title(f"horizon per qualifying model (min over its lone words)\n(bar: median; dotted: max_len "
                 f"{config['max_len']})",
                 fontsize=9)
    ax = ax2[0][2]
    for cell in cells:
        d = dist[(dist.cell == cell) & dist.qualifies]
        if d.empty:
            continue
        piv = d.pivot_table(index=["model", "index"], columns="t", values="rel_dist")
        style.curve_band(ax, piv.columns.to_numpy(), piv.to_numpy(), cell, style.color(cell))
    ax.axhline(config["coincide_eps"], color="grey", ls=":", lw=0.8, label="eps")
    ax.axvline(PREFIX + 0.5, color="black", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("word t")
    ax.set_ylabel("relative state distance")
    ax.set_title("stop-prefix pairs: distance after t words\n(median, IQR over models x pairs)", fontsize=9)
    ax.legend(fontsize=7)
    fig2.tight_layout()
    figs["horizon"] = fig2
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
