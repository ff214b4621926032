"""Trainability of vanilla vs gated cells over a grid of sizes (Mehta V.A, Figs 3-4).

For every task and cell, ONE padded population holds every (input, hidden) size of the grid
times every init; each model is trained with the M protocol and its best validation accuracy
(and the test accuracy of that checkpoint) is kept.

Claims (the paper's evidence is counts: "only 1 out of the 48"), as declarations:
  * a gated cell reaches "success" (best val acc >= ``success_acc``) in far more grid settings
    than the vanilla cell (the first of ``cells``): difference of success fractions over all
    (size, init) models of each cell (counts, Newcombe interval; the cells' models are
    independent - no pairing by init index), min effect 0.25;
  * Xor is harder than First for every cell: success fraction on First - on Xor, the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import tasks as tasks_mod
from ..analysis import stats
from ..analysis.claims import Declaration
from ..cells.init import check_scheme
from ..engine.model import check_size
from ..engine.protocols import get as get_protocol
from ..errors import ConfigError
from ..plots import style
from . import base
from .common import cells_list, check_classify_task, train_population

NAME = "trainability-grid"
PAPER = "mehta"
SOURCE = "Mehta, section V.A, Figs 3-4"
QUESTION = ("Over a grid of input and hidden sizes and a few inits, in how many settings does each cell "
            "reach high validation accuracy on First and Xor?")
ORDER = 3
VERSION = 1
ROUNDS = {"units": "inits", "offset": "init_offset"}
CHOICES = {
    "success_acc": "a grid point 'succeeds' when its best validation accuracy is >= 0.9 (the paper "
                   "reads the heatmaps by eye)",
    "seeds": "model seeds derive from (seed, task, init, input, hidden); the cells share them",
    "batch_size": "32 (the paper does not give it)",
    "populations": "one population per (task, cell, hidden size), the input sizes and inits padded together: "
                   "a model computes the same in any population, and one padded to hidden 16 costs several "
                   "times one of hidden 2-4 (measured: trainability-grid with every size in one population "
                   "spent most of its time on small models padded to 16)",
    "vanilla": "the first cell of `cells` is the baseline every other cell is compared to",
    "statistic": "counts of successful models pooled over the grid (equal strata: pooling keeps the "
                 "Newcombe interval valid), no pairing by init index across cells or tasks (their seeds "
                 "differ, so such pairs mean nothing)",
    "min_effect": "'succeeds far more' / 'much harder': at least 25 points of success fraction (a quarter "
                  "of the grid); smaller gaps are not what the paper's heatmaps show",
    "quick": "quick scale = the paper's: 3 inits per grid cell, trained with the paper's full M protocol "
             "(8000/2000/3000 sequences, Adam 1e-3, Mehta's stopping rule, up to 150 epochs). 1 init left both "
             "Xor claims undecided (2 of 16 GRU Xor models succeeded, 0 of 16 RNN ones); 3 decide all four "
             "(the models of inits 0-2 of a 4-init run: succeeds-more-xor 0.104 [0.010, 0.222], xor-harder-rnn-tanh "
             "0.271 [0.142, 0.410]); 2 inits made succeeds-more-xor fail ([-0.030, 0.242] below the min effect)",
    "tiny": "tiny scale (tests only): 2x2 grid, 2 inits, 300/200/200 sequences, 2 epochs",
}

PAPER_SIZES = {"train": 8000, "val": 2000, "test": 3000}


def default_config(scale: str) -> dict:
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "tasks": ["first", "xor"],
           "inputs": [2, 5, 10, 15], "hiddens": [2, 4, 8, 16], "inits": 3,
           "init_scheme": "torch", "protocol": "mehta", "max_epochs": 150,
           "data_sizes": dict(PAPER_SIZES), "success_acc": 0.9}
    if scale == "tiny":
        cfg.update(inputs=[2, 4], hiddens=[2, 4], inits=2, max_epochs=2,
                   data_sizes={"train": 300, "val": 200, "test": 200})
    return cfg


def validate(cfg: dict) -> None:
    validate_common(cfg)
    if not (0 <= cfg["success_acc"] <= 1):
        raise ConfigError(f"success_acc: must be in [0, 1], got {cfg['success_acc']!r}")


def validate_common(cfg: dict) -> None:
    """Checks shared by the grid experiments (trainability-grid, capacity-inits)."""
    cfg["tasks"] = cells_list(cfg["tasks"])
    if not cfg["tasks"]:
        raise ConfigError("tasks: at least one task is needed")
    for t in cfg["tasks"]:
        check_classify_task("tasks", t)
    for key in ("inputs", "hiddens"):
        if not cfg[key]:
            raise ConfigError(f"{key}: at least one size is needed")
        cfg[key] = [check_size(key, v) for v in cfg[key]]
    check_size("inits", cfg["inits"])
    check_size("max_epochs", cfg["max_epochs"])
    check_scheme(cfg["init_scheme"])
    get_protocol(cfg["protocol"])
    for k, v in cfg["data_sizes"].items():
        if k not in ("train", "val", "test"):
            raise ConfigError(f"data_sizes: unknown split {k!r}; known: train, val, test")
        check_size(f"data_sizes[{k!r}]", v)
    for k in ("train", "val"):
        if k not in cfg["data_sizes"]:
            raise ConfigError(f"data_sizes: a {k!r} split is needed")


# ----------------------------------------------------------------------------- shards


def model_seed(seed: int, tag: int, task: str, init: int, e: int, h: int) -> int:
    """A model's seed: depends on the run seed, the experiment tag, the task, the init index and
    the model's own sizes (not on the rest of the grid), shared by the cells."""
    ss = np.random.SeedSequence([int(seed), int(tag), tasks_mod.get(task).task_id, int(init), int(e), int(h)])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


def grid_shards(cfg: dict, tag: int) -> list[dict]:
    """One shard per (task, cell, hidden size): every (input, init) of that hidden size in one
    population (see CHOICES["populations"]); model ids number the (init, input, hidden) models
    of a (task, cell) in that order."""
    shards = []
    for task in cfg["tasks"]:
        sizes, seeds, init_ids = [], [], []
        for i in range(cfg.get("init_offset", 0), cfg.get("init_offset", 0) + cfg["inits"]):
            for e in cfg["inputs"]:
                for h in cfg["hiddens"]:
                    sizes.append([e, h])
                    seeds.append(model_seed(cfg["seed"], tag, task, i, e, h))
                    init_ids.append(i)
        for cell in cfg["cells"]:
            for h in sorted(set(cfg["hiddens"])):
                ids = [j for j, (_, hj) in enumerate(sizes) if hj == h]
                shards.append({"task": task, "task_seed": cfg["seed"], "cell": cell,
                               "init": cfg["init_scheme"], "sizes": [sizes[j] for j in ids],
                               "seeds": [seeds[j] for j in ids], "init_ids": [init_ids[j] for j in ids],
                               "model_ids": ids, "protocol": cfg["protocol"],
                               "max_epochs": cfg["max_epochs"], "data_sizes": dict(cfg["data_sizes"])})
                if cfg.get("lr") is not None:  # only where set: the other grids' shard keys stay as they were
                    shards[-1]["lr"] = float(cfg["lr"])
    return shards


def accuracy_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Train one population; per-model summary (with init index) and per-epoch curves, models
    numbered by the shard's model ids."""
    res, _ = train_population(shard)
    ids = np.asarray(shard["model_ids"], int)
    summary = res.summary.assign(task=shard["task"], cell=shard["cell"],
                                 init=np.asarray(shard["init_ids"], int), model=ids[res.summary["model"].to_numpy()])
    curves = res.curves.assign(task=shard["task"], cell=shard["cell"], model=ids[res.curves["model"].to_numpy()])
    return {"summary": summary, "curves": curves}


def run_grid(ctx, tag: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    cfg = ctx.config
    outs = ctx.map(accuracy_shard, grid_shards(cfg, tag), desc=ctx.name)
    summary = pd.concat([o["summary"] for o in outs], ignore_index=True)
    curves = pd.concat([o["curves"] for o in outs], ignore_index=True)
    acc = summary[["task", "cell", "input", "hidden", "init", "seed", "n_params", "best_val_acc",
                   "test_acc", "best_epoch", "epochs", "status"]].copy()
    acc["model"] = summary["model"].to_numpy()
    acc = acc.sort_values(["task", "cell", "model"], kind="stable")
    return acc.reset_index(drop=True), curves


def execute(ctx) -> dict[str, pd.DataFrame]:
    acc, curves = run_grid(ctx, tag=3)
    return {"accuracy": acc, "curves": curves}


# ----------------------------------------------------------------------------- claims


SUCCEEDS_MORE = Declaration(
    "succeeds-more-{task}-{gated}-vs-{vanilla}",
    "On {task}, {gated} reaches high accuracy (best val acc >= {thr:g}) in far more grid settings than "
    "{vanilla} (paper: GRU 'succeeds far more' than the vanilla RNN).",
    "success fraction {gated} - {vanilla} over every (input, hidden, init) model",
    0.0, ">", 0.25, "difference", planning={"p_base": 0.2}, units="models per cell (sizes x inits)",
    paper="In terms of performance GRU is the clear winner, it succeeds far more than RNN.",
    figure="heatmaps_{task}")
XOR_HARDER = Declaration(
    "xor-harder-{cell}", "Xor is harder than First for {cell}: it succeeds (best val acc >= {thr:g}) in far "
    "fewer grid settings.", "success fraction First - Xor of {cell} over every (input, hidden, init) model",
    0.0, ">", 0.25, "difference", planning={"p_base": 0.2}, units="models per task (sizes x inits)",
    paper="This also suggests that Xor dataset pose much more harder problem for the RNNs than the First dataset.",
    figure="heatmaps_xor")
DECLARATIONS = [SUCCEEDS_MORE, XOR_HARDER]


def _successes(acc: pd.DataFrame, task: str, cell: str, thr: float) -> tuple[int, int]:
    a = acc[(acc.task == task) & (acc.cell == cell)].best_val_acc.dropna()
    return int((a >= thr).sum()), int(len(a))


def claims(tables: dict, config: dict) -> list:
    acc = tables["accuracy"]
    cells = cells_list(config["cells"])
    thr = float(config["success_acc"])
    vanilla, out = cells[0], []
    scale = ("inits", config["inits"])
    for task in config["tasks"]:
        for gated in cells[1:]:
            (kg, ng), (kv, nv) = _successes(acc, task, gated, thr), _successes(acc, task, vanilla, thr)
            est = stats.proportion_difference(kg, ng, kv, nv, SUCCEEDS_MORE.level(config))
            out.append(SUCCEEDS_MORE.decide(est, dict(task=task, gated=gated, vanilla=vanilla, thr=thr),
                                            {"task": task, f"successes_{gated}": f"{kg}/{ng}",
                                             f"successes_{vanilla}": f"{kv}/{nv}", "success_acc": thr},
                                            scale=scale))
    if "first" in config["tasks"] and "xor" in config["tasks"]:
        for cell in cells:
            (kf, nf), (kx, nx) = _successes(acc, "first", cell, thr), _successes(acc, "xor", cell, thr)
            est = stats.proportion_difference(kf, nf, kx, nx, XOR_HARDER.level(config))
            out.append(XOR_HARDER.decide(est, dict(cell=cell, thr=thr),
                                         {"cell": cell, "successes_first": f"{kf}/{nf}",
                                          "successes_xor": f"{kx}/{nx}", "success_acc": thr}, scale=scale))
    return out


# ----------------------------------------------------------------------------- figures


def heatmap_figure(acc: pd.DataFrame, task: str, cells: list[str], inits: list[int],
                   inputs: list[int], hiddens: list[int], title: str):
    """One annotated heatmap (rows hidden, columns input, best val acc in %) per cell x init."""
    flat = len(inits) == 1                     # one init: the cells side by side
    fig, axes = style.figure(1 if flat else len(cells), len(cells) if flat else len(inits), w=3.3, h=2.9)
    im = None
    letters = "abcdefghijklmnopqrstuvwxyz"
    k = 0
    for r, cell in enumerate(cells):
        for c, init in enumerate(inits):
            ax = axes[0][r] if flat else axes[r][c]
            sel = acc[(acc.task == task) & (acc.cell == cell) & (acc.init == init)]
            grid = np.full((len(hiddens), len(inputs)), np.nan)
            for _, row in sel.iterrows():
                if row.hidden in hiddens and row.input in inputs:
                    grid[hiddens.index(row.hidden), inputs.index(row.input)] = 100 * row.best_val_acc
            lab = f"({letters[k % 26]}) " if k < 26 else ""
            im = style.annotated_heatmap(ax, grid, hiddens, inputs, title=f"{lab}{cell}, init {init}",
                                         xlabel="input dim", ylabel="hidden dim")
            k += 1
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if im is not None:
        fig.colorbar(im, ax=[a for row in axes for a in row], shrink=0.8, label="best val acc (%)")
    return fig


def figures(tables: dict, config: dict) -> dict:
    acc = tables["accuracy"]
    cells = cells_list(config["cells"])
    figs = {}
    for task in config["tasks"]:
        figs[f"heatmaps_{task}"] = heatmap_figure(
            acc, task, cells, sorted(int(i) for i in acc[acc.task == task].init.unique())[:6], list(config["inputs"]), list(config["hiddens"]),
            f"{task.capitalize()}: best validation accuracy (%) per size, cell and init "
            f"({config['scale']} scale)")
    return figs


def run(config=None, **kw):
    return base.run(NAME, config, **kw)
