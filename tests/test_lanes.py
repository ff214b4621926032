"""The lane-minor epoch kernel (engine.lanes) computes what the models-first epoch
(engine.train.train_epoch) computes: same batch orders, same updates, same freezing, for every
cell it accepts; cells it cannot trace fall back."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import tasks
from rnnlab.cells import base as cb
from rnnlab.cells import CELLS
from rnnlab.engine import lanes, train as tr
from rnnlab.engine.model import ModelSpec
from rnnlab.engine.population import make_population
from rnnlab.engine.protocols import MEHTA, STERIN
from rnnlab.errors import ConfigError


@pytest.mark.parametrize("task,cell,protocol", [
    ("first", "rnn-tanh", MEHTA), ("first", "gru", MEHTA), ("first", "lstm", MEHTA),
    ("reber", "gru", MEHTA),                 # variable lengths, many scored positions, accept sets
    ("reber", "rnn-sigmoid", STERIN.with_(batch_size=4)),   # SGD, squared error
])
def test_lane_epoch_equals_models_first_epoch(task, cell, protocol, both_epochs):
    ref, got, kw, _ = both_epochs("lanes", task, cell, protocol, n=48 if task == "reber" else 96, input_dim=3,
                                  hiddens=[2, 3, 4] * 2, lr=(1e-3, 5e-2), epoch=3)
    if task == "reber":
        assert not kw["full_length"] and len(kw["positions"]) > 1
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    assert not ref[-3][1] and not got[-3][1]                          # alive: the stopped model


def test_permutations_are_jax_random_permutation():
    every = jax.vmap(jax.random.PRNGKey)(jnp.arange(11))            # two key blocks, the last padded
    for n, k in ((1, 4), (5, 11), (100, 3), (70_000, 9)):               # 70_000 needs two sorting rounds
        keys = every[:k]
        ours = lanes.permutations(keys, 2, n)
        theirs = np.stack([np.asarray(jax.random.permutation(jax.random.fold_in(k, 2), n)) for k in keys])
        np.testing.assert_array_equal(ours, theirs)


def test_cells_that_do_not_trace_fall_back(monkeypatch, bare_matmul_cell):
    from rnnlab.experiments.common import model_spec
    for name in ("rnn-tanh", "gru", "lstm", "gru-s"):
        assert tr.engine_kind(model_spec("first", name, "torch", "float32"), 4) == "lanes"
    # a bare `@` does not trace with trailing batch axes: the models-first epoch runs it
    assert tr.engine_kind(model_spec("first", bare_matmul_cell, "torch", "float32"), 4) == "vmap"
    # auto: the lane kernel only where it was measured faster (padded hidden <= LANES_MAX_HIDDEN)
    big = tr.LANES_MAX_HIDDEN * 2
    assert tr.engine_kind(model_spec("first", "gru", "torch", "float32"), big) == "vmap"
    monkeypatch.setenv("RNNLAB_ENGINE", "lanes")
    assert tr.engine_kind(model_spec("first", "gru", "torch", "float32"), big) == "lanes"
    with pytest.raises(ConfigError, match="lane kernel"):
        tr.engine_kind(model_spec("first", bare_matmul_cell, "torch", "float32"), 4)
    monkeypatch.setenv("RNNLAB_ENGINE", "vmap")
    assert tr.engine_kind(model_spec("first", "gru", "torch", "float32"), 4) == "vmap"
    monkeypatch.setenv("RNNLAB_ENGINE", "fast")
    with pytest.raises(ConfigError, match="unknown engine"):
        tr.engine_kind(model_spec("first", "gru", "torch", "float32"), 4)


def test_a_cell_that_traces_wrongly_is_refused():
    """A cell whose step sums over axis -1 is shape-correct with trailing batch axes but wrong:
    the equivalence check must catch it."""
    gru = CELLS["gru"]

    def bad_step(p, s, gi):
        out = gru.step_proj(p, s, gi)
        return out + 0.1 * jnp.mean(out, axis=-1, keepdims=True)
    from dataclasses import replace
    from rnnlab.experiments.common import model_spec
    spec = model_spec("first", "gru", "torch", "float64")
    bad = replace(gru, name="gru-bad-axis", step_proj=bad_step, step=cb.split_step(gru.input_proj, bad_step))
    CELLS[bad.name] = bad
    try:
        with jax.enable_x64(True):
            assert not lanes.usable(replace(spec, cell=bad.name), 4)
    finally:
        del CELLS[bad.name]


def test_training_with_either_kernel_gives_the_same_models(monkeypatch):
    d = tasks.splits("first", 0, {"train": 96, "val": 32, "test": 32})
    out = {}
    with jax.enable_x64(True):
        spec = ModelSpec(cell="gru", dtype="float64")
        for eng in ("vmap", "lanes"):
            monkeypatch.setenv("RNNLAB_ENGINE", eng)
            r = tr.train(make_population(spec, 3, [2, 4], [5, 6]), MEHTA, d, max_epochs=3, progress=False)
            out[eng] = r
    for a, b in zip(jax.tree_util.tree_leaves(out["vmap"].best_params), jax.tree_util.tree_leaves(out["lanes"].best_params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["lanes"].curves.val_loss, out["vmap"].curves.val_loss, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_builtin_cell_that_lanes_trusts_passes_the_check(dtype):
    """lanes.usable skips the tracing check for rnnlab's own cells; this is what it trusts."""
    from rnnlab.cells import BUILTIN
    from rnnlab.experiments.common import model_spec
    trusted = [c for c in sorted(BUILTIN) if CELLS[c].split and CELLS[c].parallel is None]
    assert {"rnn-tanh", "rnn-sigmoid", "gru", "gru-s", "lstm"} <= set(trusted)
    with jax.enable_x64(dtype == "float64"):
        for c in trusted:
            for h in (1, 3, 8):
                assert lanes._check(model_spec("first", c, "torch", dtype), h), (c, h)


@pytest.mark.parametrize("engine", ["lanes", "vmap"])
@pytest.mark.parametrize("shards", [2, 3])
def test_shards_draw_their_own_batch_orders_and_give_the_one_shard_epoch(monkeypatch, shards, engine):
    """run_epoch's shards each draw their own models' batch orders in NumPy (either kernel): the
    same epoch as one shard (5 models, so the last shard is padded), and as the models-first
    epoch drawing them inside itself (jax.random.permutation)."""
    from rnnlab.engine import model as mdl
    monkeypatch.setenv("RNNLAB_ENGINE", engine)
    d = tasks.splits("first", 0, {"train": 64, "val": 8, "test": 8})["train"]
    with jax.enable_x64(True):
        spec = ModelSpec(cell="gru", dtype="float64")
        pop = make_population(spec, 3, [2, 4, 3, 2, 4], np.arange(5))
        keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(5))
        ep, opt, dev = tr.epoch_protocol(MEHTA), tr.init_opt_state(MEHTA, pop.params), tr.device_data(d, spec.jdtype)
        kw = dict(positions=mdl.scored_positions(d.target_mask), full_length=mdl.full_length(d.tokens, d.lengths))
        args = (spec, ep, pop.hmax, 2, pop.params, opt, pop.mask, jnp.full(5, 1e-2), jnp.ones(5, bool), keys, 2, dev)
        assert tr.engine_kind(spec, pop.hmax, MEHTA.batch_size, kw["full_length"], models=5) == engine
        one = tr.run_epoch(*args, shards=1, **kw)
        many = tr.run_epoch(*args, shards=shards, **kw)
        ref = tr.train_epoch(*args, **kw)
    for a, b, c in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(many), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=0, atol=1e-12)
