"""The benchmark scripts run (tiny sizes, one repetition, no timing assertions): they must not rot."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import common, discrepancy, random_landscape, reproduce_quick, train_population  # noqa: E402
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
    _check(res, "train_population", 1, ["rnnlab_epoch_s", "torch_model_epoch_s", "ratio", "compile_s"])
    assert res["cases"][0]["ratio"] > 0


@pytest.fixture(scope="module")
def disc():
    return discrepancy.run(isolate=False, memory=False, lmax=4, kmax=3, draws=8, slice_ks=[1, 3],
                           slice_draws=2, reps=1)


def test_discrepancy_runs_and_baseline_agrees_in_shape(disc):
    _check(disc, "discrepancy", 3, ["rnnlab_s", "numpy_est_s", "ratio"])
    d = discrepancy.numpy_loop("gru-s", 4, [1, 3], 2)
    assert d.shape == (2, 2, 4) and (d[:, :, 0] > 0).all()


def test_random_landscape_runs():
    res = random_landscape.run(isolate=False, memory=False, cells=["rnn-tanh"], sizes=[[2, 2]], draws=64,
                               torch_draws=2, n_val=100, reps=1)
    _check(res, "random_landscape", 1, ["rnnlab_models_s", "torch_models_s", "frac_peak", "mflop_per_model"])
    assert res["cases"][0]["mflop_per_model"] > 0


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
    assert [t["workload"] for t in bench.targets(s)] == ["discrepancy"] * 3
    path = common.save(s)
    assert path.parent == tmp_path and json.loads(path.read_text())["quick"] is True


@pytest.mark.parametrize("x,out", [(1234.5, "1,234"), (0.01234, "0.0123"), (True, "yes"), (None, "-")])
def test_fmt(x, out):
    assert common.fmt(x) == out
