"""Markers: `slow` (paper-scale) runs only with RNNLAB_SLOW=1; `gpu` only where JAX sees a GPU.

The test process is rnnlab's own, like the `rnnlab` command: it keeps compiled XLA programs in
rnnlab's persistent cache (importing rnnlab alone does not). float64 is NOT switched on
globally: rnnlab's calls switch it on themselves; tests whose own JAX code needs float64 use
the `float64` fixture."""
import os

import pytest

import rnnlab
from rnnlab._jaxcfg import use_compilation_cache

os.environ.setdefault("RNNLAB_PROGRESS", "0")
use_compilation_cache()


@pytest.fixture
def float64():
    """float64 on for this test's own JAX code (rnnlab.float64(), thread-local)."""
    with rnnlab.float64():
        yield


@pytest.fixture
def bare_matmul_cell():
    """A plugin-like cell written with a bare ``@`` (it does not trace with trailing batch axes),
    registered for the test's duration; yields its name."""
    from dataclasses import replace

    import jax.numpy as jnp

    from rnnlab.cells import CELLS
    from rnnlab.cells import base as cb
    rnn = CELLS["rnn-tanh"]

    def proj(p, h, xi):
        return jnp.tanh(xi + p["W_hh"] @ h)
    CELLS["rnn-bare-matmul"] = replace(rnn, name="rnn-bare-matmul", step_proj=proj,
                                       step=cb.split_step(rnn.input_proj, proj))
    yield "rnn-bare-matmul"
    del CELLS["rnn-bare-matmul"]


def _both_epochs(kernel, task, cell, protocol, *, n, input_dim, hiddens, lr, epoch, init="torch", bias=True,
                 dtype="float64"):
    """One epoch of one population by the models-first epoch (engine.train.train_epoch) and by a
    lane-ordered kernel ("lanes": engine.lanes.lane_epoch, "ragged": engine.ragged.ragged_epoch)
    from the same state, with model 1 stopped: (reference leaves, kernel leaves, the static data
    hints, the training data)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rnnlab import tasks
    from rnnlab.engine import lanes, model as mdl, ragged, train as tr
    from rnnlab.engine.population import make_population
    from rnnlab.experiments.common import model_spec
    with jax.enable_x64(dtype == "float64"):
        spec = model_spec(task, cell, init, dtype, bias)
        d = tasks.splits(task, 0, {"train": n, "val": 8, "test": 8})["train"]
        m = len(hiddens)
        pop = make_population(spec, input_dim, hiddens, np.arange(m))
        run = {"lanes": lanes.lane_epoch, "ragged": ragged.ragged_epoch}[kernel]
        assert (lanes.usable if kernel == "lanes" else ragged.usable)(spec, pop.hmax)
        dev = tr.device_data(d, spec.jdtype)
        keys = jax.vmap(lambda k: jax.random.fold_in(k, 7))(jax.vmap(jax.random.PRNGKey)(jnp.arange(m)))
        nb = -(-n // protocol.batch_size)
        lr = jnp.asarray(np.linspace(*lr, m), spec.jdtype)
        act = jnp.ones(m, bool).at[1].set(False)                     # a stopped model stays frozen
        ep = tr.epoch_protocol(protocol)
        kw = dict(positions=mdl.scored_positions(d.target_mask), full_length=mdl.full_length(d.tokens, d.lengths))
        opt = tr.init_opt_state(protocol, pop.params)
        ref = tr.train_epoch(spec, ep, pop.hmax, nb, pop.params, opt, pop.mask, lr, act, keys, epoch, dev, **kw)
        orders = jnp.asarray(lanes.batch_orders(keys, epoch, n, nb, protocol.batch_size, protocol.shuffle))
        got = run(spec, ep, pop.hmax, nb, pop.params, opt, pop.mask, lr, act, orders, dev, **kw)
        return [np.asarray(x, float) for x in jax.tree_util.tree_leaves(ref)], \
            [np.asarray(x, float) for x in jax.tree_util.tree_leaves(got)], kw, d


@pytest.fixture
def both_epochs():
    """:func:`_both_epochs`: a kernel's epoch against the models-first epoch."""
    return _both_epochs


def pytest_collection_modifyitems(config, items):
    slow = os.environ.get("RNNLAB_SLOW") == "1"
    gpu = None
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="paper-scale check: set RNNLAB_SLOW=1 (make test-all)"))
        if "gpu" in item.keywords:
            if gpu is None:
                from rnnlab.device import gpu_available
                gpu = gpu_available()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible to JAX"))
