"""The validation passes of training run through the prefix kernel (engine.prefix) on
classification data: the same (loss, accuracy) as engine.population.evaluate, and training
gives the same models, curves and verdicts with either (float64)."""
import jax
import numpy as np
import pytest

import rnnlab
from rnnlab import tasks
from rnnlab.engine import prefix
from rnnlab.engine import model as mdl
from rnnlab.engine.population import evaluate, make_population
from rnnlab.engine.protocols import MEHTA
from rnnlab.engine.train import device_data, train
from rnnlab.errors import ConfigError
from rnnlab.experiments.common import model_spec


@pytest.fixture(scope="module")
def first_small():
    return tasks.splits("first", 0, {"train": 256, "val": 128, "test": 128})


def _scaled(params, factor):
    """Random init scaled up, so that outputs are far from uniform (the losses differ)."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a) * factor, params)


def _reference(spec, loss, pop, params, data):
    with rnnlab.float64():
        d = device_data(data, spec.jdtype)
        out = evaluate(spec, loss, pop.hmax, params, pop.mask, d, positions=mdl.scored_positions(data.target_mask))
    return [np.asarray(x) for x in out]


@pytest.mark.parametrize("cell,loss,fast",
                         [(c, "xent", f) for c in ("rnn-tanh", "rnn-sigmoid", "gru", "lstm", "ugrnn") for f in (True, False)]
                         + [("gru", "sse", True), ("lstm", "sse", False)])
def test_prefix_pass_equals_population_evaluate(cell, loss, fast, monkeypatch):
    """Mixed sizes (padded), 37 models (two chunks of 32, the second zero-padded, computed by
    two streams), both step paths (trailing batch axes and the vmapped step): every model's mean
    loss and accuracy equal population.evaluate's to float64 rounding."""
    data = tasks.splits("xor" if cell == "ugrnn" else "first", 3, {"train": 8, "val": 300, "test": 8})["val"]
    spec = model_spec("first", cell, "torch", "float64")
    sizes = [(4, 2), (2, 3), (4, 4), (1, 5), (3, 1)] * 7 + [(4, 5), (2, 2)]
    with rnnlab.float64():
        pop = make_population(spec, [s[0] for s in sizes], [s[1] for s in sizes], np.arange(len(sizes)))
    params = _scaled(pop.params, 3.0)
    monkeypatch.setitem(prefix._FAST, (spec, pop.emax, pop.hmax), fast)
    monkeypatch.setenv("RNNLAB_STREAMS", "2")
    ev = prefix.PopulationEval(spec, data, loss, pop.emax, pop.hmax, len(sizes))
    assert ev.chunk == 32
    got_loss, got_acc = ev(params, pop.mask)
    ref_loss, ref_acc = _reference(spec, loss, pop, params, data)
    assert got_loss.dtype == np.float64 and got_acc.shape == (len(sizes),)
    np.testing.assert_allclose(got_acc, ref_acc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-12, atol=0)
    assert len(np.unique(np.round(got_loss, 9))) > 20       # the models do differ
    # a subset of the models (a shrinking population passes fewer models, same kernel)
    sub = np.array([5, 0, 36])
    sl, sa = ev(jax.tree_util.tree_map(lambda a: a[sub], params), jax.tree_util.tree_map(lambda a: a[sub], pop.mask))
    np.testing.assert_allclose(sl, got_loss[sub], rtol=1e-13, atol=0)
    np.testing.assert_array_equal(sa, got_acc[sub])


def test_prefix_pass_rejects_parameters_of_another_layout(first_small):
    spec = model_spec("first", "gru", "torch", "float64")
    with rnnlab.float64():
        pop = make_population(spec, 4, 4, [0, 1])
    ev = prefix.PopulationEval(spec, first_small["val"], "xent", 4, 8, 2)
    with pytest.raises(ValueError, match="wants"):
        ev(pop.params, pop.mask)


def test_training_with_the_prefix_pass_equals_training_with_evaluate(first_small, monkeypatch):
    """The whole Mehta protocol (halving, patience, compaction of stopped models, test on the
    best checkpoints) gives the same curves, statuses and parameters with either validation
    pass (float64)."""
    from rnnlab.engine import train as tr
    spec = model_spec("first", "gru", "torch", "float64")
    sizes = [(4, 4), (2, 3), (4, 2), (3, 4)] * 5
    lr = np.where(np.arange(len(sizes)) % 3 == 0, 1e-2, 1e-7)     # most stop early: compaction runs
    monkeypatch.setattr(tr, "COMPACT_MIN_EPOCHS_LEFT", 2)
    monkeypatch.setattr(tr, "COMPACT_WASTE", 0)
    calls = []
    real = prefix.PopulationEval.__call__
    monkeypatch.setattr(prefix.PopulationEval, "__call__", lambda self, p, m: calls.append(1) or real(self, p, m))
    out = {}
    for mode in ("prefix", "vmap"):
        monkeypatch.setenv("RNNLAB_EVAL", mode)
        out[mode] = train(make_population(spec, [s[0] for s in sizes], [s[1] for s in sizes], np.arange(len(sizes))),
                          MEHTA, first_small, lr=lr, max_epochs=5, progress=False)
        if mode == "prefix":
            assert len(calls) == 6                      # the initial pass and one per epoch
    a, b = out["prefix"], out["vmap"]
    assert len(calls) == 6                              # vmap never called the prefix pass
    assert set(a.summary.status) >= {"min_lr"}
    for col in ("status", "epochs", "best_epoch"):
        np.testing.assert_array_equal(a.summary[col].to_numpy(), b.summary[col].to_numpy())
    for col in ("best_val_acc", "test_acc"):
        np.testing.assert_allclose(a.summary[col].to_numpy(float), b.summary[col].to_numpy(float), rtol=0, atol=1e-12)
    for col in ("val_acc", "val_loss", "loss", "train_acc", "lr"):
        np.testing.assert_allclose(a.curves[col].to_numpy(float), b.curves[col].to_numpy(float), rtol=1e-12, atol=1e-12)
    for x, y in zip(jax.tree_util.tree_leaves(a.best_params), jax.tree_util.tree_leaves(b.best_params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-12)


def test_prefix_pass_only_where_the_data_allow_it(monkeypatch):
    spec = model_spec("first", "gru", "torch", "float32")
    first = tasks.splits("first", 0, {"train": 8, "val": 40, "test": 8})["val"]
    reber = tasks.splits("reber", 0, {"train": 8, "val": 20, "test": 8})["val"]   # scored at every step
    rspec = mdl.ModelSpec(cell="gru", vocab=7, n_outputs=7, embed=False, out_bias=False)
    monkeypatch.delenv("RNNLAB_EVAL", raising=False)
    assert isinstance(prefix.population_eval(spec, first, "xent", 4, 4, 8), prefix.PopulationEval)
    assert prefix.population_eval(rspec, reber, "xent", 7, 4, 8) is None
    # auto: only a run large enough to pay for the kernel's compilation
    need = -(-prefix.MIN_WORK // (8 * len(first)))
    assert prefix.population_eval(spec, first, "xent", 4, 4, 8, passes=need - 1) is None
    assert isinstance(prefix.population_eval(spec, first, "xent", 4, 4, 8, passes=need), prefix.PopulationEval)
    # ... weighted by the hidden size (population.evaluate's cost per model grows with it)
    assert isinstance(prefix.population_eval(spec, first, "xent", 4, 16, 8, passes=need // 4 + 1),
                      prefix.PopulationEval)
    assert prefix.population_eval(spec, first, "xent", 4, 16, 8, passes=need // 4 - 1) is None
    monkeypatch.setenv("RNNLAB_EVAL", "prefix")
    with pytest.raises(ConfigError, match="classification task"):
        prefix.population_eval(rspec, reber, "xent", 7, 4, 8)
    monkeypatch.setenv("RNNLAB_EVAL", "vmap")
    assert prefix.population_eval(spec, first, "xent", 4, 4, 8) is None
    monkeypatch.setenv("RNNLAB_EVAL", "fast")
    with pytest.raises(ConfigError, match="^RNNLAB_EVAL: unknown evaluation kernel 'fast'"):
        prefix.population_eval(spec, first, "xent", 4, 4, 8)
    with pytest.raises(ConfigError, match="unknown loss"):
        prefix.PopulationEval(spec, first, "hinge", 4, 4, 8)


@pytest.mark.parametrize("variant", ["first", "reber"])
def test_every_builtin_cell_passes_the_fast_path_check(variant):
    """engine.prefix skips the (compiling) check of the trailing-batch step for the built-in
    cells: every one of them must pass it, with and without biases and embedding."""
    from rnnlab import cells
    for cell in sorted(cells.BUILTIN):
        if variant == "first":
            spec = model_spec("first", cell, "torch", "float32")
        else:
            spec = mdl.ModelSpec(cell=cell, vocab=7, n_outputs=7, embed=False, out_bias=False, bias=False,
                                 init="normal")
        assert prefix._check_fast(spec, spec.input_size(3), 5), cell
