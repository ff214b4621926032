"""A vanilla RNN on Reber's grammar (Sterin et al. §III, Figs 3-4).

A population of seeds of each cell (paper: one 5-unit ``rnn-sigmoid``) is trained on next-symbol
prediction over 250 Reber strings with the Sterin protocol (squared error, SGD one sequence at a
time). A prediction is *valid* when its argmax is a legal successor in the automaton; the
trainer's accuracy is exactly the valid-prediction rate. For the best model the output layer
(softmax of the linear outputs) and the hidden layer are drawn over the prefixes of a few strings,
each prefix labelled with the automaton state it leads to (Figs 3-4).

Claim (a declaration): a vanilla RNN learns the plain grammar, and not as a rare accident: the
fraction of seeds whose valid-prediction rate on the held-out test strings (best-validation
checkpoint) reaches ``success_acc`` has an exact (Clopper-Pearson) interval above
``min_success_rate``.

The shard function and the helpers below (heatmaps, per-cell sizes) are shared with
``embedded-reber`` and ``gradient-distribution``.
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
from ..cells import init as inits
from ..engine import model as mdl
from ..engine.model import check_size
from ..engine.population import apply_mask
from ..engine.protocols import get as get_protocol
from ..errors import ConfigError
from ..plots import style
from ..tasks.embedded_reber import EMBEDDED_REBER
from ..tasks.reber import ALPHABET, REBER, next_symbol_data
from . import base
from .common import model_spec, params_frame, train_population

NAME = "reber"
PAPER = "sterin"
SOURCE = "Sterin et al., section III, Figs 3-4"
QUESTION = "Can a small vanilla RNN learn to predict the next symbol of Reber's grammar?"
ORDER = 1
VERSION = 1
ROUNDS = {"units": "inits", "offset": "init_offset"}
CHOICES = {
    "seeds": "a population of `inits` seeds per cell is trained (the paper trained one model) and the "
             "claim is a success rate over seeds with an exact 95% interval",
    "success": "a seed succeeds when its valid-prediction rate on the held-out test strings, at the "
               "checkpoint with the best validation valid-prediction rate, is >= success_acc (0.95)",
    "min_success_rate": "the paper trained ONE model and it learned; the claim asks that learning is not a rare "
                        "accident: the success rate over seeds is above 0.1 (one model trained as the paper did "
                        "then succeeds with a real chance); it fails when the rate is shown below 0.1; min effect "
                        "0.2 for the seeds needed",
    "bias": "no cell biases (the paper's equations have none), no readout bias (y = O h)",
    "init": "every weight N(0, 1), as in the paper",
    "data": "250 train strings (paper) + 250 validation + 250 test strings from their own streams",
    "heatmaps": "output heatmaps show the softmax of the linear outputs (the paper's reading); the "
                "model drawn is the best seed (highest validation rate, then lowest seed)",
    "quick": "quick scale: the paper's protocol (SGD lr 1e-3, one string at a time, up to 1000 epochs, "
             "halving and stopping as the authors' code) with 16 seeds (paper scale 20). An earlier quick "
             "scale trained 8 epochs at lr 0.05: 8 of 8 seeds succeeded there, against 2 of 8 (and 28 of 64) "
             "with the paper's protocol",
    "tiny": "tiny scale (tests only): 3 seeds, 60/40/40 strings, 2 epochs",
}

#: strings drawn in the heatmaps (paper Fig 3 shows a few strings of the grammar)
REBER_STRINGS = ["BTSSXXTVVE", "BPVPXVPSE", "BTXSE", "BPTTVVE"]


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-sigmoid"], "hidden": 5, "inits": 20, "init_scheme": "normal",
           "bias": False, "protocol": "sterin", "optimizer": None, "lr": None, "max_epochs": 1000,
           "data_sizes": {"train": 250, "val": 250, "test": 250}, "success_acc": 0.95,
           "min_success_rate": 0.1, "strings": list(REBER_STRINGS), "dtype": "float32"}
    if scale == "quick":
        cfg.update(inits=16)
    elif scale == "tiny":
        cfg.update(inits=3, lr=0.05, max_epochs=2, data_sizes={"train": 60, "val": 40, "test": 40},
                   strings=REBER_STRINGS[:2])
    return cfg


# ----------------------------------------------------------------------------- config helpers


def validate_common(cfg: dict, automaton, field_sizes=("hidden",)) -> None:
    """Checks shared by the three training experiments of Sterin et al."""
    if cfg["init_scheme"] not in inits.SCHEMES:
        raise ConfigError(f"init_scheme: unknown init scheme {cfg['init_scheme']!r}; known: {', '.join(inits.SCHEMES)}")
    check_size("inits", cfg["inits"])
    check_size("max_epochs", cfg["max_epochs"])
    get_protocol(cfg["protocol"])
    if cfg["optimizer"] is not None and cfg["optimizer"] not in ("adam", "sgd"):
        raise ConfigError(f"optimizer: must be adam, sgd or null, got {cfg['optimizer']!r}")
    if cfg["lr"] is not None and (isinstance(cfg["lr"], bool) or not isinstance(cfg["lr"], (int, float))
                                  or not cfg["lr"] > 0):
        raise ConfigError(f"lr: must be a number > 0 or null, got {cfg['lr']!r}")
    if not isinstance(cfg["bias"], bool):
        raise ConfigError(f"bias: must be true or false, got {cfg['bias']!r}")
    if cfg["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"dtype: must be float32 or float64, got {cfg['dtype']!r}")
    sizes = cfg["data_sizes"]
    if set(sizes) != {"train", "val", "test"}:
        raise ConfigError(f"data_sizes: needs exactly train, val and test, got {sorted(sizes)!r}")
    for k, v in sizes.items():
        check_size(f"data_sizes.{k}", v)
    for f in field_sizes:
        h = cfg[f]
        if isinstance(h, dict):
            for c, v in h.items():
                check_size(f"{f}.{c}", v)
        else:
            check_size(f, h)
    for k in ("success_acc", "min_success_rate"):
        if k in cfg and not 0 <= cfg[k] <= 1:
            raise ConfigError(f"{k}: must be in [0, 1], got {cfg[k]!r}")
    strings = cfg["strings"]
    if not strings:
        raise ConfigError("strings: needs at least one string for the heatmaps")
    for s in strings:
        if not isinstance(s, str) or not automaton.accepts(s):
            raise ConfigError(f"strings: {s!r} is not a complete string of the grammar")


def validate(cfg: dict) -> None:
    validate_common(cfg, REBER)


def model_seeds(cfg: dict) -> list[int]:
    off = int(cfg.get("init_offset", 0))
    return [int(cfg["seed"]) * 1000 + i for i in range(off, off + int(cfg["inits"]))]


def hidden_for(cfg: dict, cell: str, task: str) -> int:
    """The hidden size of `cell`: cfg["hidden"] when an int or when it names the cell; otherwise
    the size whose parameter count is closest to cfg["param_budget"]."""
    h = cfg["hidden"]
    if not isinstance(h, dict):
        return int(h)
    if cell in h:
        return int(h[cell])
    budget = cfg.get("param_budget")
    if budget is None:
        raise ConfigError(f"hidden: no size for cell {cell!r} (give hidden.{cell})")
    spec = model_spec(task, cell, cfg["init_scheme"], cfg["dtype"], cfg["bias"])
    return min(range(1, 257), key=lambda k: (abs(spec.n_params(spec.vocab, k) - budget), k))


def training_shard(cfg: dict, cell: str, task: str) -> dict:
    """The shard that trains every seed of one cell (plain dict: cached by the store)."""
    overrides = {}
    if cfg["optimizer"] is not None:
        overrides["optimizer"] = cfg["optimizer"]
    if cfg["lr"] is not None:
        overrides["lr"] = float(cfg["lr"])
    k = hidden_for(cfg, cell, task)
    seeds = model_seeds(cfg)
    return {"task": task, "task_seed": int(cfg["seed"]), "cell": cell, "init": cfg["init_scheme"],
            "bias": bool(cfg["bias"]), "sizes": [[len(ALPHABET), k]] * len(seeds), "seeds": seeds,
            "protocol": cfg["protocol"], "protocol_overrides": overrides,
            "max_epochs": int(cfg["max_epochs"]), "data_sizes": dict(cfg["data_sizes"]),
            "dtype": cfg["dtype"], "strings": list(cfg["strings"])}


# ----------------------------------------------------------------------------- shard


@partial(jit, static_argnames=("spec", "hmax"))
def population_outputs(spec, hmax: int, params, mask, tokens, lengths):
    """(outputs [M, N, T, n_out], hidden [M, N, T, hmax]) of every model on every sequence."""
    def one(p, m):
        pm = apply_mask(p, m)

        def seq(tok, ln):
            out, states = mdl.forward(spec, pm, tok, ln, hmax)
            return out, spec.cell_def.hidden_of(states, hmax)
        return jax.vmap(seq)(tokens, lengths)
    return jax.vmap(one)(params, mask)


def _stack(datas: list) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and lengths of several TaskData padded to one width (one compiled shape)."""
    width = max(d.tokens.shape[1] for d in datas)
    tok = np.concatenate([np.pad(d.tokens, ((0, 0), (0, width - d.tokens.shape[1]))) for d in datas])
    return tok, np.concatenate([d.lengths for d in datas])


def long_term_accuracy(out: np.ndarray, data) -> np.ndarray:
    """Per model: fraction of strings whose prediction after the inner E is the right T/P.
    out: outputs [M, N, T, n_out] of the models on `data`."""
    pos = np.asarray(data.meta["long_term_pos"])
    rows = np.arange(len(pos))
    pred = np.argmax(out[:, rows, pos], axis=-1)                              # [M, N]
    return (pred == data.targets[rows, pos][None]).mean(axis=1)


def heatmap_rows(pop, prob: np.ndarray, hid: np.ndarray, d) -> pd.DataFrame:
    """Long table of the softmax outputs `prob` [M, N, T, 7] and hidden units `hid` [M, N, T, H]
    of every model over every prefix of the strings of `d`."""
    names = d.meta["state_names"]
    frames = []
    for i, s in enumerate(d.meta["strings"]):
        n = int(d.lengths[i])
        for m in range(pop.size):
            k = int(pop.hiddens[m])
            for layer, vals, labels in (("output", prob[m, i, :n], list(ALPHABET)),
                                        ("hidden", hid[m, i, :n, :k], [str(u) for u in range(k)])):
                pos, unit = np.meshgrid(np.arange(n), np.arange(len(labels)), indexing="ij")
                frames.append(pd.DataFrame({
                    "model": m, "seed": int(pop.seeds[m]), "string_id": i, "string": s,
                    "pos": pos.ravel(), "symbol": [s[p] for p in pos.ravel()],
                    "state": [names[int(d.meta["states"][i, p])] for p in pos.ravel()],
                    "layer": layer, "unit": [labels[u] for u in unit.ravel()],
                    "value": vals.ravel()}))
    return pd.concat(frames, ignore_index=True)


def sequence_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Train every seed of one cell on a Reber task; summary (+ long-term accuracy on the
    embedded task), curves, best parameters and heatmap data."""
    res, data = train_population(shard)
    pop, best = res.population, res.best_params
    task = shard["task"]
    automaton = EMBEDDED_REBER if task == "embedded-reber" else REBER
    strings = next_symbol_data(task, list(shard["strings"]), automaton)
    parts = [strings] + ([data["val"], data["test"]] if task == "embedded-reber" else [])
    tok, lens = _stack(parts)      # one forward pass (one compilation) for all probes
    out, hid = population_outputs(pop.spec, pop.hmax, best, pop.mask, jnp.asarray(tok), jnp.asarray(lens))
    out, hid = np.asarray(out, np.float64), np.asarray(hid, np.float64)
    summary = res.summary.assign(cell=shard["cell"], task=task)
    n0 = len(strings)
    if task == "embedded-reber":
        for split, lo in (("val", n0), ("test", n0 + len(data["val"]))):
            d = data[split]
            summary[f"long_term_{split}"] = long_term_accuracy(out[:, lo:lo + len(d)], d)
    prob = np.exp(out[:, :n0] - out[:, :n0].max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    heat = heatmap_rows(pop, prob, hid[:, :n0], strings).assign(cell=shard["cell"])
    return {"summary": summary, "curves": res.curves.assign(cell=shard["cell"]),
            "params": params_frame(pop, best, epoch=-1).assign(cell=shard["cell"]), "heatmap": heat}


# ----------------------------------------------------------------------------- experiment


def execute(ctx: base.Context) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    shards = [training_shard(cfg, c, "reber") for c in cfg["cells"]]
    outs = ctx.map(sequence_shard, shards, desc="reber")
    tables = {t: pd.concat([o[t] for o in outs], ignore_index=True)
              for t in ("summary", "curves", "heatmap")}
    tables["summary"]["success"] = tables["summary"]["test_acc"] >= cfg["success_acc"]
    tables["success"] = success_table(tables["summary"], "success", cfg["cells"])
    return tables


def success_table(summary: pd.DataFrame, column: str, cells: list[str]) -> pd.DataFrame:
    rows = []
    for c in cells:
        s = summary[summary.cell == c][column].astype(bool)
        e = stats.proportion(int(s.sum()), len(s))
        rows.append({"cell": c, "n": len(s), "successes": int(s.sum()), "rate": e.value,
                     "lo": e.interval[0] if e.defined else np.nan, "hi": e.interval[1] if e.defined else np.nan})
    return pd.DataFrame(rows)


def best_model(summary: pd.DataFrame, cell: str, by: tuple[str, ...] = ("best_val_acc",)) -> int:
    """The model index drawn in the heatmaps: highest `by` scores, then lowest seed."""
    s = summary[summary.cell == cell].sort_values(list(by) + ["seed"],
                                                  ascending=[False] * len(by) + [True])
    return int(s.iloc[0]["model"])


LEARNED = Declaration(
    "reber-learned[{cell}]",
    "a {cell} with {hidden} units learns the plain Reber grammar, not as a rare accident: more than {rate:.0%} of "
    "seeds reach a valid-prediction rate >= {acc:.2f}",
    "fraction of seeds with test valid-prediction rate >= {acc:.2f}",
    0.1, ">", 0.2, "proportion", effect=False, units="seeds",
    paper="Here, a Vanilla RNN successfully infers some of the automaton's states (e.g., q2 and q5).",
    figure="valid_rate")
DECLARATIONS = [LEARNED]


def claims(tables: dict, cfg: dict) -> list[Claim]:
    out = []
    summ = tables["summary"]
    decl = replace(LEARNED, threshold=float(cfg["min_success_rate"]))
    for c in cfg["cells"]:
        s = summ[summ.cell == c]
        ok = (s["test_acc"] >= cfg["success_acc"]).to_numpy()
        out.append(decl.decide(
            stats.proportion(int(ok.sum()), len(ok), decl.level(cfg)),
            dict(cell=c, hidden=int(s["hidden"].iloc[0]) if len(s) else "?", rate=decl.threshold,
                 acc=cfg["success_acc"]),
            {"cell": c, "seeds": int(len(ok)), "successes": int(ok.sum()),
             "median_valid_rate": float(np.median(s["test_acc"])) if len(s) else None,
             "protocol": cfg["protocol"], "lr": cfg["lr"], "max_epochs": cfg["max_epochs"]},
            scale=("inits", cfg["inits"])))
    return out


# ----------------------------------------------------------------------------- figures


def _short_state(name: str) -> str:
    return {"start": "st", "done": "dn"}.get(name, name)


def heatmap_figure(heat: pd.DataFrame, layer: str, title: str):
    """One panel per string: rows = output symbols or hidden units, columns = prefixes
    (input symbol over the automaton state it leads to)."""
    ids = sorted(heat.string_id.unique())
    widths = [heat[heat.string_id == i].pos.max() + 1 for i in ids]
    n_units = heat.unit.nunique()
    fig, axes = style.figure(len(ids), 1, w=max(4.5, 0.45 * max(widths) + 2.0), h=0.3 * n_units + 1.4)
    # room for the two-line tick labels and the next panel's title (no constrained layout: slow)
    fig_h = len(ids) * (0.3 * n_units + 1.4)
    fig.subplots_adjust(hspace=0.9 / (0.3 * n_units + 0.5), right=0.85, top=1 - 0.95 / fig_h)
    # outputs: 0 .. the largest probability shown (softmax of squared-error outputs is flat)
    vmin, vmax = (0.0, float(heat.value.max())) if layer == "output" else (float(heat.value.min()),
                                                                        float(heat.value.max()))
    cmap = "viridis" if layer == "output" else "coolwarm" if vmin < 0 else "magma"
    if cmap == "coolwarm":                   # tanh-like states: symmetric around 0
        vmax = max(abs(vmin), abs(vmax))
        vmin = -vmax
    im = None
    for ax, i in zip(axes[:, 0], ids):
        h = heat[heat.string_id == i]
        units = list(dict.fromkeys(h.unit))
        grid = h.pivot_table(index="unit", columns="pos", values="value", sort=False).reindex(units)
        cols = h.drop_duplicates("pos").sort_values("pos")
        vals = grid.to_numpy()
        im = ax.imshow(vals, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
        if layer == "output":
            for (r, c), v in np.ndenumerate(vals):
                ax.text(c, r, f"{v:.2f}".lstrip("0"), ha="center", va="center", fontsize=5.5,
                        color="black" if v > vmin + 0.6 * (vmax - vmin) else "white")
        ax.set_xticks(range(len(cols)), [f"{a}\n{_short_state(b)}" for a, b in zip(cols.symbol, cols.state)],
                      fontsize=7)
        ax.set_yticks(range(len(units)), units, fontsize=7)
        ax.set_ylabel("next symbol" if layer == "output" else "hidden unit", fontsize=8)
        ax.set_title(f"'{h.string.iloc[0]}'", fontsize=8)
    axes[-1, 0].set_xlabel("input symbol / automaton state after the prefix", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.colorbar(im, ax=axes[:, 0].tolist(), shrink=0.8, fraction=0.05, pad=0.03,
                 label="softmax probability" if layer == "output" else "activation")
    return fig


def rates_figure(summary: pd.DataFrame, success: pd.DataFrame, column: str, threshold: float,
                 ylabel: str, title: str):
    fig, axes = style.figure(1, 1, w=max(3.5, 1.6 * len(success) + 1.5), h=3.4)
    ax = axes[0, 0]
    rng = np.random.default_rng(0)
    for j, r in enumerate(success.itertuples()):
        v = summary[summary.cell == r.cell][column].to_numpy()
        ax.scatter(j + rng.uniform(-0.15, 0.15, len(v)), v, s=14, color=style.color(r.cell), alpha=0.7,
                   label=f"{r.cell}: {r.successes}/{r.n} succeed [{r.lo:.2f}, {r.hi:.2f}]")
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xticks(range(len(success)), list(success.cell))
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return fig


def figures(tables: dict, cfg: dict) -> dict:
    figs = {}
    summ, heat = tables["summary"], tables["heatmap"]
    for c in cfg["cells"]:
        m = best_model(summ, c)
        h = heat[(heat.cell == c) & (heat.model == m)]
        if h.empty:
            continue
        row = summ[(summ.cell == c) & (summ.model == m)].iloc[0]
        tag = f"{c}, k={int(row.hidden)}, seed {int(row.seed)}, test valid rate {row.test_acc:.3f}"
        figs[f"outputs_{c}"] = heatmap_figure(h[h.layer == "output"], "output",
                                              f"Output layer (softmax) on Reber strings: {tag}")
        figs[f"hidden_{c}"] = heatmap_figure(h[h.layer == "hidden"], "hidden",
                                             f"Hidden layer on Reber strings: {tag}")
    figs["valid_rate"] = rates_figure(summ, tables["success"], "test_acc", cfg["success_acc"],
                                      "test valid-prediction rate",
                                      "Reber grammar: valid-prediction rate per seed")
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
