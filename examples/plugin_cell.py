"""An rnnlab plugin: a cell and a task of your own, usable everywhere rnnlab uses the built-in
ones (every experiment's --cells, rnnlab train, check-cell, compare-cell, worker processes, Ray).

    rnnlab check-cell examples/plugin_cell.py:scaled-tanh
    rnnlab run capacity-inits --plugin examples/plugin_cell.py --cells rnn-tanh,scaled-tanh
    rnnlab train --plugin examples/plugin_cell.py --task last --cell scaled-tanh --inits 4
    rnnlab compare-cell scaled-tanh --plugin examples/plugin_cell.py

scaled-tanh: a tanh RNN whose recurrent matrix is scaled, row by row, by a learned gain,
    h' = tanh(W_ih x + b_ih + (1 + g) * (W_hh h) + b_hh),
with g of shape [hidden]. g is drawn like a bias (zeros in the normal/xavier/uniform schemes,
U(-1/sqrt(h), 1/sqrt(h)) in the torch scheme) but is not one: it stays when biases are off.

last: Mehta's sentiment vocabulary, positive iff the LAST non-stop word is positive (the mirror
image of First: the answer is near the end, so it needs no long memory).
"""
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, tasks
from rnnlab.cells.base import Cell, Param, input_linear, matvec, split_step
from rnnlab.tasks.sentiment import is_nonstop, is_positive, sentiment_spec


def step_proj(p, h, xi):
    """The recurrent part: xi = W_ih x + b_ih (from input_proj), h the state [hidden]."""
    rec = (1.0 + p["g_hh"]) * matvec(p["W_hh"], h)
    if "b_hh" in p:                          # absent when the model has no biases
        rec = rec + p["b_hh"]
    return jnp.tanh(xi + rec)


SCALED_TANH = cells.register(Cell(
    name="scaled-tanh",
    gates=1,
    params={
        "W_ih": Param(("gh", "in"), "w_in"),
        "W_hh": Param(("gh", "h"), "w_rec"),
        "b_ih": Param(("gh",), "bias"),
        "b_hh": Param(("gh",), "bias"),
        "g_hh": Param(("h",), "bias"),        # the gain: drawn like a bias, kept without biases
    },
    step=split_step(input_linear, step_proj),
    bias_params=("b_ih", "b_hh"),
    reference="examples/plugin_cell.py: tanh RNN with a learned per-unit recurrent gain",
    input_proj=input_linear,
    step_proj=step_proj,
))


def last_rule(tokens: np.ndarray):
    """(labels, valid): positive iff the last non-stop word is positive; sentences without a
    non-stop word are redrawn."""
    nonstop = is_nonstop(tokens)
    last = tokens.shape[1] - 1 - nonstop[:, ::-1].argmax(axis=1)
    word = tokens[np.arange(len(tokens)), last]
    return is_positive(word).astype(np.int32), nonstop.any(axis=1)


#: task_id 1001: a stable integer >= 1000 of our own; it enters every seed stream of the task
LAST = tasks.register(sentiment_spec("last", 1001, __name__, last_rule))
