"""The ragged epoch kernel (engine.ragged: loops as long as each step's longest sequence, a
hand-written backward pass) computes what the models-first epoch (engine.train.train_epoch)
computes: same batch orders, updates and freezing, for every cell it accepts."""

import jax
import numpy as np
import pytest

from rnnlab import tasks
from rnnlab.engine import ragged, train as tr
from rnnlab.engine.population import make_population
from rnnlab.engine.protocols import MEHTA, STERIN
from rnnlab.errors import ConfigError
from rnnlab.experiments.common import model_spec


@pytest.mark.parametrize("task,cell,protocol,n", [
    ("embedded-reber", "gru-s", STERIN, 40),              # the paper's setting: SGD, one string a step
    ("embedded-reber", "rnn-sigmoid", STERIN, 40),
    ("reber", "lstm", STERIN.with_(optimizer="adam", batch_size=3), 31),   # Adam, a batch, a padded tail
    ("first", "gru", MEHTA.with_(batch_size=8), 40),      # full length, one scored position
])
def test_ragged_epoch_equals_models_first_epoch(task, cell, protocol, n, both_epochs):
    bias = task == "first"
    ref, got, kw, d = both_epochs("ragged", task, cell, protocol, n=n, input_dim=7 if task.endswith("reber") else 3,
                                  hiddens=[3, 5, 4, 2], lr=(1e-2, 5e-2), epoch=2,
                                  init="normal" if not bias else "torch", bias=bias)
    if task.endswith("reber"):
        assert not kw["full_length"] and len(set(d.lengths.tolist())) > 1
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-11)
    assert not ref[-3][1] and not got[-3][1]                          # alive: the stopped model
    assert np.all(ref[-2][[0, 2, 3]] > 0)                             # the others trained


def test_training_with_the_ragged_kernel_gives_the_same_models(monkeypatch):
    d = tasks.splits("embedded-reber", 0, {"train": 30, "val": 10, "test": 10})
    out = {}
    with jax.enable_x64(True):
        spec = model_spec("embedded-reber", "gru-s", "normal", "float64", False)
        for eng in ("vmap", "auto"):
            monkeypatch.setenv("RNNLAB_ENGINE", eng)
            pop = make_population(spec, 7, [4, 6, 5], [5, 6, 7])
            assert tr.engine_kind(spec, pop.hmax, STERIN.batch_size, False) == ("ragged" if eng == "auto" else "vmap")
            out[eng] = tr.train(pop, STERIN.with_(lr=0.05), d, max_epochs=3, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(out["vmap"].best_params), jax.tree_util.tree_leaves(out["auto"].best_params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-11)
    np.testing.assert_allclose(out["auto"].curves.loss, out["vmap"].curves.loss, rtol=0, atol=1e-11)
    np.testing.assert_array_equal(out["auto"].summary.test_acc, out["vmap"].summary.test_acc)


def test_which_kernel_runs(monkeypatch):
    gru_s = model_spec("embedded-reber", "gru-s", "normal", "float32", False)
    assert tr.engine_kind(gru_s, 16, 1, False) == "ragged"             # Sterin: one ragged string a step
    assert tr.engine_kind(gru_s, 16, 1, False, models=tr.RAGGED_MAX_MODELS + 1) == "vmap"
    assert tr.engine_kind(gru_s, 16, 1, True) == "vmap"                # full-length data: nothing to skip
    assert tr.engine_kind(gru_s, 4, 32, False) == "lanes"              # Mehta batches
    mingru = model_spec("embedded-reber", "mingru", "normal", "float32", False)
    assert tr.engine_kind(mingru, 8, 1, False) == "vmap"               # a parallel form: no stepping
    monkeypatch.setenv("RNNLAB_ENGINE", "ragged")
    assert tr.engine_kind(gru_s, 16, 32, True) == "ragged"
    with pytest.raises(ConfigError, match="ragged"):
        tr.engine_kind(mingru, 8, 1, False)


def test_a_cell_with_a_bare_matmul_falls_back(bare_matmul_cell):
    """A plugin cell written with a bare ``@`` does not trace in lane layout: the models-first
    epoch trains it."""
    spec = model_spec("embedded-reber", bare_matmul_cell, "normal", "float32", False)
    assert not ragged.usable(spec, 8)
    assert tr.engine_kind(spec, 8, 1, False) == "vmap"
