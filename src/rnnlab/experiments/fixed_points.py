"""Fixed and slow points of trained Count models (beyond the papers; Sussillo & Barak 2013).

Mehta's state-trajectories figure (M IV.B, Fig. 2) shows that a trained 2-unit GRU keeps the
class of a lone sentiment word for thousands of stop words while a trained 2-unit vanilla RNN
forgets it after about 15. This experiment asks *why*, in dynamical terms: under a constant
stop-word input (the input the state evolves under most of the time in Count), where are the
fixed points of the trained map h -> F(h, x), and which of them attract?

Per cell, a small population of (input 4, hidden 2) models is trained on Count; for EVERY model
and every input word, q(h) = 0.5 |F(h, x) - h|^2 is minimised from many starts (visited states
of validation sequences plus noise) in one compiled call (:mod:`rnnlab.analysis.fixed_points`);
fixed points (q < fixed_tol) and slow points (q < slow_tol) are deduplicated and classified by
the eigenvalues of dF/dh. Each point is also given the class the readout assigns to it.

A model can only hold the Count answer through a long run of stop words if the stop-word map
has an attracting set on EACH side of the readout boundary: with a single attractor every
state eventually ends in one class. Hence the claim statistic (per model):
``memory classes`` = number of readout classes (0, 1 or 2) among the non-repelling points
(stable or marginal: max |eigenvalue| <= 1 + margin) under the claim word - fixed points AND slow
points by default (``memory_points``): a GRU that keeps both classes along a line attractor of
slow points has no second exact fixed point, and counting exact points alone called it one class.
The claim (a declaration) is the difference of the shares of models with two classes, Newcombe
interval; the agreement of the class count with the probes' behaviour is in the details.
"""
from __future__ import annotations

import dataclasses
import zlib
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._jaxcfg import jit
from ..analysis import stats
from ..analysis.claims import Claim, Declaration, threshold_claim
from ..analysis.fixed_points import find_fixed_points_batch, sample_starts
from ..engine import model as mdl
from ..errors import ConfigError
from ..plots import style
from ..tasks.sentiment import NEG, POS, STOP
from . import base
from .common import train_population

NAME = "fixed-points"
PAPER = "beyond"
ORDER = 2
SOURCE = "Sussillo & Barak 2013 (fixed/slow points), on Mehta IV.B's Count models"
QUESTION = ("Under a constant stop-word input, does a trained GRU have attracting fixed points on "
            "both sides of its readout boundary (a memory of the class) while a trained vanilla RNN "
            "has attractors of one class only (it forgets)?")
VERSION = 1
ROUNDS = {"units": "inits", "offset": "init_offset"}

CHOICES = {
    "setting": "Count, input 4, hidden 2 (M IV.B's models: a 2-D state that can be plotted)",
    "inits": "4 models per cell at quick scale (10 at paper scale); figures show the best model "
             "(highest validation accuracy), claims use every model reaching acc_min",
    "lr": "Mehta's protocol at every scale (Adam lr 1e-3, lr halving, patience 4, up to 150 epochs, 8000 "
          "train / 2000 validation sequences). An earlier quick scale trained lr 1e-2 for 15 epochs on 1000 "
          "sequences (a truncated protocol); the full one costs about the same here (~9 s on one core: "
          "the models stop after 5-30 epochs)",
    "input_words": "token ids as strings or 'zero'; default: stop word 0 (the claim word), "
                   "positive word 6, negative word 8",
    "starts": "n_starts per (model, word): visited states of 100 validation sequences plus N(0, 0.05^2) noise",
    "optimiser": "opt_steps of Adam (lr 1e-2) on q, then 10 damped Newton steps; float64",
    "tolerances": "fixed: q < 1e-12 (|F(h)-h| < 1.4e-6); slow: q < 1e-6; duplicates: distance < 0.01; "
                  "stable: max|eig| < 1 - 1e-3, marginal: within 1e-3 of 1, unstable otherwise",
    "acc_min": "validation accuracy for a model to enter the memory claim: 0.98 (M IV.B's threshold)",
    "probes": "a lone positive (6) / negative (8) word followed by stop word 0, probe_length steps "
              "(60 at quick scale, 2000 as in M IV.B at paper scale)",
    "contrast": "the memory claim compares gru (gated) with rnn-tanh (vanilla); the claim word is "
                "input_words[0]",
    "memory_points": "'fixed+slow' (default): the classes of non-repelling fixed AND slow points count (a line "
                     "attractor of slow points holds both classes); 'fixed': exact fixed points only (the former "
                     "statistic); the probe check in the claim's details validates the count",
    "min_effect": "'more often': the shares of two-class models differ by >= 0.5",
}


def default_config(scale: str) -> dict:
    cfg = {
        "seed": 0, "cells": ["rnn-tanh", "gru"], "task": "count", "input": 4, "hidden": 2,
        "init": "torch", "inits": 4, "lr": 0.001, "max_epochs": 150,
        "data_sizes": {"train": 8000, "val": 2000},
        "input_words": ["0", "6", "8"], "n_starts": 128, "start_noise": 0.05, "opt_steps": 200,
        "opt_lr": 0.01, "newton_steps": 10, "fixed_tol": 1e-12, "slow_tol": 1e-6, "dedupe_eps": 0.01,
        "stability_margin": 1e-3, "region_margin": 0.05, "n_trajectories": 8, "probe_length": 60, "acc_min": 0.98,
        "contrast": ["gru", "rnn-tanh"], "memory_points": "fixed+slow",
    }
    if scale == "paper":
        cfg.update(inits=10, n_starts=1024, opt_steps=1000, probe_length=2000)
    elif scale == "tiny":
        cfg.update(cells=["rnn-tanh"], inits=2, lr=0.01, max_epochs=2, acc_min=0.9, data_sizes={"train": 300, "val": 200},
                   n_starts=32, opt_steps=60, n_trajectories=3, probe_length=20, input_words=["0", "zero"])
    return cfg


def validate(cfg: dict) -> None:
    for k in ("input", "hidden", "inits", "max_epochs", "n_starts", "opt_steps", "n_trajectories",
              "probe_length"):
        mdl.check_size(k, cfg[k])
    if cfg["task"] not in ("count", "first", "xor"):
        raise ConfigError(f"task: fixed-points needs a sentiment task (count, first, xor), got {cfg['task']!r}")
    if not cfg["input_words"]:
        raise ConfigError("input_words: need at least one word")
    for w in cfg["input_words"]:
        _word_token(w)
    if len(cfg["contrast"]) != 2:
        raise ConfigError(f"contrast: two cells (gated, vanilla) expected, got {cfg['contrast']!r}")


def _word_token(word) -> int | None:
    """'zero' -> None (zero input vector), '0'..'9' -> token id."""
    w = str(word).strip()
    if w == "zero":
        return None
    if w.isdigit() and 0 <= int(w) < 10:
        return int(w)
    raise ConfigError(f"input_words: each word is a token id 0-9 or 'zero', got {word!r}")


def _word_name(word) -> str:
    tok = _word_token(word)
    if tok is None:
        return "zero"
    kind = "stop" if tok in STOP else "pos" if tok in POS else "neg"
    return f"{tok} ({kind})"


def _seeds(cfg, cell: str) -> list[int]:
    """Model seeds: depend on (seed, cell name, init index) only, not on the other cells."""
    base_seed = int(cfg["seed"]) * 1_000_000 + (zlib.crc32(cell.encode()) % 1000) * 1000
    off = int(cfg.get("init_offset", 0))
    return [base_seed + i for i in range(off, off + int(cfg["inits"]))]


# ----------------------------------------------------------------------------- shard


@partial(jit, static_argnames=("spec", "hmax"))
def _states_all(spec, hmax, params, tokens, lengths):
    """States [M, N, T, state] and readout logits [M, N, T, out] for every model."""
    def one_model(p):
        def one_seq(tok, ln):
            out, st = mdl.forward(spec, p, tok, ln, hmax)
            return st, out
        return jax.vmap(one_seq)(tokens, lengths)
    return jax.vmap(one_model)(params)


def analyse_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Train one cell's population on the task, then find the fixed/slow points of every model
    under every input word and record state trajectories. Tables: models, curves, points,
    trajectories."""
    res, data = train_population(shard)
    pop = res.population
    spec = dataclasses.replace(pop.spec, dtype="float64")    # the analysis runs in float64
    cell, hidden = shard["cell"], int(shard["sizes"][0][1])
    m = pop.size
    own = [pop.model_params(i, res.best_params) for i in range(m)]       # numpy, own sizes
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *own)
    params64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), stacked)
    summary = res.summary.assign(cell=cell)
    best = int(summary["best_val_acc"].to_numpy().argmax())
    summary["best"] = summary["model"] == best
    summary["readout_w"] = [own[i]["out"]["W"].ravel().tolist() for i in range(m)]   # [out, hidden] row-major
    summary["readout_b"] = [own[i]["out"]["b"].tolist() if "b" in own[i]["out"]
                            else [0.0] * own[i]["out"]["W"].shape[0] for i in range(m)]

    # sequences: validation sequences (the first n_trajectories are plotted) and two probes (one
    # sentiment word, then stop words), all run in one call
    words = list(shard["input_words"])
    n_tr, plen = int(shard["n_trajectories"]), int(shard["probe_length"])
    val = data["val"].subset(np.arange(min(max(100, n_tr), len(data["val"]))))
    stop = STOP[0]
    tlen = max(plen, val.tokens.shape[1])
    toks = np.full((len(val) + 2, tlen), stop, np.int32)
    toks[:len(val), :val.tokens.shape[1]] = val.tokens
    toks[len(val), 0], toks[len(val) + 1, 0] = POS[0], NEG[0]
    lens = np.concatenate([val.lengths, [plen, plen]]).astype(np.int32)
    st, out = _states_all(spec, hidden, params64, jnp.asarray(toks), jnp.asarray(lens))
    st, pred = np.asarray(st), np.asarray(out).argmax(-1)                # [M, N, T, state], [M, N, T]
    valid = np.arange(tlen)[None, :] < lens[:, None]
    visited = [st[i][valid] for i in range(m)]                          # [K, state] per model
    on_task = [st[i, :len(val)][valid[:len(val)]] for i in range(m)]   # without the probes

    # one problem per (model, word); starts: states visited on validation sequences + noise; the
    # region a point must lie in: the bounding box of every visited state (probes included) and of
    # the states reached by iterating the map under the word itself, widened by region_margin
    rng = np.random.default_rng([int(shard["analysis_seed"]), 17])
    emb = np.asarray(stacked["emb"], np.float64)                        # [M, vocab, in]
    xs, prob_model, prob_word, starts = [], [], [], []
    for i in range(m):
        for w in words:
            tok = _word_token(w)
            xs.append(np.zeros(emb.shape[-1]) if tok is None else emb[i, tok])
            prob_model.append(i)
            prob_word.append(str(w))
            starts.append(sample_starts(on_task[i], shard["n_starts"], shard["start_noise"], rng))
    prob_model, xs, starts = np.asarray(prob_model), np.stack(xs), np.stack(starts)
    cell_p = jax.tree_util.tree_map(lambda a: a[prob_model], params64["cell"])
    pts = find_fixed_points_batch(
        cell, cell_p, xs, starts, steps=shard["opt_steps"], lr=shard["opt_lr"],
        newton_steps=shard["newton_steps"], tol=shard["fixed_tol"], slow_tol=shard["slow_tol"],
        eps=shard["dedupe_eps"], margin=shard["stability_margin"],
        region=np.stack([visited[i] for i in prob_model]), region_margin=shard["region_margin"],
        iterate_steps=plen, n_iterate=16)
    pts.insert(0, "cell", cell)
    pts.insert(1, "model", prob_model[pts["problem"].to_numpy(int)] if len(pts) else [])
    pts.insert(2, "input_word", [prob_word[b] for b in pts["problem"].to_numpy(int)])
    pts = pts.drop(columns=["problem"])
    state = np.asarray(pts["state"].tolist(), float).reshape(len(pts), -1)
    h = state[:, :hidden] if len(pts) else np.zeros((0, hidden))
    pts["h1"] = h[:, 0] if len(pts) else []
    pts["h2"] = h[:, 1] if (len(pts) and hidden > 1) else 0.0
    if len(pts):
        b_out = np.stack([np.asarray(summary["readout_b"][i]) for i in pts["model"]])
        w_out = np.stack([np.asarray(summary["readout_w"][i]) for i in pts["model"]]).reshape(
            len(pts), b_out.shape[1], hidden)
        logits = np.einsum("koh,kh->ko", w_out, h) + b_out
        pts["readout_class"] = logits.argmax(axis=1)
    else:
        pts["readout_class"] = []

    # trajectories to plot: the first n_trajectories validation sequences and the two probes
    labels = np.concatenate([val.labels, [1, 0]])
    kinds = ["task"] * len(val) + ["probe-pos", "probe-neg"]
    shown = list(range(min(n_tr, len(val)))) + [len(val), len(val) + 1]
    rows = []
    for i in range(m):
        for s in shown:
            for t in range(int(lens[s])):
                rows.append((cell, i, s, kinds[s], int(labels[s]), t, int(toks[s, t]),
                             float(st[i, s, t, 0]), float(st[i, s, t, 1]) if hidden > 1 else 0.0,
                             int(pred[i, s, t])))
    traj = pd.DataFrame(rows, columns=["cell", "model", "seq", "seq_kind", "label", "t", "token",
                                       "h1", "h2", "pred"])
    return {"models": summary, "curves": res.curves.assign(cell=cell), "points": pts,
            "trajectories": traj}


def _shards(cfg: dict) -> list[dict]:
    out = []
    for cell in cfg["cells"]:
        out.append({
            "task": cfg["task"], "task_seed": int(cfg["seed"]), "cell": cell, "init": cfg["init"],
            "sizes": [[int(cfg["input"]), int(cfg["hidden"])]] * int(cfg["inits"]),
            "seeds": _seeds(cfg, cell), "protocol": "mehta", "protocol_overrides": {"lr": float(cfg["lr"])},
            "max_epochs": int(cfg["max_epochs"]), "data_sizes": dict(cfg["data_sizes"]),
            "analysis_seed": int(cfg["seed"]),
            **{k: cfg[k] for k in ("input_words", "n_starts", "start_noise", "opt_steps", "opt_lr",
                                   "newton_steps", "fixed_tol", "slow_tol", "dedupe_eps",
                                   "stability_margin", "region_margin", "n_trajectories", "probe_length")},
        })
    return out


def execute(ctx) -> dict[str, pd.DataFrame]:
    outs = ctx.map(analyse_shard, _shards(ctx.config), desc="fixed-points")
    return {t: pd.concat([o[t] for o in outs], ignore_index=True)
            for t in ("models", "curves", "points", "trajectories")}


# ----------------------------------------------------------------------------- claims


def memory_classes(points: pd.DataFrame, word: str, kinds: tuple = ("fixed", "slow")) -> pd.DataFrame:
    """Per (cell, model): number of readout classes among the non-repelling (stable or marginal)
    points of `kinds` under `word`."""
    p = points[(points["input_word"].astype(str) == str(word)) & points["kind"].isin(kinds)
               & (points["stability"] != "unstable")]
    return (p.groupby(["cell", "model"])["readout_class"].nunique().rename("memory_classes").reset_index())


def _per_model_classes(tables, cfg) -> pd.DataFrame:
    word = str(cfg["input_words"][0])
    models = tables["models"][["cell", "model", "best_val_acc", "best"]]
    mc = memory_classes(tables["points"], word, ("fixed",) if cfg.get("memory_points") == "fixed" else ("fixed", "slow"))
    out = models.merge(mc, on=["cell", "model"], how="left")
    out["memory_classes"] = out["memory_classes"].fillna(0).astype(int)
    return out


def _probe_memory(traj: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per (cell, model): whether both probes are still classified right at their last step, and
    the first step where a probe is misclassified (-1: never)."""
    if traj is None or traj.empty:
        return None
    pr = traj[traj["seq_kind"].astype(str).str.startswith("probe")]
    rows = []
    for (c, m), g in pr.groupby(["cell", "model"]):
        kept, first = True, -1
        for _, s in g.groupby("seq"):
            s = s.sort_values("t")
            kept &= bool(s["pred"].iloc[-1] == s["label"].iloc[0])
            wrong = s.loc[s["pred"] != s["label"].iloc[0], "t"]
            if len(wrong):
                first = int(wrong.min()) if first < 0 else min(first, int(wrong.min()))
        rows.append((c, int(m), kept, first))
    return pd.DataFrame(rows, columns=["cell", "model", "probe_kept", "probe_first_wrong"])


def claims(tables: dict, cfg: dict) -> list[Claim]:
    out = [_sanity_claim(tables, cfg)]
    out.append(_memory_claim(tables, cfg))
    return out


def _sanity_claim(tables, cfg) -> Claim:
    pts = tables["points"]
    tol_speed = float(np.sqrt(2.0 * cfg["fixed_tol"]))
    fixed = pts[pts["kind"] == "fixed"]
    bad_residual = int((~(fixed["residual"].astype(float) < tol_speed)).sum())
    expected = {(c, int(i), str(w)) for c, i in zip(tables["models"]["cell"], tables["models"]["model"])
                for w in cfg["input_words"]}
    found = set(zip(fixed["cell"], fixed["model"].astype(int), fixed["input_word"].astype(str)))
    missing = sorted(expected - found)
    violations = bad_residual + len(missing)
    return threshold_claim(
        "fixed-points-are-fixed",
        "Sanity: every reported fixed point satisfies |F(h, x) - h| < sqrt(2 fixed_tol) when F is "
        "re-evaluated independently, and every (model, input word) has at least one fixed point "
        "(one exists by Brouwer's theorem: each cell maps a bounded box into itself).",
        "violations = #fixed points with residual >= tol + #(model, word) without a fixed point",
        float(violations), None, 0.5, "<",
        {"tol_speed": tol_speed, "n_fixed_points": int(len(fixed)),
         "max_residual": float(fixed["residual"].max()) if len(fixed) else None,
         "bad_residual": bad_residual, "missing": [list(map(str, x)) for x in missing[:20]],
         "n_slow_points": int((pts["kind"] == "slow").sum())})


MEMORY = Declaration(
    "two-attractor-classes",
    "Under the constant input word {word}, trained {gated} models have non-repelling {points} points of BOTH "
    "readout classes (one attractor per class, or a line attractor across the boundary: the class survives any run "
    "of that word) far more often than trained {vanilla} models, whose attractors would lie in one class (so they "
    "forget); over models with val acc >= {acc}.",
    "P(memory_classes = 2 | {gated}) - P(memory_classes = 2 | {vanilla})",
    0.0, ">", 0.5, "difference", planning={"p_base": 0.25}, units="models per cell with val acc >= acc_min",
    paper="(beyond the papers) Mehta IV.B: GRU for the same sentences could surprisingly classify correctly even "
          "till the 2000 time steps", figure="fixed_points")
DECLARATIONS = [MEMORY]


def _memory_claim(tables, cfg) -> Claim:
    word = str(cfg["input_words"][0])
    gated, vanilla = (str(c) for c in cfg["contrast"])
    per = _per_model_classes(tables, cfg)
    details = {"word": word, "contrast": [gated, vanilla], "memory_points": cfg.get("memory_points", "fixed+slow"),
               "per_model": per.assign(best_val_acc=per["best_val_acc"].round(4)).to_dict("records")}
    probes = _probe_memory(tables.get("trajectories"))
    if probes is not None:
        both = per.merge(probes, on=["cell", "model"], how="inner")
        good = both[both["best_val_acc"] >= cfg["acc_min"]]
        details["probe_check"] = {
            "what": f"does the model still classify both probes (a lone pos / neg word followed by stop word "
                    f"{STOP[0]} for probe_length={cfg['probe_length']} steps) correctly at the end? Two memory "
                    "classes predict yes; one class predicts that one probe is eventually lost",
            "agreement": float(((good["memory_classes"] == 2) == good["probe_kept"]).mean()) if len(good) else None,
            "probe_kept": {c: f"{int(g.probe_kept.sum())}/{len(g)}" for c, g in good.groupby("cell")}}
    good = per[per["best_val_acc"] >= cfg["acc_min"]]
    kn = {c: (int((good.loc[good["cell"] == c, "memory_classes"] == 2).sum()), int((good["cell"] == c).sum()))
          for c in (gated, vanilla)}
    details["two_classes"] = {c: f"{k}/{n}" for c, (k, n) in kn.items()}
    est = stats.proportion_difference(*kn[gated], *kn[vanilla], MEMORY.level(cfg))
    if gated not in cfg["cells"] or vanilla not in cfg["cells"]:
        est = stats.undefined(est.method, why=f"needs both {gated} and {vanilla} in cells (config 'contrast')")
    return MEMORY.decide(est, dict(word=_word_name(word), gated=gated, vanilla=vanilla, acc=cfg["acc_min"],
                                   points=details["memory_points"]), details, scale=("inits", cfg["inits"]))


# ----------------------------------------------------------------------------- figures


_MARK = {("fixed", "stable"): dict(marker="o", s=70, facecolor="black", edgecolor="white", zorder=5),
         ("fixed", "marginal"): dict(marker="s", s=50, facecolor="gold", edgecolor="black", zorder=5),
         ("fixed", "unstable"): dict(marker="X", s=70, facecolor="white", edgecolor="black", zorder=5),
         ("slow", "stable"): dict(marker="o", s=18, facecolor="none", edgecolor="gray", zorder=4),
         ("slow", "marginal"): dict(marker="s", s=14, facecolor="none", edgecolor="gray", zorder=4),
         ("slow", "unstable"): dict(marker="x", s=18, color="gray", zorder=4)}
_LABEL = {("fixed", "stable"): "stable fixed point", ("fixed", "marginal"): "marginal fixed point",
          ("fixed", "unstable"): "unstable fixed point", ("slow", "stable"): "slow point (stable)",
          ("slow", "marginal"): "slow point (marginal)", ("slow", "unstable"): "slow point (unstable)"}


def figures(tables: dict, cfg: dict) -> dict:
    models, pts, traj = tables["models"], tables["points"], tables["trajectories"]
    cells = [c for c in cfg["cells"] if (models["cell"] == c).any()]
    words = [str(w) for w in cfg["input_words"]]
    fig, axes = style.figure(len(cells), len(words), w=3.6, h=3.4)
    for r, cell in enumerate(cells):
        mrow = models[(models["cell"] == cell) & models["best"]].iloc[0]
        mi = int(mrow["model"])
        tr = traj[(traj["cell"] == cell) & (traj["model"] == mi)]
        for c, word in enumerate(words):
            ax = axes[r][c]
            for (s, kind), g in tr.groupby(["seq", "seq_kind"]):
                g = g.sort_values("t")
                if kind == "task":
                    col = "#1f77b4" if int(g["label"].iloc[0]) == 1 else "#d62728"
                    ax.plot(g["h1"], g["h2"], "-", color=col, lw=0.7, alpha=0.5)
                    ax.plot(g["h1"].iloc[-1], g["h2"].iloc[-1], ".", color=col, ms=5)
                else:
                    col = "#1f77b4" if kind == "probe-pos" else "#d62728"
                    ax.plot(g["h1"], g["h2"], "--", color=col, lw=1.4,
                            label=f"{'pos' if kind == 'probe-pos' else 'neg'} word then stop word {STOP[0]}")
            p = pts[(pts["cell"] == cell) & (pts["model"] == mi) & (pts["input_word"].astype(str) == word)]
            _boundary(ax, mrow, tr, p)
            for key, g in p.groupby(["kind", "stability"]):
                ax.scatter(g["h1"], g["h2"], label=_LABEL[key], **_MARK[key])
            ax.set_title(f"{cell} (val acc {mrow['best_val_acc']:.3f}), input {_word_name(word)}", fontsize=8)
            ax.set_xlabel("h1")
            ax.set_ylabel("h2")
    labels = {}
    for row in axes:
        for ax in row:
            for h, l in zip(*ax.get_legend_handles_labels()):
                labels.setdefault(l, h)
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=3, fontsize=7,
               bbox_to_anchor=(0.5, -0.02 - 0.02 * len(labels) / 3))
    fig.suptitle("Fixed and slow points of the best trained Count model per cell (constant input word), "
                 "over state trajectories\n(thin: validation sequences, blue = positive, red = negative; "
                 "dashed: one sentiment word then stop words; gray line: readout boundary)", fontsize=9)
    fig.tight_layout()

    # eigenvalues of every fixed point under the claim word, all models
    fig2, ax2 = style.figure(1, 1, w=4.4, h=4.2)
    ax = ax2[0][0]
    th = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(th), np.sin(th), "k-", lw=0.8, label="unit circle")
    p = pts[(pts["input_word"].astype(str) == words[0]) & (pts["kind"] == "fixed")]
    for cell in cells:
        g = p[p["cell"] == cell]
        re = np.concatenate([np.asarray(v, float) for v in g["eig_re"]]) if len(g) else np.zeros(0)
        im = np.concatenate([np.asarray(v, float) for v in g["eig_im"]]) if len(g) else np.zeros(0)
        ax.scatter(re, im, s=16, alpha=0.7, color=style.color(cell), label=f"{cell} ({len(g)} fixed points)")
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.set_title(f"Jacobian eigenvalues at the fixed points (all models),\ninput {_word_name(words[0])}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return {"fixed_points": fig, "eigenvalues": fig2}


def _boundary(ax, mrow, tr, pts):
    """Readout decision boundary (w1 - w0) . h + (b1 - b0) = 0 in the (h1, h2) plane."""
    b = np.asarray(mrow["readout_b"], float)
    w = np.asarray(mrow["readout_w"], float).reshape(len(b), -1)
    if w.shape[1] < 2:
        return
    dw, db = w[1] - w[0], b[1] - b[0]
    xs = np.concatenate([tr["h1"].to_numpy(float), pts["h1"].to_numpy(float)])
    ys = np.concatenate([tr["h2"].to_numpy(float), pts["h2"].to_numpy(float)])
    if not len(xs):
        return
    (xlo, xhi), (ylo, yhi) = (np.nanmin(xs), np.nanmax(xs)), (np.nanmin(ys), np.nanmax(ys))
    pad = 0.08 * max(xhi - xlo, yhi - ylo, 0.2)
    x = np.linspace(xlo - pad, xhi + pad, 50)
    if abs(dw[1]) > 1e-12:
        ax.plot(x, -(dw[0] * x + db) / dw[1], "-", color="gray", lw=1.0)
    elif abs(dw[0]) > 1e-12:
        ax.axvline(-db / dw[0], color="gray", lw=1.0)
    ax.set_xlim(xlo - pad, xhi + pad)
    ax.set_ylim(ylo - pad, yhi + pad)


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
