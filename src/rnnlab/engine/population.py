"""Populations: M independent models of one cell stacked on a leading model axis.

Models of different sizes share a population by zero-padding to the largest (input, hidden)
and multiplying by a 0/1 mask inside the forward pass: padded entries then get exactly zero
gradient and never move, so each model computes what it computes alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._jaxcfg import jit, x64
from ..errors import ConfigError
from . import model as mdl
from .model import ModelSpec


@dataclass
class Population:
    spec: ModelSpec
    input_dims: np.ndarray      # [M] int
    hiddens: np.ndarray         # [M] int
    seeds: np.ndarray           # [M] int: each model's own seed (init and batch order)
    params: dict                # padded, leading axis M
    mask: dict                  # 0/1, same shapes as params

    @property
    def size(self) -> int:
        return len(self.seeds)

    @property
    def emax(self) -> int:
        return int(self.input_dims.max())

    @property
    def hmax(self) -> int:
        return int(self.hiddens.max())

    @x64
    def model_params(self, i: int, params: dict | None = None) -> dict:
        """Model i's parameters at its own sizes (numpy)."""
        p = jax.tree_util.tree_map(lambda a: a[i], self.params if params is None else params)
        p = mdl.unpad_params(self.spec, p, int(self.input_dims[i]), int(self.hiddens[i]))
        return jax.tree_util.tree_map(np.asarray, p)

    def n_params(self) -> np.ndarray:
        return np.array([self.spec.n_params(int(e), int(h))
                         for e, h in zip(self.input_dims, self.hiddens)])


def _broadcast(name, v, m):
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, m)
    if a.size != m:
        raise ConfigError(f"{name}: expected 1 or {m} values, got {a.size}")
    return a


@x64
def make_population(spec: ModelSpec, input_dims, hiddens, seeds) -> Population:
    """Initialise a population. input_dims / hiddens: one value or one per model; seeds: one
    per model (their count is M). Each model is drawn at its own sizes (NumPy, no compilation)
    and zero-padded; its parameters depend only on its seed and sizes."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    m = len(seeds)
    if m < 1:
        raise ConfigError("inits: a population needs at least one model")
    e = _broadcast("input", input_dims, m)
    h = _broadcast("hidden", hiddens, m)
    for name, arr in (("input", e), ("hidden", h)):
        for v in arr:             # before any cast: 2.5 or "4" must not become an integer
            mdl.check_size(name, v.item() if isinstance(v, np.generic) else v)
    e, h = e.astype(np.int64), h.astype(np.int64)
    if not spec.embed:
        e = np.full(m, spec.vocab)
    emax, hmax = int(e.max()), int(h.max())
    for ei, hi in {(int(a), int(b)) for a, b in zip(e, h)}:
        mdl.check_model_size(spec, ei, hi)

    ps, ms = [], []
    for seed, ei, hi in zip(seeds, e, h):
        p = mdl.init_params_np(spec, int(seed), int(ei), int(hi))
        ps.append(mdl.pad_params(spec, p, int(ei), int(hi), emax, hmax))
        ms.append(mdl.mask_for(spec, int(ei), int(hi), emax, hmax))
    stack = lambda *xs: jnp.asarray(np.stack(xs), spec.jdtype)  # noqa: E731
    params = jax.tree_util.tree_map(stack, *ps)
    mask = jax.tree_util.tree_map(stack, *ms)
    return Population(spec, e, h, seeds, params, mask)


@x64
def population_from_params(spec: ModelSpec, trees, input_dims, hiddens, seeds) -> Population:
    """A population holding given parameters: ``trees[i]`` is model i's parameter tree at its
    own sizes (the layout of ``engine.model.init_params``), padded like :func:`make_population`.
    seeds: one per model (they set the batch order when the population is trained)."""
    trees = list(trees)
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    m = len(seeds)
    if m < 1 or len(trees) != m:
        raise ConfigError(f"params: expected one parameter tree per seed ({m}), got {len(trees)}")
    e = _broadcast("input", input_dims, m)
    h = _broadcast("hidden", hiddens, m)
    for name, arr in (("input", e), ("hidden", h)):
        for v in arr:
            mdl.check_size(name, v.item() if isinstance(v, np.generic) else v)
    e, h = e.astype(np.int64), h.astype(np.int64)
    if not spec.embed:
        e = np.full(m, spec.vocab)
    emax, hmax = int(e.max()), int(h.max())
    ps, ms = [], []
    for tree, ei, hi in zip(trees, e, h):
        want = jax.tree_util.tree_map(np.shape, mdl.init_params_np(spec, 0, int(ei), int(hi)))
        got = jax.tree_util.tree_map(np.shape, jax.tree_util.tree_map(np.asarray, tree))
        if want != got:
            raise ConfigError(f"params: a model of size {ei}x{hi} needs tensors {want}, got {got}")
        ps.append(mdl.pad_params(spec, tree, int(ei), int(hi), emax, hmax))
        ms.append(mdl.mask_for(spec, int(ei), int(hi), emax, hmax))
    stack = lambda *xs: jnp.asarray(np.stack(xs), spec.jdtype)  # noqa: E731
    return Population(spec, e, h, seeds, jax.tree_util.tree_map(stack, *ps), jax.tree_util.tree_map(stack, *ms))


def apply_mask(params, mask):
    return jax.tree_util.tree_map(lambda p, m: p * m, params, mask)


# ----------------------------------------------------------------------------- losses


def sequence_loss(spec: ModelSpec, loss: str, p, tokens, length, targets, tmask, accept, hmax):
    """(loss, n_correct, n_counted) of one model on one sequence. xent: softmax cross-entropy
    summed over the masked positions; sse: squared error between the linear outputs and the
    one-hot target, summed over masked positions (Sterin et al.'s code)."""
    out, _ = mdl.forward(spec, p, tokens, length, hmax)
    if loss == "xent":
        logp = jax.nn.log_softmax(out, axis=-1)
        per = -jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    elif loss == "sse":
        onehot = jax.nn.one_hot(targets, out.shape[-1], dtype=out.dtype)
        per = jnp.sum((out - onehot) ** 2, axis=-1)
    else:
        raise ConfigError(f"loss: unknown loss {loss!r}; known: xent, sse")
    pred = jnp.argmax(out, axis=-1)
    ok = jnp.take_along_axis(accept, pred[:, None], axis=-1)[:, 0]
    return jnp.sum(per * tmask), jnp.sum(ok * tmask), jnp.sum(tmask)


def _terms(loss: str, out, targets, tmask, accept):
    """(loss, n_correct, n_counted) of one sequence from its outputs [P, O] and the targets,
    masks and accepted outputs at the same P positions."""
    if loss == "xent":
        logp = jax.nn.log_softmax(out, axis=-1)
        per = -jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    elif loss == "sse":
        onehot = jax.nn.one_hot(targets, out.shape[-1], dtype=out.dtype)
        per = jnp.sum((out - onehot) ** 2, axis=-1)
    else:
        raise ConfigError(f"loss: unknown loss {loss!r}; known: xent, sse")
    pred = jnp.argmax(out, axis=-1)
    ok = jnp.take_along_axis(accept, pred[:, None], axis=-1)[:, 0]
    return jnp.sum(per * tmask), jnp.sum(ok * tmask), jnp.sum(tmask)


def _batch_terms(spec, loss, pm, hmax, tokens, lengths, targets, tmask, accept, positions,
                 full_length: bool = False):
    """Per-sequence (loss, n_correct, n_counted) [N] of one (masked) model on a batch through
    the fast path (model.outputs_at). With `positions`, targets/tmask/accept are given at those
    positions only ([N, P, ...]); positions that are never scored are not read out at all.
    full_length: every sequence fills all T positions (lengths are then not read)."""
    table = mdl.input_table(spec, pm) if spec.cell_def.split else None

    def one(tok, ln, tg, tm, ac):
        out = mdl.outputs_at(spec, pm, tok, None if full_length else ln, hmax, positions, table)
        return _terms(loss, out, tg, tm, ac)
    return jax.vmap(one)(tokens, lengths, targets, tmask, accept)


def batch_loss(spec, loss, p, mask, hmax, tokens, lengths, targets, tmask, accept, weights,
               positions: tuple | None = None, full_length: bool = False):
    """Mean over the batch (weighted: padding rows have weight 0) of the per-sequence loss.
    One model; p is unmasked, the mask is applied here so padded entries get zero gradient.
    positions: the static scored positions; targets, tmask and accept are then given at those
    positions only; full_length: all sequences fill all T positions (see :func:`_batch_terms`)."""
    pm = apply_mask(p, mask)
    per, correct, count = _batch_terms(spec, loss, pm, hmax, tokens, lengths, targets, tmask, accept,
                                       positions, full_length)
    wsum = jnp.maximum(jnp.sum(weights), 1.0)
    return jnp.sum(per * weights) / wsum, (jnp.sum(correct * weights), jnp.sum(count * weights))


def at_positions(data: dict, positions: tuple | None) -> dict:
    """The per-position arrays of a device data dict cut to the static `positions`."""
    if not positions:
        return data
    idx = np.asarray(positions)
    out = dict(data)
    for k in ("targets", "target_mask", "accept"):
        out[k] = data[k][:, idx]
    return out


@x64
@partial(jit, static_argnames=("spec", "loss", "hmax", "chunk", "positions", "full_length"))
def evaluate(spec, loss, hmax, params, mask, data, chunk: int = 0, positions: tuple | None = None,
             full_length: bool = False):
    """Per-model (mean loss, accuracy) on a whole data set. data: dict of device arrays
    (tokens, lengths, targets, target_mask, accept). Accuracy = fraction of counted positions
    whose argmax output is accepted. Static hints (exact, see engine.model): positions - where
    target_mask can be non-zero (None: all), only those are read out; full_length - every
    sequence fills all T positions."""
    positions = positions or None
    d = at_positions(data, positions)

    def one(p, m):
        pm = apply_mask(p, m)
        per, correct, count = _batch_terms(spec, loss, pm, hmax, d["tokens"], d["lengths"], d["targets"],
                                           d["target_mask"], d["accept"], positions, full_length)
        return jnp.mean(per), jnp.sum(correct) / jnp.maximum(jnp.sum(count), 1.0)
    return jax.vmap(one)(params, mask)


@x64
def final_states(spec: ModelSpec, p, tokens, lengths, hmax):
    """States [N, T, state] of one model over a batch of sequences (for analyses)."""
    def one(tok, ln):
        return mdl.run_states(spec, p, mdl.embed_inputs(spec, p, tok), ln, hmax)
    return jax.vmap(one)(tokens, lengths)
