"""Mehta experiments, part B: random-landscape, update-cosine, perturbation (and the random-draw kernel).

Each experiment runs end to end at scale "tiny"; its claims() must say "fails" on a deliberately
broken table. The landscape kernel must reproduce, draw for draw, the accuracies that the
population code (engine.population.evaluate) measures for the same parameters, and its draws
must not depend on chunking.
"""
import json

import jax
import numpy as np
import pandas as pd
import pytest

import rnnlab.experiments as E
from rnnlab import tasks
from rnnlab.analysis import landscape as L
from rnnlab.analysis.claims import VERDICTS
from rnnlab.engine.model import ModelSpec, init_params_np
from rnnlab.engine.population import make_population, population_from_params
from rnnlab.errors import ConfigError
from rnnlab.experiments import perturbation, random_landscape, update_cosine
from rnnlab.experiments.common import model_spec

NAMES = ["random-landscape", "update-cosine", "perturbation"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mehta_b")
    return out, {n: E.run(n, scale="tiny", out=out, progress=False) for n in NAMES}


@pytest.fixture(scope="module")
def val_small():
    """Short sentences: the kernel compiles one block per word position."""
    return tasks.splits("first", 3, {"val": 120}, length=5)["val"]


def _check_outputs(res, tables: dict, figs: list):
    for name, cols in tables.items():
        assert name in res.tables, name
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
    assert cfg["config"]["scale"] == "tiny" and cfg["choices"]
    return claims


# ----------------------------------------------------------------------------- end to end


def test_random_landscape_tiny(results):
    _, r = results
    res = r["random-landscape"]
    cfg = res.config
    _check_outputs(res, {"histogram": ["cell", "input", "hidden", "correct", "accuracy", "count"],
                         "summary": ["cell", "input", "hidden", "n_draws", "mean", "q50", "q99", "max"],
                         "sample": ["cell", "input", "hidden", "draw", "accuracy"],
                         "trained": ["cell", "best_val_acc"],
                         "throughput": ["cell", "input", "hidden", "models_per_s", "models_per_cpu_s"]},
                   ["frequency", "frequency_overlay", "boxplot"])
    h = res.tables["histogram"]
    n_models = len(cfg["cells"]) * len(cfg["inputs"]) * len(cfg["hiddens"])
    counts = h.groupby(["cell", "input", "hidden"])["count"].sum()
    assert len(counts) == n_models and (counts == cfg["draws"]).all()
    assert h.accuracy.between(0, 1).all() and np.allclose(h.accuracy * cfg["n_val"], h.correct)
    s = res.tables["sample"]
    assert s.groupby(["cell", "input", "hidden"]).size().eq(cfg["sample"]).all()
    assert len(res.tables["trained"]) == len(cfg["cells"]) * cfg["trained_inits"]
    assert {c.id.split("-gru")[0] for c in res.claims} == {"random-distributions-close", "random-gap-small-vs-trained"}
    # the exact histogram agrees with the raw sample where they overlap
    one = s[(s.cell == "gru") & (s.input == 2) & (s.hidden == 2)]
    hh = h[(h.cell == "gru") & (h.input == 2) & (h.hidden == 2)].set_index("correct")["count"]
    assert all(hh.get(c, 0) >= n for c, n in one.correct.value_counts().items())


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_landscape_trains_the_same_populations_as_perturbation_by_default(scale):
    """At quick and paper scale random-landscape's trained populations are perturbation's base
    shards of batch 0, dict for dict (so a reproduction trains them once)."""
    from rnnlab.experiments.base import resolve_config
    rl = resolve_config(random_landscape, scale, {})
    pt = resolve_config(perturbation, scale, {})
    mine = random_landscape.trained_shards(rl)
    theirs = perturbation.base_shards(
        pt["cells"], seed=pt["seed"], task=pt["task"], init=pt["init_scheme"], size=pt["size"],
        data_sizes=pt["data_sizes"], lr=pt["lr"], inits=pt["base_inits"], epochs=pt["base_epochs"])
    assert mine == theirs


def test_landscape_reuses_perturbations_base_models(results, tmp_path):
    """random-landscape with perturbation's (tiny) training settings computes nothing: its draws
    are stored and its trained populations are perturbation's base shards; the models are the same."""
    from rnnlab.store import Store
    out, r = results
    pcfg = r["perturbation"].config
    res = E.run("random-landscape", {"lr": pcfg["lr"]}, scale="tiny", out=tmp_path, store=Store(out / "store"),
                progress=False)
    assert res.shards_computed == 0 and res.shards_reused > 2
    base = r["perturbation"].tables["base_inits"].sort_values(["cell", "seed"]).reset_index(drop=True)
    mine = res.tables["trained"].sort_values(["cell", "seed"]).reset_index(drop=True)
    pd.testing.assert_series_equal(mine.best_val_acc, base.best_val_acc)
    assert list(mine.seed) == list(base.seed)


def test_update_cosine_tiny(results):
    _, r = results
    res = r["update-cosine"]
    cfg = res.config
    _check_outputs(res, {"cosine": ["cell", "input", "hidden", "model", "epoch", "cosine", "qualified"],
                         "qualifying": ["cell", "size", "n_trained", "n_qualified"],
                         "models": ["cell", "model", "total_variation", "early_mean"]}, ["cosine"])
    q = res.tables["qualifying"]
    assert len(q) == len(cfg["cells"]) * len(cfg["sizes"]) and (q.n_trained == cfg["inits"]).all()
    c = res.tables["cosine"].cosine.dropna()
    assert len(c) and c.between(-1 - 1e-9, 1 + 1e-9).all()


def test_perturbation_tiny(results):
    _, r = results
    res = r["perturbation"]
    cfg = res.config
    _check_outputs(res, {"recovery": ["cell", "k", "rep", "epoch", "val_acc", "loss", "dist"],
                         "base": ["cell", "best_val_acc", "qualified", "val_acc", "val_loss"]}, ["recovery"])
    rec = res.tables["recovery"]
    assert len(rec) == len(cfg["cells"]) * len(cfg["ks"]) * cfg["reps"] * (cfg["retrain_epochs"] + 1)
    b = res.tables["base"].set_index("cell")
    assert np.allclose(b.val_acc, b.best_val_acc)          # W* is the best checkpoint
    d0 = rec[rec.epoch == 0].groupby("k").dist.mean()
    assert (d0.diff().dropna() > 0).all()                  # larger k, larger initial distance
    assert not b.qualified.any()                           # tiny: nothing reaches 98%...
    assert next(c for c in res.claims if c.id.startswith("recovers-better")).verdict == "inconclusive"


def test_rerun_reuses_the_finished_runs(results):
    out, r = results
    again = E.run("random-landscape", scale="tiny", out=out, progress=False)
    assert again.reused and again.run_id == r["random-landscape"].run_id


def test_three_cells_claims_and_figures(results):
    """Any cell list: claims and figures of every experiment with a third cell (its rows copied
    from the GRU's, so nothing is recomputed)."""
    _, r = results
    for name, mod in (("random-landscape", random_landscape), ("update-cosine", update_cosine),
                      ("perturbation", perturbation)):
        res = r[name]
        cfg = dict(res.config, cells=["rnn-tanh", "gru", "lstm"])
        t = {k: pd.concat([v, v[v.cell == "gru"].assign(cell="lstm")], ignore_index=True) if "cell" in v else v
             for k, v in res.tables.items()}
        cl = mod.claims(t, cfg)
        assert any("lstm" in c.id for c in cl) and all(c.verdict in VERDICTS for c in cl)
        figs = mod.figures(t, cfg)
        assert figs
        for f in figs.values():
            f.clf()


def test_bad_config(tmp_path):
    with pytest.raises(ConfigError):
        E.run("random-landscape", {"chunk": 0}, scale="tiny", out=tmp_path)
    with pytest.raises(ConfigError):
        E.run("random-landscape", {"cells": ["gru", "nope"]}, scale="tiny", out=tmp_path)
    with pytest.raises(ConfigError):
        E.run("perturbation", {"ks": [0.5, -1]}, scale="tiny", out=tmp_path)
    with pytest.raises(ConfigError):
        E.run("update-cosine", {"sizes": [[2, 4, 8]]}, scale="tiny", out=tmp_path)


# ----------------------------------------------------------------------------- broken tables -> fails


def test_landscape_claims_fail_on_broken_histogram(results):
    _, r = results
    res = r["random-landscape"]
    cfg = res.config
    h = res.tables["histogram"].copy()
    g = h.cell == "gru"                                     # every GRU draw at 90%: far from the RNN's
    h.loc[g, "correct"] = int(0.9 * cfg["n_val"])
    h = h.groupby(["cell", "input", "hidden", "correct"], as_index=False)["count"].sum()
    h["accuracy"] = h.correct / cfg["n_val"]
    t = dict(res.tables, histogram=h)
    t["trained"] = t["trained"].assign(best_val_acc=0.7)   # no trained gap either
    v = {c.id: c.verdict for c in random_landscape.claims(t, cfg)}
    assert v["random-distributions-close-gru-vs-rnn-tanh"] == "fails"
    assert v["random-gap-small-vs-trained-gru-vs-rnn-tanh"] == "fails"


def test_cosine_claims_fail_on_broken_table(results):
    _, r = results
    cfg = dict(r["update-cosine"].config)
    rows = []
    rng = np.random.default_rng(0)
    for cell in cfg["cells"]:
        for m in range(6):
            for t in range(1, 11):
                if cell == "gru":                          # jagged, starting low
                    c = (-0.6 if t % 2 else 0.8) + 0.05 * rng.standard_normal()
                else:                                      # smooth, starting high
                    c = 0.9 - 0.01 * t + 0.01 * rng.standard_normal()
                rows.append((cell, 2, 4, m, 0, t, c, True))
    cos = pd.DataFrame(rows, columns=["cell", "input", "hidden", "model", "seed", "epoch", "cosine", "qualified"])
    v = {c.id: c.verdict for c in update_cosine.claims({"cosine": cos}, cfg)}
    assert v == {"smoother-gru-vs-rnn-tanh": "fails", "rises-faster-gru-vs-rnn-tanh": "fails"}
    # no qualifying GRU model: inconclusive, with the reason
    cl = update_cosine.claims({"cosine": cos.assign(qualified=cos.cell != "gru")}, cfg)
    assert all(c.verdict == "inconclusive" and "Welch needs 2" in c.details["reason"] for c in cl)


def test_perturbation_claims_fail_on_broken_table(results):
    _, r = results
    res = r["perturbation"]
    cfg = res.config
    rec = res.tables["recovery"].copy()
    last = rec.epoch == rec.epoch.max()
    rec.loc[last & (rec.cell == "gru"), "val_acc"] = 0.5   # GRU recovers worse at every k
    rec.loc[last & (rec.cell == "rnn-tanh"), "val_acc"] = 0.95
    rec.loc[last, "dist"] = 0.0                           # and everything returns to W*
    base = res.tables["base"].assign(qualified=True, best_val_acc=0.99)
    v = {c.id: c.verdict for c in perturbation.claims({"recovery": rec, "base": base}, cfg)}
    assert v == {"recovers-better-gru-vs-rnn-tanh": "fails", "does-not-return-to-W*": "fails"}


# ----------------------------------------------------------------------------- the random-draw kernel


@pytest.mark.parametrize("cell,size,pad", [("gru", (4, 2), (4, 4)), ("lstm", (2, 4), (2, 4)),
                                           ("gru-s", (2, 2), (2, 2)), ("rnn-bare-matmul", (2, 2), (2, 2))])
def test_kernel_matches_population_evaluate(cell, size, pad, val_small, bare_matmul_cell):
    """float64: the kernel's correct counts equal engine.population.evaluate's, draw for draw
    (inputs/hidden zero-padded where `pad` says; a cell written with a bare ``@`` exercises the
    vmapped fallback)."""
    spec = model_spec("first", cell, "torch", "float64")
    ls = L.Landscape(spec, *size, val_small, seed=11, chunk=64, emax=pad[0], hmax=pad[1])
    assert ls.fast == (cell != bare_matmul_cell)
    got = ls.correct(64, 64)
    ref = L.reference_accuracies(spec, *size, val_small, 11, 64, 64)
    np.testing.assert_array_equal(got, np.rint(ref * len(val_small)).astype(int))
    assert len(set(got)) > 3                                # the draws differ


def test_kernel_streams_and_chunks_do_not_change_counts(val_small):
    """Counts depend on the draw only: one stream or three, chunks of 64 or 48 (the last one
    partial) give the same counts; the packed chunk holds every drawn value once."""
    spec = model_spec("first", "gru", "torch", "float32")
    a = L.Landscape(spec, 2, 4, val_small, seed=3, chunk=64).correct(0, 200, streams=1)
    b = L.Landscape(spec, 2, 4, val_small, seed=3, chunk=48).correct(0, 200, streams=3)
    np.testing.assert_array_equal(a, b)
    tree = L.draw_range(spec, 3, 2, 4, 0, 5)
    layout = L.pack_layout(spec, 2, 4)
    flat = L.pack_draws(spec, tree, layout)
    assert flat.shape == (sum(x.size for x in jax.tree_util.tree_leaves(tree)) // 5, 5)
    np.testing.assert_allclose(np.sort(flat.ravel()),
                               np.sort(np.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(tree)])
                                       .astype(np.float32)))


def test_draws_depend_only_on_seed_cell_size_index():
    spec = model_spec("first", "rnn-tanh", "torch")
    a = L.draw_range(spec, 5, 2, 4, 0, 256)
    b = [L.draw_range(spec, 5, 2, 4, s, n) for s, n in ((0, 70), (70, 130), (200, 56))]
    for x, *ys in zip(*(jax.tree_util.tree_leaves(t) for t in [a, *b])):
        np.testing.assert_array_equal(x, np.concatenate(ys))
    c = L.draw_range(spec, 6, 2, 4, 0, 256)
    assert not np.array_equal(a["cell"]["W_ih"], c["cell"]["W_ih"])
    d = L.draw_range(model_spec("first", "gru", "torch"), 5, 2, 4, 0, 256)
    assert not np.array_equal(a["emb"], d["emb"])
    # the draws follow the init scheme: torch = U(-1/sqrt(h), 1/sqrt(h)) for cell tensors, N(0, 1) embedding
    assert a["cell"]["W_hh"].shape == (256, 4, 4) and np.abs(a["cell"]["W_hh"]).max() <= 0.5
    assert 0.9 < a["emb"].std() < 1.1


def test_same_seed_same_histogram(results):
    """A block of the tiny run recomputed twice (the compiled kernel is reused): identical counts,
    equal to the raw values the run kept."""
    _, r = results
    res = r["random-landscape"]
    cfg = res.config
    shard = {"task": cfg["task"], "seed": cfg["seed"], "n_val": cfg["n_val"], "cell": "gru",
             "init": cfg["init_scheme"], "dtype": cfg["dtype"], "input": 2, "hidden": 4,
             "emax": max(cfg["inputs"]), "hmax": max(cfg["hiddens"]), "start": 0, "n": cfg["block"],
             "chunk": cfg["chunk"], "sample": cfg["sample"]}
    a, b = random_landscape.landscape_shard(shard), random_landscape.landscape_shard(dict(shard))
    pd.testing.assert_frame_equal(a["histogram"], b["histogram"])
    pd.testing.assert_frame_equal(a["sample"], b["sample"])
    kept = res.tables["sample"]
    kept = kept[(kept.cell == "gru") & (kept.input == 2) & (kept.hidden == 4)].sort_values("draw")
    assert list(kept.correct) == list(a["sample"].correct) and len(kept) == cfg["sample"]


def test_prefix_plan_covers_every_sequence(val_small):
    plan = L.prefix_plan(val_small.tokens, val_small.lengths, val_small.target_mask, val_small.accept, 10)
    assert sorted(plan.order) == list(range(len(val_small)))
    assert plan.n_prefixes < len(val_small) * val_small.tokens.shape[1] <= plan.n_slots + 10 * len(val_small)
    with pytest.raises(ConfigError):
        rb = tasks.splits("reber", 0, {"val": 20})["val"]
        L.prefix_plan(rb.tokens, rb.lengths, rb.target_mask, rb.accept, 7)


# ----------------------------------------------------------------------------- helpers


def test_population_from_params_matches_make_population():
    spec = ModelSpec(cell="gru", dtype="float64")
    a = make_population(spec, [2, 4], [4, 8], [1, 2])
    b = population_from_params(spec, [init_params_np(spec, 1, 2, 4), init_params_np(spec, 2, 4, 8)], [2, 4], [4, 8],
                               [1, 2])
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree_util.tree_leaves(a.mask), jax.tree_util.tree_leaves(b.mask)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ConfigError):
        population_from_params(spec, [init_params_np(spec, 1, 2, 4)], [4], [4], [1])


def test_perturb_scales_noise_per_tensor():
    tree = {"a": np.zeros(1000) + np.linspace(0, 1, 1000), "b": 10 * np.linspace(-1, 1, 1000)}
    p = perturbation.perturb(tree, 0.5, np.random.default_rng(0))
    assert abs((p["a"] - tree["a"]).std() / (0.5 * tree["a"].std()) - 1) < 0.1
    assert abs((p["b"] - tree["b"]).std() / (0.5 * tree["b"].std()) - 1) < 0.1
    q = perturbation.perturb(tree, 0.5, np.random.default_rng(0), scope="all")
    sig = np.concatenate([tree["a"], tree["b"]]).std()
    assert abs((q["a"] - tree["a"]).std() / (0.5 * sig) - 1) < 0.1


def test_streams_from_the_environment(monkeypatch):
    monkeypatch.setenv("RNNLAB_STREAMS", "3")
    assert L.n_streams() == 3
    monkeypatch.setenv("RNNLAB_STREAMS", "-1")
    with pytest.raises(ConfigError, match="^RNNLAB_STREAMS: must be a positive integer"):
        L.n_streams()
    monkeypatch.delenv("RNNLAB_STREAMS")
    assert 1 <= L.n_streams() <= 4
