"""Beyond the papers: the fixed-point finder, the fixed-points and capacity-bits experiments."""
import json

import numpy as np
import pandas as pd
import pytest

import rnnlab  # noqa: F401
from rnnlab import experiments, tasks
from rnnlab.analysis.fixed_points import find_fixed_points, find_fixed_points_batch
from rnnlab.cells.base import Cell, Param
from rnnlab.experiments import capacity_bits, fixed_points


def _tanh_1d(w):
    """rnn-tanh with one unit, no input weight, no bias: F(h) = tanh(w h)."""
    z = np.zeros((1,))
    return {"W_ih": np.zeros((1, 1)), "W_hh": np.array([[w]]), "b_ih": z, "b_hh": z}


STARTS_1D = np.linspace(-2.0, 2.0, 41)[:, None]


def test_tanh_contraction_has_the_single_stable_point_zero():
    df = find_fixed_points("rnn-tanh", _tanh_1d(0.5), np.zeros(1), STARTS_1D, steps=100)
    fixed = df[df["kind"] == "fixed"]
    assert len(fixed) == 1
    row = fixed.iloc[0]
    assert abs(row["state"][0]) < 1e-8
    assert row["stability"] == "stable"
    assert row["max_abs_eig"] == pytest.approx(0.5, abs=1e-8)
    assert row["n_hits"] == len(STARTS_1D)
    assert row["residual"] < 1e-8


def test_tanh_with_gain_two_has_three_points_zero_unstable():
    w = 2.0
    df = find_fixed_points("rnn-tanh", _tanh_1d(w), np.zeros(1), STARTS_1D, steps=100)
    fixed = df[df["kind"] == "fixed"].assign(h=lambda d: [s[0] for s in d["state"]]).sort_values("h")
    assert len(fixed) == 3
    # h* solves h = tanh(2 h) (bisection), eigenvalue w (1 - h*^2)
    lo, hi = 0.5, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.tanh(w * mid) > mid else (lo, mid)
    hstar = 0.5 * (lo + hi)
    np.testing.assert_allclose(fixed["h"].to_numpy(), [-hstar, 0.0, hstar], atol=1e-8)
    assert fixed["stability"].tolist() == ["stable", "unstable", "stable"]
    np.testing.assert_allclose(fixed["max_abs_eig"].to_numpy(),
                               [w * (1 - hstar ** 2), w, w * (1 - hstar ** 2)], atol=1e-8)
    assert (fixed["residual"] < 1e-10).all()


def test_linear_map_saddle_and_region_filter():
    """F(h) = A h + b: one fixed point (I - A)^-1 b with A's eigenvalues; a saddle here."""
    a = np.array([[0.5, 0.2], [0.0, 1.5]])
    b = np.array([0.3, -0.4])
    lin = Cell("linear-test", 1, {"A": Param(("h", "h"), "w_rec"), "b": Param(("h",), "bias")},
               lambda p, h, x: p["A"] @ h + p["b"] + x)
    starts = np.random.default_rng(0).normal(size=(16, 2))
    p = {"A": a, "b": b}
    # batch API, B = 2 identical problems (one compile serves both calls below)
    pb = {k: np.stack([v, v]) for k, v in p.items()}
    args = (lin, pb, np.zeros((2, 2)), np.stack([starts, starts]))
    df = find_fixed_points_batch(*args, steps=50, newton_steps=5)
    assert df["problem"].tolist() == [0, 1] and (df["kind"] == "fixed").all()
    for _, row in df.iterrows():
        np.testing.assert_allclose(row["state"], np.linalg.solve(np.eye(2) - a, b), atol=1e-10)
        assert row["stability"] == "unstable" and row["n_hits"] == len(starts)
        np.testing.assert_allclose(sorted(row["eig_re"]), [0.5, 1.5], atol=1e-10)
    # a region that excludes the point drops it
    region = np.stack([np.array([[5.0, 5.0], [6.0, 6.0]])] * 2)
    assert find_fixed_points_batch(*args, steps=50, newton_steps=5, region=region).empty


def _check_outputs(res, tables, figs):
    for t, cols in tables.items():
        assert t in res.tables
        assert set(cols) <= set(res.tables[t].columns), (t, set(cols) - set(res.tables[t].columns))
        assert (res.out_dir / f"{t}.parquet").exists()
    for f in figs:
        assert (res.out_dir / f"{f}.png").exists() and (res.out_dir / f"{f}.svg").exists()
    claims = json.loads((res.out_dir / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c.id for c in res.claims]
    for c in claims:
        assert c["verdict"] in ("holds", "fails", "inconclusive") and c["text"] and c["statistic"]
    return {c["id"]: c for c in claims}


def test_fixed_points_end_to_end_tiny(tmp_path):
    res = experiments.run("fixed-points", scale="tiny", out=tmp_path, progress=False)
    cfg = res.config
    claims = _check_outputs(
        res, {"points": ["cell", "model", "input_word", "h1", "h2", "q", "kind", "max_abs_eig",
                         "stability", "residual", "readout_class"],
              "trajectories": ["cell", "model", "seq", "t", "h1", "h2"],
              "models": ["cell", "model", "best_val_acc", "best"]},
        ["fixed_points", "eigenvalues"])
    pts, models = res.tables["points"], res.tables["models"]
    assert len(models) == len(cfg["cells"]) * cfg["inits"]
    assert models.groupby("cell")["best"].sum().eq(1).all()
    assert set(pts["cell"]) == set(cfg["cells"])
    assert set(pts["input_word"]) <= {str(w) for w in cfg["input_words"]}
    # the sanity claim is computed and holds: every fixed point is fixed, every problem has one
    assert claims["fixed-points-are-fixed"]["verdict"] == "holds"
    fixed = pts[pts["kind"] == "fixed"]
    assert (fixed["residual"] < np.sqrt(2 * cfg["fixed_tol"])).all()
    assert "two-attractor-classes" in claims
    # trajectories: n_trajectories sequences + 2 probes per model
    per_model = res.tables["trajectories"].groupby(["cell", "model"])["seq"].nunique()
    assert (per_model == cfg["n_trajectories"] + 2).all()


def _fp_tables(gru_classes, rnn_classes, residual=1e-12):
    """Synthetic tables: each model gets stable fixed points of the given readout classes."""
    models, pts = [], []
    for cell, per_model in (("gru", gru_classes), ("rnn-tanh", rnn_classes)):
        for i, classes in enumerate(per_model):
            models.append({"cell": cell, "model": i, "best_val_acc": 0.99, "best": i == 0})
            for k, cls in enumerate(classes):
                pts.append({"cell": cell, "model": i, "input_word": "0", "kind": "fixed",
                            "stability": "stable", "readout_class": cls, "residual": residual,
                            "h1": float(k), "h2": 0.0, "q": 0.0, "max_abs_eig": 0.5})
    return {"models": pd.DataFrame(models), "points": pd.DataFrame(pts)}


def test_fixed_points_claims_fail_on_broken_tables():
    cfg = fixed_points.default_config("tiny")
    cfg.update(cells=["rnn-tanh", "gru"], inits=3, input_words=["0"])
    good = _fp_tables([[0, 1]] * 3, [[0]] * 3)
    verdicts = {c.id: c.verdict for c in fixed_points.claims(good, cfg)}
    assert verdicts == {"fixed-points-are-fixed": "holds", "two-attractor-classes": "holds"}
    # GRUs with one attractor class, RNNs bistable: the memory claim fails
    c = {c.id: c for c in fixed_points.claims(_fp_tables([[0]] * 3, [[0, 1]] * 3), cfg)}
    assert c["two-attractor-classes"].verdict == "fails"
    # a "fixed point" that is not fixed, and a model without any fixed point: the sanity claim fails
    broken = _fp_tables([[0, 1]] * 3, [[0]] * 3, residual=1e-3)
    assert {c.id: c.verdict for c in fixed_points.claims(broken, cfg)}["fixed-points-are-fixed"] == "fails"
    missing = _fp_tables([[0, 1]] * 3, [[0]] * 3)
    missing["points"] = missing["points"][missing["points"]["model"] != 2]
    c = {c.id: c for c in fixed_points.claims(missing, cfg)}["fixed-points-are-fixed"]
    assert c.verdict == "fails" and c.value >= 2


def test_random_label_data_and_bits():
    pool = tasks.splits("first", 0, {"train": 64})["train"]
    d = capacity_bits.random_label_data(pool, 16, 0, 64)
    assert len(d) == 64 and d.meta["repeats"] == 4
    assert d.labels[:16].sum() == 8                                   # balanced
    np.testing.assert_array_equal(d.tokens[:16], pool.tokens[:16])    # inputs untouched
    np.testing.assert_array_equal(d.tokens[16:32], pool.tokens[:16])
    last = d.lengths - 1
    np.testing.assert_array_equal(d.targets[np.arange(64), last], d.labels)
    assert d.accept[np.arange(64), last, d.labels].all() and d.accept.sum() == 64
    np.testing.assert_array_equal(capacity_bits.random_label_data(pool, 16, 0, 64).labels, d.labels)
    np.testing.assert_allclose(capacity_bits.bits_memorised([100, 100, 100], [1.0, 0.5, 0.0]), [100, 0, 100])
    assert capacity_bits.bits_memorised(100, 0.89) == pytest.approx(100 * (1 - 0.4999157), abs=1e-4)


def test_capacity_bits_end_to_end_tiny(tmp_path):
    res = experiments.run("capacity-bits", scale="tiny", out=tmp_path, progress=False)
    cfg = res.config
    claims = _check_outputs(
        res, {"capacity": ["cell", "hidden", "n_params", "n_examples", "train_acc", "bits",
                           "bits_per_param", "capacity"]}, ["capacity", "accuracy_vs_n"])
    cap = res.tables["capacity"]
    assert len(cap) == len(cfg["cells"]) * len(cfg["hiddens"]) * cfg["inits"] * len(cfg["n_examples"])
    np.testing.assert_allclose(cap["bits"], capacity_bits.bits_memorised(cap["n_examples"], cap["train_acc"]))
    np.testing.assert_allclose(cap["bits_per_param"], cap["bits"] / cap["n_params"])
    assert cap.groupby(["cell", "hidden"])["capacity"].sum().eq(1).all()
    assert "bits-per-param-comparable" in claims


def test_capacity_bits_claim_fails_on_broken_table():
    cfg = capacity_bits.default_config("quick")
    rows = []
    for cell, bpp in (("rnn-tanh", 0.1), ("gru", 1.0), ("lstm", 0.9)):
        for h, n_params in ((2, 60), (4, 100), (8, 200)):
            rows.append({"cell": cell, "hidden": h, "n_params": n_params, "n_examples": 256,
                         "train_acc": 0.9, "bits": bpp * n_params, "bits_per_param": bpp})
    broken = pd.DataFrame(rows)
    (c,) = capacity_bits.claims({"capacity": broken}, cfg)
    assert c.verdict == "fails" and c.value == pytest.approx(np.log(10.0))     # |mean log ratio|
    ok = broken.assign(bits_per_param=lambda d: np.where(d["cell"] == "rnn-tanh", 0.8, d["bits_per_param"]))
    (c,) = capacity_bits.claims({"capacity": ok}, cfg)
    assert c.verdict == "holds"


def test_capacity_shards_per_n_and_size_equal_one_shard_for_everything():
    """At paper scale the experiment trains each (cell, N, group of hidden sizes) as its own
    population (a kill loses one population at most; a small model is not padded to the largest
    size); in float64 that gives the rows, seeds and model numbers of one population of every
    size trained on every N."""
    import pandas as pd
    from rnnlab.experiments import capacity_bits as cb
    assert cb.size_groups([2, 4, 8, 16]) == [[3], [2], [0, 1]] and cb.size_groups([4, 2]) == [[1, 0]]
    assert len(cb._shards(cb.default_config("quick"))) == 3 * 2           # (cell, N): sizes together
    cfg = dict(cb.default_config("tiny"), hiddens=[2, 6], size_groups=True)
    shards = [dict(s, dtype="float64") for s in cb._shards(cfg)]
    assert [(s["n_examples"], s["hiddens"], s["hidden_ids"]) for s in shards] == \
        [([64], [6], [1]), ([64], [2], [0]), ([32], [6], [1]), ([32], [2], [0])]
    assert all("hidden_ids" not in s for s in cb._shards(cb.default_config("quick")))     # as before
    assert all(s["nmax"] == 64 for s in shards)
    both = cb.capacity_shard(dict(shards[0], n_examples=[32, 64], hiddens=[2, 6], hidden_ids=[0, 1]))
    apart = [cb.capacity_shard(s) for s in shards]
    for t, keys in (("capacity", ["n_examples", "hidden", "init"]), ("curves", ["n_examples", "model", "epoch"])):
        a = both[t].sort_values(keys).reset_index(drop=True)
        b = pd.concat([x[t] for x in apart]).sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)
    assert sorted(both["curves"]["model"].unique()) == list(range(len(cfg["hiddens"]) * cfg["inits"]))


def test_gated_cells_end_to_end_tiny(tmp_path):
    """Every cell beyond the papers in one capacity-inits style comparison: one population per
    (task, cell), the same seeds for every cell, the configured lr actually used, claims for every
    cell against the first."""
    res = experiments.run("gated-cells", scale="tiny", out=tmp_path, progress=False, config={"lr": 0.02})
    cfg = res.config
    assert cfg["cells"] == ["rnn-tanh", "gru", "lstm", "ugrnn", "mingru"]
    claims = _check_outputs(res, {"accuracy": ["task", "cell", "input", "hidden", "init", "seed", "best_val_acc"]},
                            ["inits_first"])
    acc = res.tables["accuracy"]
    per_cell = len(cfg["inputs"]) * len(cfg["hiddens"]) * cfg["inits"]
    assert acc.groupby("cell").size().to_dict() == {c: per_cell for c in cfg["cells"]}
    assert acc.groupby("cell")["seed"].apply(lambda s: tuple(sorted(s))).nunique() == 1
    assert np.allclose(res.tables["curves"]["lr"].dropna().unique(), 0.02)
    for c in cfg["cells"][1:]:
        assert f"similar-capacity-first-4x4-{c}-vs-rnn-tanh" in claims
        assert f"more-good-inits-first-{c}-vs-rnn-tanh" in claims
    assert len(claims) == 2 * (len(cfg["cells"]) - 1)


def test_gated_cells_claims_fail_on_broken_table():
    from rnnlab.experiments import gated_cells
    cfg = gated_cells.default_config("tiny")
    cfg.update(scale="tiny", inits=140)
    rows = [{"task": "first", "cell": c, "input": 4, "hidden": 4, "init": i,
             "best_val_acc": 0.99 if c == "rnn-tanh" else 0.5}      # every gated init fails, every vanilla one works
            for c in cfg["cells"] for i in range(140)]
    out = {c.id: c for c in gated_cells.claims({"accuracy": pd.DataFrame(rows)}, cfg)}
    for c in cfg["cells"][1:]:
        assert out[f"more-good-inits-first-{c}-vs-rnn-tanh"].verdict == "fails"
        assert out[f"similar-capacity-first-4x4-{c}-vs-rnn-tanh"].verdict == "fails"   # < 1/30 in 140 inits


def test_gated_cells_rejects_a_bad_lr():
    from rnnlab.errors import ConfigError
    with pytest.raises(ConfigError, match="^lr:"):
        experiments.resolve_config(experiments.get("gated-cells"), "tiny", {"lr": -1.0})
