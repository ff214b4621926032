"""Pieces every experiment uses: a generic training shard, parameters as tables, cell lists.

A *shard* is a plain dict (picklable, hashable into a store key) describing one population to
train; :func:`train_shard` turns it into tables. Its randomness depends only on its content
(task seed, model seeds), so any backend computes the same tables.
"""
from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from .. import tasks
from ..engine.model import ModelSpec
from ..engine.population import Population, make_population
from ..engine.protocols import Protocol
from ..engine.protocols import get as get_protocol
from ..engine.train import TrainResult, train
from ..errors import ConfigError

#: the classifier tasks of Mehta use a learned embedding; the Reber tasks a one-hot input
SEQUENCE_TASKS = ("reber", "embedded-reber")


def check_classify_task(field: str, name: str) -> None:
    """`name` must be one of Mehta's sentiment classification tasks (count, first, xor)."""
    if tasks.get(name).kind != "classify":
        raise ConfigError(f"{field}: {name!r} is not a classification task (use count, first or xor)")


def model_spec(task: str, cell: str, init: str, dtype: str = "float32", bias: bool = True,
               out_bias: bool | None = None) -> ModelSpec:
    t = tasks.get(task)
    embed = task not in SEQUENCE_TASKS
    return ModelSpec(cell=cell, vocab=t.vocab, n_outputs=t.n_outputs, embed=embed, bias=bias,
                     out_bias=embed if out_bias is None else out_bias, init=init, dtype=dtype)


def protocol_from(shard: dict) -> Protocol:
    base = get_protocol(shard.get("protocol", "mehta"))
    return base.with_(**shard.get("protocol_overrides", {}))


def task_data(shard: dict) -> dict:
    return tasks.splits(shard["task"], shard["task_seed"], shard.get("data_sizes"),
                        length=shard.get("length", 10))


def train_population(shard: dict, progress=False) -> tuple[TrainResult, dict]:
    """Train the population a shard describes. Shard keys: task, task_seed, cell, init, sizes
    ([[input, hidden], ...] one per model), seeds (one per model), protocol, protocol_overrides,
    max_epochs, data_sizes, length, dtype, snapshots, lr (optional per-model list)."""
    spec = model_spec(shard["task"], shard["cell"], shard.get("init", "torch"), shard.get("dtype", "float32"),
                      shard.get("bias", True), shard.get("out_bias"))
    sizes = np.asarray(shard["sizes"]).reshape(-1, 2)
    pop = make_population(spec, sizes[:, 0], sizes[:, 1], shard["seeds"])
    data = task_data(shard)
    res = train(pop, protocol_from(shard), data, lr=shard.get("lr"), snapshots=shard.get("snapshots", False),
                progress=progress, max_epochs=shard.get("max_epochs"))
    return res, data


def train_shard(shard: dict) -> dict[str, pd.DataFrame]:
    """Generic shard: summary (one row per model), curves (per epoch) and best parameters."""
    res, _ = train_population(shard)
    summary = res.summary.assign(cell=shard["cell"], task=shard["task"])
    out = {"summary": summary, "curves": res.curves.assign(cell=shard["cell"]),
           "params": params_frame(res.population, res.best_params, epoch=-1)}
    if shard.get("snapshots"):
        out["snapshots"] = pd.concat([params_frame(res.population, s, epoch=e)
                                      for e, s in enumerate(res.snapshots)], ignore_index=True)
    return out


def params_frame(pop: Population, params: dict, epoch: int) -> pd.DataFrame:
    """One row per (model, tensor): flattened values at the model's own sizes."""
    rows = []
    for i in range(pop.size):
        p = pop.model_params(i, params)
        for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
            name = "/".join(str(getattr(k, "key", k)) for k in path)
            rows.append((i, epoch, name, list(leaf.shape), np.asarray(leaf, np.float64).ravel().tolist()))
    return pd.DataFrame(rows, columns=["model", "epoch", "tensor", "shape", "values"])


def params_from_frame(df: pd.DataFrame, model: int, epoch: int = -1) -> dict:
    """Inverse of :func:`params_frame` for one model: a nested dict of numpy arrays."""
    sel = df[(df.model == model) & (df.epoch == epoch)]
    if sel.empty:
        raise KeyError(f"no parameters for model {model} at epoch {epoch}")
    tree: dict = {}
    for _, r in sel.iterrows():
        node = tree
        parts = r.tensor.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = np.asarray(r["values"], np.float64).reshape([int(s) for s in r["shape"]])
    return tree


def flat_vector(tree: dict) -> np.ndarray:
    """All parameters of one model as one vector (sorted tensor order)."""
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree_util.tree_leaves(tree)])


def cells_list(value) -> list[str]:
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    return list(value)
