"""The benchmark scripts run (tiny sizes, one repetition, no timing assertions): they must not rot."""
import json
import sys

import numpy as np
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import (common, discrepancy, native_peer, population_vs_one_by_one,  # noqa: E402
                        random_landscape, reproduce_quick, train_engine, train_population)
from rnnlab import bench  # noqa: E402


def _check(res, workload, n_cases, keys):
    assert res["workload"] == workload
    assert len(res["cases"]) == n_cases
    for c in res["cases"]:
        for k in keys:
            assert k in c, k
    common.print_result(res)          # the table renders
    json.dumps(res, default=common._json_default)


def test_train_population_runs():
    res = train_population.run(isolate=False, memory=False, sizes=[[2, 2]], models=3, n_train=64, reps=1)
    _check(res, "train_population", 1, ["rnnlab_epoch_s", "torch_model_epoch_s", "ratio", "compile_s",
                                        "torch_func_epoch_s", "ratio_func"])
    assert res["cases"][0]["ratio"] > 0


def test_train_engine_runs_old_and_new():
    res = train_engine.run(isolate=False, cells=["gru"], hiddens=[2], models=3, n_train=64, reps=1)
    _check(res, "train_engine", 2, ["ratio", "frac_peak", "met"])
    case = res["cases"][0]
    assert case["kernel_new"] == "lanes" and case["old_s"] > 0 and case["new_s"] > 0
    assert 0 < case["frac_peak"] < 1 and case["gflops"] > 0 and case["peak_gflops"] > 0
    assert "train_engine" in bench.WORKLOADS
    assert case["old_val_s"] > 0 and case["new_val_s"] > 0
    assert case["ratio_epval"] == pytest.approx((case["old_s"] + case["old_val_s"]) / (case["new_s"] + case["new_val_s"]))
    rows = bench.targets({"workloads": [res]})
    assert [(r["case"], r["measure"]) for r in rows[:3]] == [(case["case"], "ratio"), (case["case"], "ratio ep+val"),
                                                             (case["case"], "of peak")]
    assert rows[0]["value"] == case["ratio"] and rows[0]["target"] == 5.0 and rows[2]["target"] == 0.25
    assert rows[1]["value"] == case["ratio_epval"] and rows[1]["target"] == 5.0
    assert rows[2]["met"] is False                     # a population of 3 tiny models is far from the peak


@pytest.mark.parametrize("cell", ["gru", "rnn-tanh"])
def test_torch_func_peer_computes_each_models_own_gradient(cell):
    """The torch.func peer is a real population trainer: its vmapped gradient of model i equals
    plain autograd of model i alone, and an epoch changes every model's parameters."""
    import torch
    f = train_population.TorchFuncEpoch(cell, 3, 4, 3, train_population._data(64))
    x, y = f.X[:8].expand(3, -1, -1), f.Y[:8].expand(3, -1)
    g = f.grads(f.params, x, y)
    one = {k: v[1].detach().clone().requires_grad_(True) for k, v in f.params.items()}
    f._loss(one, x[1], y[1]).backward()
    for k in one:
        torch.testing.assert_close(g[k][1], one[k].grad, rtol=1e-5, atol=1e-6)
    before = {k: v.detach().clone() for k, v in f.params.items()}
    f(1)
    assert all((f.params[k] - before[k]).abs().flatten(1).amax(1).min() > 0 for k in before)


def test_population_vs_one_by_one_runs_and_models_agree():
    res = population_vs_one_by_one.run(isolate=False, inits=3, epochs=1, n_train=64, reps=1)
    _check(res, "population_vs_one_by_one", 1, ["population_s", "one_by_one_s", "ratio"])
    assert res["cases"][0]["max_best_acc_diff"] < 1e-5     # the same models either way


@pytest.fixture(scope="module")
def disc():
    return discrepancy.run(isolate=False, memory=False, lmax=4, kmax=3, draws=8, slice_ks=[1, 3],
                           slice_draws=2, reps=1)


def test_discrepancy_runs_and_baseline_agrees_in_shape(disc):
    _check(disc, "discrepancy", 3, ["rnnlab_s", "numpy_est_s", "ratio", "numpy_vec_s", "ratio_vec"])
    d = discrepancy.numpy_loop("gru-s", 4, [1, 3], 2)
    assert d.shape == (2, 2, 4) and (d[:, :, 0] > 0).all()
    last = discrepancy.numpy_loop("gru-s", 4, [1, 3], 2, record_all=False)     # same draws, only l = 4
    np.testing.assert_array_equal(last[..., 3], d[..., 3])
    assert (last[..., :3] == 0).all()


@pytest.mark.parametrize("cell", ["rnn-sigmoid", "gru-s"])
def test_vectorised_numpy_peer_equals_the_loop(cell):
    """The strong peer computes what the per-draw loop computes, given the loop's parameters."""
    ks, draws, g = [1, 3], 3, 1 if cell == "rnn-sigmoid" else 3
    rng, params = np.random.default_rng(0), {}
    for k in ks:                                   # the loop's draw order: per k, per draw, U then W
        uw = [(rng.standard_normal((g * k, 2)), rng.standard_normal((g * k, k))) for _ in range(draws)]
        params[k] = (np.stack([u for u, _ in uw]), np.stack([w for _, w in uw]))
    np.testing.assert_allclose(discrepancy.numpy_vectorized(cell, 5, ks, draws, params=params),
                               discrepancy.numpy_loop(cell, 5, ks, draws), rtol=1e-12, atol=1e-14)


def test_random_landscape_runs():
    res = random_landscape.run(isolate=False, memory=False, cells=["rnn-tanh"], sizes=[[2, 2]], draws=64,
                               torch_draws=2, n_val=100, reps=1)
    total = res["cases"].pop()                      # the last row sums the paper-scale times
    _check(res, "random_landscape", 1, ["rnnlab_models_s", "torch_models_s", "frac_peak", "mflop_per_model",
                                        "paper_s", "paper_floor_s"])
    case = res["cases"][0]
    assert case["mflop_per_model"] > 0
    assert case["paper_s"] == random_landscape.paper_draws() / max(case["rnnlab_models_s"], case["pinned_models_s"] or 0)
    assert total["case"] == "sum over 1 cases" and "met" not in total
    assert (total["paper_s"], total["paper_floor_s"]) == (case["paper_s"], case["paper_floor_s"]) and total["paper_floor_s"] > 0


def test_reproduce_is_skipped_in_quick_mode():
    res = reproduce_quick.run(quick=True)
    assert res["cases"] == [] and "skipped" in res["notes"][0]


def test_child_process_reports_peak_memory():
    r = common.run_child("discrepancy", "baseline_once", {"cells": ["rnn-sigmoid"], "lmax": 3, "kmax": 2,
                                                          "slice_draws": 1})
    assert r["peak_rss_mb"] > 1


def test_summary_collects_targets(tmp_path, monkeypatch, disc):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    s = bench.run_all(True, workloads=("reproduce_quick",))
    assert not any(w.get("error") for w in s["workloads"]) and s["targets"] == []
    s["workloads"].append(disc)
    rows = bench.targets(s)
    assert [t["workload"] for t in rows] == ["discrepancy"] * 7               # 2 cells x 2 + the grid x 3
    assert [t["measure"] for t in rows] == ["ratio", "ratio vec"] * 3 + ["wall s"]
    grid = disc["cases"][-1]
    assert rows[-2]["value"] == grid["ratio_vec"] and rows[-2]["met"] == (grid["ratio_vec"] >= 10.0)
    path = common.save(s)
    assert path.parent == tmp_path and json.loads(path.read_text())["quick"] is True


@pytest.mark.parametrize("x,out", [(1234.5, "1,234"), (0.01234, "0.0123"), (True, "yes"), (None, "-")])
def test_fmt(x, out):
    assert common.fmt(x) == out


# ----------------------------------------------------------------------------- the fast paths they measure


def _small_population(cell="gru", m=5):
    import numpy as np
    from rnnlab import tasks
    from rnnlab.engine.model import ModelSpec
    from rnnlab.engine.population import make_population
    spec = ModelSpec(cell=cell, dtype="float64")
    data = tasks.splits("first", 0, {"train": 64, "val": 48, "test": 16})
    return spec, make_population(spec, [2, 3, 2, 4, 3][:m], [3, 2, 4, 2, 3][:m], np.arange(m)), data


def test_sharded_evaluation_equals_one_computation():
    """Shards (with padding: 5 models in 2 shards) change nothing for any model (training
    shards: tests/test_population.py's 64-model population runs in shards on a multi-core CPU)."""
    import jax.numpy as jnp
    import numpy as np
    from rnnlab.engine.train import device_data, run_evaluate, sharded
    spec, pop, data = _small_population()
    dev = device_data(data["val"], spec.jdtype)
    one = run_evaluate(spec, "xent", pop.hmax, pop.params, pop.mask, dev, shards=1)
    two = run_evaluate(spec, "xent", pop.hmax, pop.params, pop.mask, dev, shards=2)
    for a, b in zip(one, two):
        assert a.shape == b.shape == (5,)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    # padding copies the last model, except for the `inactive` argument (padded with False)
    seen = []
    out = sharded(lambda x, a: (seen.append((np.asarray(x), np.asarray(a))), (x * 2, a))[1], 5, 2,
                  (("m", jnp.arange(5.0)), ("m", jnp.ones(5, bool))), inactive=1)
    assert sorted(len(x) for x, _ in seen) == [3, 3]
    assert np.asarray(out[0]).tolist() == [0, 2, 4, 6, 8] and np.asarray(out[1]).all()
    assert sum(int((~a).sum()) for _, a in seen) == 1


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn-sigmoid"])
def test_static_hints_do_not_change_evaluation(cell):
    """Reading out only the scored positions and skipping the length select are exact."""
    import numpy as np
    from rnnlab.engine import model as mdl
    from rnnlab.engine.population import evaluate
    from rnnlab.engine.train import device_data
    spec, pop, data = _small_population(cell)
    dev = device_data(data["val"], spec.jdtype)
    plain = evaluate(spec, "xent", pop.hmax, pop.params, pop.mask, dev)
    hinted = evaluate(spec, "xent", pop.hmax, pop.params, pop.mask, dev,
                      positions=mdl.scored_positions(data["val"].target_mask),
                      full_length=mdl.full_length(data["val"].tokens, data["val"].lengths))
    for a, b in zip(plain, hinted):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["rnn-tanh", "gru", "rnn-sigmoid", "gru-s", "lstm"])
def test_split_cells_equal_their_step(name):
    import jax.numpy as jnp
    import numpy as np
    from rnnlab import cells
    c = cells.get(name)
    assert c.split
    rng = np.random.default_rng(0)
    p = {k: jnp.asarray(rng.normal(size=s)) for k, s in c.shapes(3, 4).items()}
    s = jnp.asarray(rng.normal(size=(c.state_mult * 4,)))
    x = jnp.asarray(rng.normal(size=(3,)))
    np.testing.assert_array_equal(np.asarray(c.step(p, s, x)), np.asarray(c.step_proj(p, s, c.input_proj(p, x))))


@pytest.mark.skipif(native_peer.why_not() is not None, reason=f"native peer: {native_peer.why_not()}")
def test_native_peer_computes_what_the_engine_computes_and_runs():
    """The C epoch the bench compares against is the engine's computation: one batch's gradient
    equals JAX autodiff of rnnlab's model, and a 2-batch epoch ends at the lane epoch's parameters
    (a sign flipped in its backward pass gives 0.18 and 4e-3)."""
    res = native_peer.run(isolate=False, models=16, n_train=64, reps=1)
    _check(res, "native_peer", 1, ["old_s", "new_s", "native_s", "ratio_old", "ratio_new", "native_frac_peak"])
    c = res["cases"][0]
    assert c["check_batches"] == 2 and c["check_models"] == 16
    assert c["grad_rel_err"] < 1e-5, c
    assert c["params_max_diff"] < 1e-5, c          # one Adam step moves a parameter by up to 1e-3
    assert "met" not in c                           # the targets are the engine's, not the C epoch's
    assert "native_peer" in bench.WORKLOADS


def test_native_peer_rejects_what_it_cannot_train():
    class Data:
        tokens = np.zeros((40, 10), np.int32)          # not a whole number of batches of 32
        targets = np.zeros((40, 10), np.int32)
    with pytest.raises(ValueError, match="whole number of batches"):
        native_peer._check_data(Data)
