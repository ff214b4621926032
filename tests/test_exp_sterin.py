"""Sterin et al. experiments: reber, embedded-reber, gradient-distribution, discrepancy.

Each runs end to end at scale "tiny" into one folder (gradient-distribution must reuse the
populations embedded-reber trained, without recomputing a shard); outputs are checked, and
every claims() is fed a deliberately broken table and must say "fails".
"""
import json

import numpy as np
import pandas as pd
import pytest

import rnnlab.experiments as E
from rnnlab.analysis.claims import VERDICTS
from rnnlab.errors import ConfigError
from rnnlab.experiments import discrepancy as disc
from rnnlab.experiments import embedded_reber, gradient_distribution, reber

ORDER = ["reber", "embedded-reber", "gradient-distribution", "discrepancy"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sterin")
    return out, {n: E.run(n, scale="tiny", out=out, progress=False) for n in ORDER}


def _check(res, tables: dict, figs: list):
    for name, cols in tables.items():
        df = res.tables[name]
        assert len(df) > 0, name
        assert set(cols) <= set(df.columns), (name, set(cols) - set(df.columns))
        assert (res.out_dir / f"{name}.parquet").exists()
    for f in figs:
        for ext in ("png", "svg"):
            p = res.out_dir / f"{f}.{ext}"
            assert p.exists() and p.stat().st_size > 1000, p
    claims = json.loads((res.out_dir / "claims.json").read_text())
    assert claims and len(claims) == len(res.claims)
    for c in claims:
        assert c["verdict"] in VERDICTS
        assert {"id", "text", "statistic", "value", "interval", "details"} <= set(c)
    cfg = json.loads((res.out_dir / "config.json").read_text())
    assert cfg["config"]["scale"] == "tiny" and cfg["choices"] and cfg["paper"] == "sterin"
    return claims


def test_registered_in_order():
    names = E.names("sterin")
    assert [n for n in names if n in ORDER] == ORDER


def test_reber_tiny(results):
    _, r = results
    res = r["reber"]
    cfg = res.config
    claims = _check(res, {"summary": ["cell", "seed", "hidden", "n_params", "best_val_acc", "test_acc", "success"],
                          "curves": ["model", "epoch", "loss", "val_acc", "cell"],
                          "heatmap": ["cell", "model", "string", "pos", "symbol", "state", "layer", "unit", "value"],
                          "success": ["cell", "n", "successes", "rate", "lo", "hi"]},
                    ["outputs_rnn-sigmoid", "hidden_rnn-sigmoid", "valid_rate"])
    s = res.tables["summary"]
    assert len(s) == cfg["inits"] and set(s.hidden) == {5} and set(s.n_params) == {5 * 7 + 25 + 7 * 5}
    h = res.tables["heatmap"]
    out = h[h.layer == "output"]
    # softmax rows sum to one; prefixes carry the automaton state they lead to
    sums = out.groupby(["model", "string_id", "pos"]).value.sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-6)
    first = out[(out.pos == 0)]
    assert set(first.symbol) == {"B"} and set(first.state) == {"q0"}
    assert set(h[h.layer == "hidden"].unit) == {str(u) for u in range(5)}
    assert [c["id"] for c in claims] == ["reber-learned[rnn-sigmoid]"]


def test_embedded_reber_tiny(results):
    _, r = results
    res = r["embedded-reber"]
    _check(res, {"summary": ["cell", "seed", "hidden", "n_params", "long_term_val", "long_term_test", "success"],
                 "heatmap": ["cell", "model", "string", "pos", "state", "layer", "unit", "value"],
                 "success": ["cell", "rate", "lo", "hi"]},
           ["outputs_rnn-sigmoid", "outputs_gru-s", "hidden_rnn-sigmoid", "hidden_gru-s", "long_term", "curves"])
    s = res.tables["summary"]
    n = s.groupby("cell").n_params.first().to_dict()
    assert n == {"rnn-sigmoid": 18 * 7 + 18 * 18 + 7 * 18, "gru-s": 30 * 7 + 30 * 10 + 7 * 10}
    assert s.long_term_test.between(0, 1).all() and s.long_term_val.between(0, 1).all()
    assert set(res.tables["heatmap"].state) >= {"q0", "T/start", "P/start", "T/done", "P/done", "end"}
    assert res.claims[0].id == "long-term[gru-s vs rnn-sigmoid]"


def test_gradient_distribution_reuses_the_embedded_reber_models(results):
    _, r = results
    res = r["gradient-distribution"]
    assert res.shards_computed == 0 and res.shards_reused == 2
    _check(res, {"hist": ["cell", "stage", "range_id", "bin_left", "bin_right", "count", "frac"],
                 "quantiles": ["cell", "stage", "q", "value"], "ecdf": ["cell", "stage", "model", "x", "F"],
                 "models": ["cell", "stage", "model", "median", "max"],
                 "distance": ["stage", "cell", "vanilla", "ks", "median_ratio"]},
           ["histograms_trained", "ecdf"])
    h = res.tables["hist"]
    assert sorted(h.range_id.unique()) == [0, 1, 2, 3]
    assert h.groupby(["cell", "stage", "range_id"]).size().eq(res.config["bins"]).all()
    # every coefficient of every model and training string is counted (range [0, 4] may miss the tail)
    emb = r["embedded-reber"].tables["summary"]
    n_train = res.config["data_sizes"]["train"]
    m = res.tables["models"]
    for cell, k in emb.groupby("cell").n_params.first().items():
        assert set(m[m.cell == cell].n) == {k * n_train}
    d = res.tables["distance"]
    assert d.ks.between(0, 1).all() and len(d) == 2
    assert {c.id for c in res.claims} == {"gradients-similar[gru-s vs rnn-sigmoid, trained]",
                                          "gradients-similar[gru-s vs rnn-sigmoid, init]"}


def test_discrepancy_tiny(results):
    _, r = results
    res = r["discrepancy"]
    cfg = res.config
    _check(res, {"D": ["cell", "init", "l", "k", "D", "se"],
                 "endpoints": ["cell", "init", "draw", "k", "d_first", "d_last"],
                 "timing": ["cell", "init", "compile_s", "run_s"]},
           ["surfaces", "heatmaps", "decay"])
    D = res.tables["D"]
    n_cells, n_schemes = len(cfg["cells"]), len(cfg["init_schemes"])
    assert len(D) == n_cells * n_schemes * cfg["max_length"] * cfg["max_hidden"]
    assert (D[D.l == 1].D > 0).all()
    assert len(res.tables["endpoints"]) == n_cells * n_schemes * cfg["draws"] * cfg["max_hidden"]
    assert len(res.claims) == 3 * n_schemes


def test_rerun_reuses_the_finished_run(results):
    out, r = results
    again = E.run("discrepancy", scale="tiny", out=out, progress=False)
    assert again.reused and again.run_id == r["discrepancy"].run_id


# ----------------------------------------------------------------------------- broken input -> fails


def test_reber_claim_fails_when_no_seed_learns():
    cfg = reber.default_config("tiny")
    summary = pd.DataFrame({"cell": "rnn-sigmoid", "hidden": 5, "test_acc": np.full(40, 0.6)})
    (c,) = reber.claims({"summary": summary}, cfg)
    assert c.verdict == "fails" and c.value == 0.0       # 0 of 40: the rate is shown below 0.1
    (c,) = reber.claims({"summary": summary.iloc[:12]}, cfg)
    assert c.verdict == "inconclusive" and c.details["n_to_decide"] > 12


def test_embedded_claim_fails_when_the_vanilla_rnn_also_succeeds():
    cfg = embedded_reber.default_config("tiny")
    summary = pd.DataFrame({"cell": ["rnn-sigmoid"] * 12 + ["gru-s"] * 12,
                            "long_term_test": np.r_[np.ones(12), np.ones(12)]})
    (c,) = embedded_reber.claims({"summary": summary}, cfg)
    assert c.verdict == "fails"
    summary["long_term_test"] = np.r_[np.full(12, 0.5), np.ones(12)]     # the paper's picture
    (c,) = embedded_reber.claims({"summary": summary}, cfg)
    assert c.verdict == "holds" and c.value == 1.0


def _grad_tables(vanished: bool):
    rng = np.random.default_rng(0)
    rows = []
    for cell in ("rnn-sigmoid", "gru-s"):
        for stage in ("trained", "init"):
            for m in range(6):
                shift = -5.0 if (cell == "rnn-sigmoid" and vanished) else 0.0   # 5 decades smaller: vanished
                q = 10.0 ** (np.array([-6.0, -3.0, -1.0]) + shift + 0.1 * rng.standard_normal(3))
                rows.append({"cell": cell, "stage": stage, "model": m, "diverged": False,
                             "q01": q[0], "median": q[1], "q99": q[2]})
    dist = pd.DataFrame({"stage": ["trained", "init"], "cell": "gru-s", "vanilla": "rnn-sigmoid",
                         "ks": 0.5 if vanished else 0.0, "median_ratio": 1.0})
    return {"models": pd.DataFrame(rows), "distance": dist}


def test_gradient_claim_fails_when_the_vanilla_gradients_vanish():
    cfg = gradient_distribution.default_config("tiny")
    claims = gradient_distribution.claims(_grad_tables(True), cfg)
    assert [c.verdict for c in claims] == ["fails", "fails"]
    claims = gradient_distribution.claims(_grad_tables(False), cfg)
    assert [c.verdict for c in claims] == ["holds", "holds"]


def _endpoints(vanilla_decays: bool, gated_decays: bool, draws=50, K=3):
    rng = np.random.default_rng(0)
    rows = []
    for cell, decays in (("rnn-sigmoid", vanilla_decays), ("gru-s", gated_decays)):
        first = rng.uniform(0.5, 1.0, (draws, K))
        mid = first * (1e-3 if decays else 0.6) * rng.uniform(0.9, 1.1, (draws, K))
        last = first * (1e-6 if decays else 0.5) * rng.uniform(0.9, 1.1, (draws, K))
        d, k = np.meshgrid(np.arange(draws), np.arange(1, K + 1), indexing="ij")
        rows.append(pd.DataFrame({"cell": cell, "init": "normal", "draw": d.ravel(), "k": k.ravel(),
                                  "d_first": first.ravel(), "d_mid": mid.ravel(), "d_last": last.ravel()}))
    ends = pd.concat(rows, ignore_index=True)
    D = pd.DataFrame({"cell": ["rnn-sigmoid"], "init": ["normal"], "l": [6], "k": [1], "D": [1.0]})
    return {"endpoints": ends, "D": D}


def test_discrepancy_claims_fail_on_the_opposite_picture():
    cfg = dict(disc.default_config("tiny"), init_schemes=["normal"])
    verdicts = [c.verdict for c in disc.claims(_endpoints(False, True), cfg)]
    assert verdicts == ["fails", "fails", "fails"]
    verdicts = [c.verdict for c in disc.claims(_endpoints(True, False), cfg)]
    assert verdicts == ["holds", "holds", "holds"]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("name,cfg,field", [
    ("reber", {"nope": 1}, "nope"),
    ("reber", {"strings": ["BTSE"]}, "strings"),
    ("reber", {"cells": ["nope"]}, "cell"),
    ("reber", {"lr": -1.0}, "lr"),
    ("reber", {"optimizer": "rmsprop"}, "optimizer"),
    ("embedded-reber", {"cells": ["gru-s"]}, "cells"),
    ("embedded-reber", {"init_scheme": "he"}, "init_scheme"),
    ("gradient-distribution", {"ranges": [[1.0, 0.5]]}, "ranges"),
    ("discrepancy", {"init_schemes": ["he"]}, "init_schemes"),
    ("discrepancy", {"k_min": 9}, "k_min"),
])
def test_bad_config_names_the_field(name, cfg, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        E.resolve_config(E.get(name), "tiny", cfg)


def test_other_cells_get_a_matching_parameter_budget():
    cfg = E.resolve_config(E.get("embedded-reber"), "tiny", {"cells": ["rnn-tanh", "lstm", "gru"]})
    for cell in cfg["cells"]:
        shard = reber.training_shard(cfg, cell, "embedded-reber")
        k = shard["sizes"][0][1]
        from rnnlab.experiments.common import model_spec
        n = model_spec("embedded-reber", cell, "normal", bias=False).n_params(7, k)
        assert abs(n - cfg["param_budget"]) < 0.15 * cfg["param_budget"], (cell, k, n)
