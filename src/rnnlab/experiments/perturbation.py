"""Perturb a trained model and retrain it (Mehta VI.C, Fig 10).

Several inits of each cell are trained on First at 2x4; the best one (the paper: trained to >=
98% validation accuracy) gives W*. Every tensor of W* is flattened and perturbed,
W = W* + k * N(0, sigma), sigma the standard deviation of that flattened tensor, for several
factors k and noise seeds; all perturbed copies of a cell are retrained together (one
population) for a fixed number of epochs with the M protocol without early stopping, recording
per epoch the validation accuracy and loss and the distance ||W* - W_epoch|| over the whole
flattened parameter vector.

Base inits are drawn in batches of ``base_inits`` (new seeds, new shards) until every cell's
best model reaches ``qualify_acc`` or ``max_base_inits`` are spent.

Claims (declarations; t intervals over noise seeds, simultaneous over k - no bootstrap of a min):
  * the gated cell recovers higher accuracy than the baseline at every k: min over k of the
    difference of mean final validation accuracy (Welch per k, Bonferroni over k), min effect
    0.05 - judged only when both base models reached ``qualify_acc`` (else the gap may just be
    the gap between the base models: no estimate, inconclusive, said so);
  * retraining does not return to W*: min over (cell, k) of the mean ratio ||W* - W_final|| /
    ||W* - W_pert|| (t intervals, Bonferroni) is above ``dist_ratio``.
"""
from __future__ import annotations

import zlib
from dataclasses import replace

import jax
import numpy as np
import pandas as pd
from matplotlib import colormaps

from ..analysis import stats
from ..analysis.claims import Declaration
from ..cells.init import check_scheme
from ..engine.model import check_size
from ..engine.population import evaluate, population_from_params
from ..engine.train import device_data, train
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import (
    cells_list,
    check_classify_task,
    model_spec,
    protocol_from,
    task_data,
    train_population,
)
from .update_cosine import flat_snapshots

NAME = "perturbation"
PAPER = "mehta"
SOURCE = "Mehta, section VI.C, Fig 10"
QUESTION = ("After a trained model's parameters are perturbed by noise of growing size, how well do vanilla "
            "RNN and GRU recover when retrained, and do they return to the same parameters?")
ORDER = 7
VERSION = 1
ROUNDS = {"units": "reps", "offset": "rep_offset"}
CHOICES = {
    "base": "`base_inits` inits of each cell are trained with the M protocol, in batches of new seeds until the "
            "best reaches `qualify_acc` (0.98, the paper's) or `max_base_inits` are spent; the best model is W* (its "
            "best checkpoint). When none qualifies the best is used anyway and the base table says qualified = False",
    "noise": "per tensor: noise = k * sigma * N(0, 1), sigma the standard deviation of that flattened tensor "
             "(noise_scope 'tensor'; 'all' uses the std of the whole flattened parameter vector)",
    "ks": "perturbation factors k = 0.1, 0.5, 1, 2 with `reps` noise seeds each (the paper shows one run per k)",
    "retrain": "the M protocol without early stopping (patience off, no lr floor) for a fixed `retrain_epochs` "
               "epochs (the paper's 30); lr still halves when validation accuracy drops",
    "loss": "`loss` is the validation loss (defined at epoch 0, before retraining); the epoch's mean training "
            "loss is `train_loss`",
    "distance": "||W* - W_epoch|| over all parameters (embedding, cell, readout) flattened into one vector",
    "dist_ratio": "'does not return to W*' = final distance > 0.5 x the distance right after perturbation",
    "recovery_claim": "judged only when both base models reached qualify_acc; otherwise inconclusive; 'recovers "
                      "higher accuracy': min effect 5 accuracy points at every k",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "batch_size": "32 (the paper does not give it)",
    "population_sizes": "base_inits = len(ks) x reps by default, so that the base and the retraining "
                        "populations share one compiled epoch",
    "quick": "quick scale: 12 base inits per batch (at most 36), 12 noise seeds per k (paper scale 20 / 100 / 5), "
             "trained and retrained with the paper's protocol (8000/2000/3000 sequences, Adam 1e-3, <= 150 "
             "epochs, 30 retraining epochs)",
    "tiny": "tiny scale (tests only): 8 base inits x 2 epochs, 2 retraining epochs, 2 seeds, 300/200/200 "
            "sequences",
}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "task": "first", "size": [2, 4], "base_inits": 20,
           "base_epochs": 150, "qualify_acc": 0.98, "ks": [0.1, 0.5, 1.0, 2.0], "reps": 5,
           "retrain_epochs": 30, "noise_scope": "tensor", "init_scheme": "torch", "lr": 1e-3,
           "data_sizes": {"train": 8000, "val": 2000, "test": 3000}, "dist_ratio": 0.5, "max_base_inits": 100}
    if scale == "quick":
        cfg.update(base_inits=12, reps=12, max_base_inits=36)
    elif scale == "tiny":
        cfg.update(base_inits=8, base_epochs=2, retrain_epochs=2, reps=2, lr=0.01,
                   data_sizes={"train": 300, "val": 200, "test": 200}, max_base_inits=8)
    return cfg


def validate(cfg: dict) -> None:
    check_classify_task("task", cfg["task"])
    if len(cfg["size"]) != 2:
        raise ConfigError(f"size: expected [input, hidden], got {cfg['size']!r}")
    cfg["size"] = [check_size("size", v) for v in cfg["size"]]
    for k in ("base_inits", "base_epochs", "reps", "retrain_epochs", "max_base_inits"):
        check_size(k, cfg[k])
    if not cfg["ks"]:
        raise ConfigError("ks: at least one perturbation factor is needed")
    try:
        ks = [float(k) for k in cfg["ks"]]
    except (TypeError, ValueError):
        raise ConfigError(f"ks: perturbation factors must be numbers, got {cfg['ks']!r}") from None
    if any(not (k > 0) for k in ks) or len(set(ks)) != len(ks):
        raise ConfigError(f"ks: perturbation factors must be distinct and > 0, got {cfg['ks']!r}")
    cfg["ks"] = ks
    if cfg["noise_scope"] not in ("tensor", "all"):
        raise ConfigError(f"noise_scope: must be 'tensor' or 'all', got {cfg['noise_scope']!r}")
    for k in ("qualify_acc", "dist_ratio"):
        if not (0 <= cfg[k] <= 1):
            raise ConfigError(f"{k}: must be in [0, 1], got {cfg[k]!r}")
    if not cfg["lr"] > 0:
        raise ConfigError(f"lr: must be > 0, got {cfg['lr']!r}")
    check_scheme(cfg["init_scheme"])
    for k, v in cfg["data_sizes"].items():
        if k not in ("train", "val", "test"):
            raise ConfigError(f"data_sizes: unknown split {k!r}; known: train, val, test")
        check_size(f"data_sizes[{k!r}]", v)
    for k in ("train", "val"):
        if k not in cfg["data_sizes"]:
            raise ConfigError(f"data_sizes: a {k!r} split is needed")


# ----------------------------------------------------------------------------- shards


def _seed(*parts) -> int:
    ss = np.random.SeedSequence([int(p) for p in parts])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


def _k_id(k: float) -> int:
    return int(round(float(k) * 1_000_000))


def base_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Train the base inits of one cell; summary and the best checkpoint of the best model."""
    res, _ = train_population(shard)
    s = res.summary.assign(cell=shard["cell"])
    best = int(s.best_val_acc.to_numpy().argmax())
    tree = res.population.model_params(best, res.best_params)
    rows = [("/".join(str(getattr(k, "key", k)) for k in path), list(np.shape(leaf)),
             np.asarray(leaf, np.float64).ravel().tolist())
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
    params = pd.DataFrame(rows, columns=["tensor", "shape", "values"]).assign(cell=shard["cell"], model=best)
    return {"summary": s, "params": params}


def _tree_from_rows(params: pd.DataFrame) -> dict:
    tree: dict = {}
    for _, r in params.iterrows():
        node = tree
        parts = r.tensor.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = np.asarray(r["values"], np.float64).reshape([int(s) for s in r["shape"]])
    return tree


def perturb(tree: dict, k: float, rng: np.random.Generator, scope: str = "tensor") -> dict:
    """W* + k * N(0, sigma) per tensor; sigma = std of the flattened tensor (scope 'tensor') or of the
    whole flattened parameter vector (scope 'all')."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [np.asarray(x, np.float64) for x in leaves]
    if scope == "all":
        sig_all = float(np.concatenate([x.ravel() for x in leaves]).std())
    out = [x + k * (float(x.std()) if scope == "tensor" else sig_all) * rng.standard_normal(x.shape)
           for x in leaves]
    return jax.tree_util.tree_unflatten(treedef, out)


def retrain_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Perturb W* (shard["base"]) for every (k, rep) and retrain all copies as one population."""
    spec = model_spec(shard["task"], shard["cell"], shard["init"])
    e, h = shard["size"]
    star = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), shard["base"],
                                  is_leaf=lambda x: isinstance(x, list))
    trees, seeds, keys = [], [], []
    for k in shard["ks"]:
        for rep in range(shard.get("rep_offset", 0), shard.get("rep_offset", 0) + shard["reps"]):
            rng = np.random.default_rng([shard["seed"], 7, zlib.crc32(shard["cell"].encode()), _k_id(k), rep])
            trees.append(perturb(star, k, rng, shard["noise_scope"]))
            seeds.append(_seed(shard["seed"], 7, _k_id(k), rep))
            keys.append((k, rep))
    pop = population_from_params(spec, trees, e, h, seeds)
    data = task_data(shard)
    res = train(pop, protocol_from(shard), data, lr=shard["lr"], snapshots=True, progress=False,
                max_epochs=shard["max_epochs"])
    ref = population_from_params(spec, [star], e, h, [0])
    w_star = flat_snapshots([ref.params])[0, 0]
    traj = flat_snapshots(res.snapshots)                        # [epochs + 1, M, P]
    dist = np.linalg.norm(traj - w_star[None, None, :], axis=2)
    cur = res.curves
    rows = []
    for i, (k, rep) in enumerate(keys):
        c = cur[cur.model == i].set_index("epoch")
        for ep in c.index:
            rows.append((k, rep, int(ep), float(c.val_acc[ep]), float(c.val_loss[ep]), float(c.loss[ep]),
                         float(dist[min(ep, len(dist) - 1), i]), float(c.lr[ep])))
    rec = pd.DataFrame(rows, columns=["k", "rep", "epoch", "val_acc", "loss", "train_loss", "dist", "lr"])
    rec.insert(0, "cell", shard["cell"])
    vloss, vacc = evaluate(spec, "xent", ref.hmax, ref.params, ref.mask, device_data(data["val"], spec.jdtype))
    base = pd.DataFrame([{"cell": shard["cell"], "val_acc": float(np.asarray(vacc)[0]),
                          "val_loss": float(np.asarray(vloss)[0]),
                          "norm": float(np.linalg.norm(w_star))}])
    return {"recovery": rec, "base": base}


def base_shards(cells, *, seed: int, task: str, init: str, size, data_sizes: dict, lr: float, inits: int,
                epochs: int, batch: int = 0) -> list[dict]:
    """The base populations (one shard per cell): `inits` models of `size` with seeds
    (seed, 70, i) for i in batch `batch`, trained with the M protocol. random-landscape trains its
    reference populations through these shards too (under this experiment's name in the store), so
    with the same settings - the defaults at quick and paper scale - the two share the models
    and whichever runs second reuses them."""
    seeds = [_seed(seed, 70, i) for i in range(batch * inits, (batch + 1) * inits)]
    return [{"task": task, "task_seed": seed, "init": init, "data_sizes": dict(data_sizes), "lr": lr, "cell": c,
             "sizes": [list(size)] * len(seeds), "seeds": seeds, "protocol": "mehta", "max_epochs": epochs}
            for c in cells]


def execute(ctx) -> dict[str, pd.DataFrame]:
    cfg = ctx.config
    e, h = cfg["size"]
    common = {"task": cfg["task"], "task_seed": cfg["seed"], "init": cfg["init_scheme"],
              "data_sizes": dict(cfg["data_sizes"]), "lr": cfg["lr"]}
    n_batches = max(1, -(-int(cfg["max_base_inits"]) // int(cfg["base_inits"])))
    found: dict = {c: [] for c in cfg["cells"]}
    todo = list(cfg["cells"])
    for b in range(n_batches):      # batch 0 is the plain run's shard; more only while a cell has no W*
        outs = ctx.map(base_shard, base_shards(todo, seed=cfg["seed"], task=cfg["task"], init=cfg["init_scheme"],
                                               size=(e, h), data_sizes=cfg["data_sizes"], lr=cfg["lr"],
                                               inits=cfg["base_inits"], epochs=cfg["base_epochs"], batch=b),
                       desc=f"perturbation base (batch {b + 1})")
        for c, o in zip(todo, outs):
            shift = b * cfg["base_inits"]
            found[c].append({"summary": o["summary"].assign(model=o["summary"].model + shift),
                             "params": o["params"].assign(model=o["params"].model + shift)})
        todo = [c for c in todo if max(float(f["summary"].best_val_acc.max()) for f in found[c]) < cfg["qualify_acc"]]
        if not todo:
            break
    bouts = []
    for c in cfg["cells"]:
        best = max(found[c], key=lambda f: float(f["summary"].best_val_acc.max()))
        bouts.append({"summary": pd.concat([f["summary"] for f in found[c]], ignore_index=True),
                      "params": best["params"]})
    rshards = []
    for c, o in zip(cfg["cells"], bouts):
        tree = _tree_from_rows(o["params"])
        rshards.append({**common, "cell": c, "seed": cfg["seed"], "size": [e, h],
                        "base": jax.tree_util.tree_map(lambda x: np.asarray(x).tolist(), tree),
                        "ks": list(cfg["ks"]), "reps": cfg["reps"], "noise_scope": cfg["noise_scope"],
                        "protocol": "mehta", "protocol_overrides": {"patience": None, "min_lr": 0.0},
                        "max_epochs": cfg["retrain_epochs"],
                        **({"rep_offset": cfg["rep_offset"]} if cfg.get("rep_offset") else {})})
    routs = ctx.map(retrain_shard, rshards, desc="perturbation retrain")
    summary = pd.concat([o["summary"] for o in bouts], ignore_index=True)
    base_rows = []
    for c, o, r in zip(cfg["cells"], bouts, routs):
        s = o["summary"]
        m = int(o["params"].model.iloc[0])
        best = float(s.best_val_acc[s.model == m].iloc[0])
        base_rows.append({"cell": c, "model": m, "seed": int(s.seed[s.model == m].iloc[0]), "input": e, "hidden": h,
                          "best_val_acc": best, "qualified": best >= cfg["qualify_acc"],
                          "n_inits": len(s), "n_qualified": int((s.best_val_acc >= cfg["qualify_acc"]).sum()),
                          "val_acc": float(r["base"].val_acc.iloc[0]), "val_loss": float(r["base"].val_loss.iloc[0]),
                          "norm": float(r["base"].norm.iloc[0])})
    recovery = pd.concat([o["recovery"] for o in routs], ignore_index=True)
    return {"recovery": recovery, "base": pd.DataFrame(base_rows),
            "base_inits": summary[["cell", "model", "seed", "input", "hidden", "best_val_acc", "best_epoch",
                                   "epochs", "status"]]}


# ----------------------------------------------------------------------------- claims


def _finals(rec: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, k, rep): final val acc and distance ratio final / initial."""
    rows = []
    for (cell, k, rep), g in rec.groupby(["cell", "k", "rep"], sort=True):
        g = g.sort_values("epoch")
        d0 = float(g.dist.iloc[0])
        rows.append({"cell": cell, "k": float(k), "rep": int(rep), "final_acc": float(g.val_acc.iloc[-1]),
                     "ratio": float(g.dist.iloc[-1]) / d0 if d0 > 0 else np.nan})
    return pd.DataFrame(rows, columns=["cell", "k", "rep", "final_acc", "ratio"])


RECOVERS = Declaration(
    "recovers-better-{gated}-vs-{vanilla}",
    "Retrained after a perturbation W* + k N(0, sigma), {gated} recovers a higher validation accuracy than "
    "{vanilla} at every k (paper: 'GRU ... more robust to the perturbation').",
    "min over k of (mean final val acc {gated} - {vanilla}) over noise seeds",
    0.0, ">", 0.05, "normal", planning={"sd": 0.05, "m": 4}, units="noise seeds per (cell, k)",
    paper="The results clearly declares GRU as the better performer. ... GRU are more robust to the perturbation.",
    figure="recovery")
NO_RETURN = Declaration(
    "does-not-return-to-W*",
    "Retraining does not bring the parameters back to W*: ||W* - W_epoch|| stays far from 0 (paper: 'the "
    "difference in norm never gets close to zero').",
    "min over (cell, k) of mean ||W* - W_final|| / ||W* - W_perturbed|| over noise seeds",
    0.5, ">", 0.2, "normal", effect=False, planning={"sd": 0.1, "m": 8}, units="noise seeds per (cell, k)",
    paper="the difference in norm never gets close to zero in fact it shows a very little change that what we had "
          "expected", figure="recovery")
DECLARATIONS = [RECOVERS, NO_RETURN]


def claims(tables: dict, config: dict) -> list:
    rec, basetab = tables["recovery"], tables["base"]
    cells = cells_list(config["cells"])
    vanilla = cells[0]
    fin = _finals(rec)
    ks = sorted(float(k) for k in config["ks"])
    qual = {r.cell: bool(r.qualified) for r in basetab.itertuples()}
    base_acc = {r.cell: float(r.best_val_acc) for r in basetab.itertuples()}
    scale = ("reps", config["reps"])
    out = []
    for gated in cells[1:]:
        lv = stats.bonferroni(RECOVERS.level(config), len(ks))
        ests, per_k = [], {}
        for k in ks:
            g, v = (fin[(fin.cell == c) & np.isclose(fin.k, k)].final_acc.to_numpy(float) for c in (gated, vanilla))
            ests.append(stats.mean_difference(g, v, lv))
            per_k[f"{k:g}"] = {f"final_acc_{gated}": float(g.mean()) if len(g) else None,
                               f"final_acc_{vanilla}": float(v.mean()) if len(v) else None}
        est = stats.extreme(ests, "min", RECOVERS.level(config), "k")
        if not (qual.get(gated) and qual.get(vanilla)):
            est = stats.undefined(est.method, est.n, est.level, why=(
                f"a base model did not reach {config['qualify_acc']:g} validation accuracy in "
                f"{config['max_base_inits']} inits (see base_best_val_acc): the difference may only restate the gap "
                "between the base models, so it is not judged"))
        out.append(RECOVERS.decide(est, dict(gated=gated, vanilla=vanilla),
                                   {"per_k": per_k, "base_best_val_acc": {c: base_acc.get(c) for c in (vanilla, gated)},
                                    "base_qualified": {c: qual.get(c) for c in (vanilla, gated)},
                                    "qualify_acc": float(config["qualify_acc"]),
                                    "epochs": int(config["retrain_epochs"])}, scale=scale))
    groups = [(c, k) for c in cells for k in ks]
    lv = stats.bonferroni(NO_RETURN.level(config), len(groups))
    ests, per = [], {}
    for c, k in groups:
        r = fin[(fin.cell == c) & np.isclose(fin.k, k)].ratio.dropna().to_numpy(float)
        ests.append(stats.mean(r, lv))
        per[f"{c} k={k:g}"] = float(r.mean()) if len(r) else None
    decl = replace(NO_RETURN, threshold=float(config["dist_ratio"]))
    out.append(decl.decide(stats.extreme(ests, "min", decl.level(config), "(cell, k)"), {},
                           {"ratio_per_cell_k": per}, scale=scale))
    return out


# ----------------------------------------------------------------------------- figures


def figures(tables: dict, config: dict) -> dict:
    rec, basetab = tables["recovery"], tables["base"]
    cells = cells_list(config["cells"])
    ks = sorted(float(k) for k in config["ks"])
    cmap = colormaps["viridis"]
    kcol = {k: cmap(0.1 + 0.8 * i / max(1, len(ks) - 1)) for i, k in enumerate(ks)}
    metrics = [("val_acc", "validation accuracy (%)", 100.0), ("loss", "validation loss", 1.0),
               ("dist", "||W* - W_epoch||", 1.0)]
    fig, axes = style.figure(len(cells), len(metrics), w=3.6, h=2.8)
    for i, c in enumerate(cells):
        b = basetab[basetab.cell == c]
        for j, (col, label, scale) in enumerate(metrics):
            ax = axes[i][j]
            for k in ks:
                sel = rec[(rec.cell == c) & np.isclose(rec.k, k)]
                if sel.empty:
                    continue
                m = sel.pivot_table(index="epoch", columns="rep", values=col)
                style.curve_band(ax, m.index.to_numpy(), scale * m.to_numpy().T, f"k = {k:g}", kcol[k])
            ref = {"val_acc": 100 * float(b.val_acc.iloc[0]) if len(b) else None,
                   "loss": float(b.val_loss.iloc[0]) if len(b) else None, "dist": 0.0}[col]
            if ref is not None:
                ax.axhline(ref, color="black", ls=":", lw=1.2, label="unperturbed")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            q = ("" if not len(b) else f", base {100 * float(b.best_val_acc.iloc[0]):.1f}%"
                 + ("" if bool(b.qualified.iloc[0]) else f" < {100 * config['qualify_acc']:.0f}%"))
            ax.set_title(f"{c} ({config['size'][0]}x{config['size'][1]}){q}", fontsize=9)
            if j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"Retraining after W = W* + k N(0, sigma) ({config['task']}; median over "
                 f"{config['reps']} noise seeds, IQR bands; dotted: unperturbed W*)", fontsize=10)
    fig.tight_layout()
    return {"recovery": fig}


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
