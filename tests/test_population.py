"""A model trained inside a population equals the same model trained alone; padding is exact;
divergence is contained; both protocols run."""
import jax
import numpy as np
import pytest

import rnnlab  # noqa: F401
from rnnlab import tasks
from rnnlab.engine.model import ModelSpec
from rnnlab.engine.population import make_population
from rnnlab.engine.protocols import MEHTA, STERIN
from rnnlab.engine.train import train


@pytest.fixture(scope="module")
def first_small():
    return tasks.splits("first", 0, {"train": 256, "val": 128, "test": 128})


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_model_in_population_of_64_equals_model_alone(first_small):
    spec = ModelSpec(cell="gru", dtype="float64")
    seeds = np.arange(100, 164)
    prot = MEHTA.with_(patience=None)
    big = train(make_population(spec, 4, 4, seeds), prot, first_small, max_epochs=3, progress=False)
    worst = 0.0
    for i in (0, 17, 63):
        solo = train(make_population(spec, 4, 4, seeds[i:i + 1]), prot, first_small, max_epochs=3,
                     progress=False)
        a = big.population.model_params(i)
        b = solo.population.model_params(0)
        for x, y in zip(_leaves(a), _leaves(b)):
            worst = max(worst, float(np.max(np.abs(x - y))))
        np.testing.assert_allclose(big.curves.query("model == @i").val_acc.to_numpy(),
                                   solo.curves.val_acc.to_numpy(), rtol=0, atol=1e-12)
    assert worst <= 1e-12, worst


@pytest.mark.parametrize("cell", ["rnn-sigmoid", "lstm"])   # sigmoid: padded units sit at 0.5; lstm: 2-part state
def test_padded_population_of_mixed_sizes_equals_each_model_alone(cell, first_small):
    spec = ModelSpec(cell=cell, dtype="float64")
    sizes = [(2, 2), (5, 4), (3, 6)]
    e = [s[0] for s in sizes]
    h = [s[1] for s in sizes]
    seeds = [11, 12, 13]
    mixed = train(make_population(spec, e, h, seeds), MEHTA, first_small, max_epochs=2, progress=False)
    for i, (ei, hi) in enumerate(sizes):
        solo = train(make_population(spec, ei, hi, seeds[i:i + 1]), MEHTA, first_small, max_epochs=2,
                     progress=False)
        for x, y in zip(_leaves(mixed.population.model_params(i)), _leaves(solo.population.model_params(0))):
            assert x.shape == y.shape
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    # padded entries never moved away from zero
    for p, m in zip(_leaves(mixed.population.params), _leaves(mixed.population.mask)):
        assert np.all(p[m == 0] == 0)


def test_diverging_models_are_frozen_and_others_unaffected(first_small):
    spec = ModelSpec(cell="rnn-tanh", dtype="float64")
    seeds = np.arange(6)
    prot = MEHTA.with_(patience=None, halve_on="none")
    lr = np.array([1e-2, 1e-2, 1e300, 1e-2, 1e300, 1e-2])
    res = train(make_population(spec, 4, 4, seeds), prot, first_small, lr=lr, max_epochs=3, progress=False)
    s = res.summary
    assert list(s.status[lr > 1]) == ["diverged", "diverged"]
    assert (s.diverged_epoch[lr > 1] == 1).all()
    assert (s.status[lr < 1] == "max_epochs").all()
    good = np.flatnonzero(lr < 1)
    clean = train(make_population(spec, 4, 4, seeds[good]), prot, first_small, lr=lr[good], max_epochs=3,
                  progress=False)
    for j, i in enumerate(good):
        for x, y in zip(_leaves(res.population.model_params(i)), _leaves(clean.population.model_params(j))):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    for i in np.flatnonzero(lr > 1):   # a diverged model keeps finite (last good) parameters
        assert all(np.isfinite(x).all() for x in _leaves(res.population.model_params(i)))


def test_mehta_protocol_stops_on_patience_and_keeps_best(first_small):
    spec = ModelSpec(cell="gru")
    res = train(make_population(spec, 2, 2, [1, 2, 3]), MEHTA, first_small, max_epochs=40, progress=False)
    for _, row in res.summary.iterrows():
        c = res.curves.query("model == @row.model and epoch > 0")
        assert row.best_val_acc == pytest.approx(c.val_acc.max())
        if row.status == "patience":
            assert len(c) - int(c.val_acc.to_numpy().argmax()) - 1 == MEHTA.patience
    # lr halves exactly when val acc dropped
    c = res.curves.query("model == 0 and epoch > 0").reset_index()
    for t in range(1, len(c)):
        dropped = c.val_acc[t - 1] < (c.val_acc[t - 2] if t >= 2 else -1)
        assert c.lr[t] == pytest.approx(c.lr[t - 1] / (2 if dropped else 1))


@pytest.mark.parametrize("task,sizes", [
    ("first", {"train": 256, "val": 128, "test": 128}),
    ("first", {"train": 256, "val": 96, "test": 200}),      # test in val-sized blocks, the last padded
    ("reber", {"train": 64, "val": 40, "test": 70}),        # ragged: widths may differ, own program then
])
def test_test_accuracy_is_that_of_the_best_checkpoint(task, sizes):
    """test is measured once, on each model's best checkpoint: it equals measuring that
    checkpoint's parameters on the test split directly."""
    from rnnlab.engine.population import evaluate
    from rnnlab.engine.train import device_data
    from rnnlab.experiments.common import model_spec
    from rnnlab.engine import model as mdl
    d = tasks.splits(task, 0, sizes)
    spec = model_spec(task, "gru", "torch", "float32")
    prot = MEHTA if task == "first" else STERIN.with_(optimizer="adam", batch_size=8, lr=0.01)
    res = train(make_population(spec, 7 if task == "reber" else 2, 2, [1, 2, 3]), prot, d, max_epochs=6,
                progress=False)
    assert (res.summary.best_epoch > 0).all() and "test_acc" not in res.curves
    t = d["test"]
    _, acc = evaluate(spec, prot.loss, res.population.hmax, res.best_params, res.population.mask,
                      device_data(t, spec.jdtype), positions=mdl.scored_positions(t.target_mask))
    np.testing.assert_allclose(res.summary.test_acc, np.asarray(acc, float), rtol=0, atol=1e-6)
    assert res.summary.test_acc.nunique() > 1


def test_sterin_protocol_on_reber_runs_and_learns():
    data = tasks.splits("reber", 0, {"train": 60, "val": 60})
    spec = ModelSpec(cell="rnn-sigmoid", vocab=7, n_outputs=7, embed=False, out_bias=False, init="normal")
    res = train(make_population(spec, 7, 5, [0, 1]), STERIN.with_(lr=0.05), data, max_epochs=15, progress=False)
    c = res.curves.query("epoch > 0")
    first, last = c.groupby("model").loss.first(), c.groupby("model").loss.last()
    assert (last < first).all()


def test_compacting_stopped_models_changes_nothing(first_small, monkeypatch):
    """Once most models have stopped, epochs compute only the running ones (gathered into a
    smaller population, scattered back): every curve, status, best checkpoint and final
    parameter is what the uncompacted run gives."""
    from rnnlab.engine import train as tr
    spec = ModelSpec(cell="gru", dtype="float64")
    seeds = np.arange(40)
    # most models stop after epoch 1 (lr below min_lr), 6 keep going: 40 -> 8 models per epoch
    lr = np.where(np.isin(seeds, [3, 7, 20, 21, 30, 39]), 1e-2, 1e-7)
    prot = MEHTA.with_(patience=None)
    monkeypatch.setattr(tr, "COMPACT_MIN_EPOCHS_LEFT", 3)   # compact during epochs 2 (8 models) and 3 ...
    monkeypatch.setattr(tr, "COMPACT_WASTE", 0)             # ... as soon as the sizes allow
    sizes = []
    real = tr.run_epoch
    tr.run_epoch = lambda *a, **k: sizes.append(int(np.shape(a[7])[0])) or real(*a, **k)
    try:
        on = train(make_population(spec, 4, 4, seeds), prot, first_small, lr=lr, max_epochs=4, progress=False)
    finally:
        tr.run_epoch = real
    off = train(make_population(spec, 4, 4, seeds), prot, first_small, lr=lr, max_epochs=4, progress=False,
                compact=False)
    assert sizes == [40, 8, 8, 8], sizes                    # ... and the size then stays
    assert (on.summary.status == off.summary.status).all()
    assert set(on.summary.status) == {"min_lr", "max_epochs"}
    np.testing.assert_array_equal(on.summary.epochs, off.summary.epochs)
    for col in ("val_acc", "val_loss", "loss", "train_acc", "lr"):
        np.testing.assert_allclose(on.curves[col].to_numpy(float), off.curves[col].to_numpy(float), rtol=0, atol=1e-12)
    for a, b in ((on.population.params, off.population.params), (on.best_params, off.best_params)):
        for x, y in zip(_leaves(a), _leaves(b)):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


def test_compaction_waits_until_the_stopped_slots_pay_for_a_compilation(first_small, monkeypatch):
    """Ski rental: a population compacts only once the slots computed for stopped models since
    the layout last changed reach COMPACT_WASTE model-batches; a short run never compacts."""
    from rnnlab.engine import train as tr
    spec = ModelSpec(cell="gru", dtype="float64")
    seeds = np.arange(40)
    lr = np.where(np.isin(seeds, [3, 7, 20, 21, 30, 39]), 1e-2, 1e-7)    # 34 stop after epoch 1
    nb = -(-len(first_small["train"]) // MEHTA.batch_size)
    monkeypatch.setattr(tr, "COMPACT_MIN_EPOCHS_LEFT", 1)
    real = tr.run_epoch
    for waste, want in ((34 * nb, [40, 8, 8, 8]), (34 * nb + 1, [40, 40, 8, 8]), (10**9, [40, 40, 40, 40])):
        monkeypatch.setattr(tr, "COMPACT_WASTE", waste)
        sizes = []
        tr.run_epoch = lambda *a, **k: sizes.append(int(np.shape(a[7])[0])) or real(*a, **k)
        try:
            train(make_population(spec, 4, 4, seeds), MEHTA.with_(patience=None), first_small, lr=lr,
                  max_epochs=4, progress=False)
        finally:
            tr.run_epoch = real
        assert sizes == want, (waste, sizes)


def test_compacted_small_runners_are_cut_to_their_own_padding(first_small, monkeypatch):
    """In a population of mixed sizes whose last runners are small, the compacted epochs run in
    the layout of the largest running model (here 2x2 instead of 4x4): every curve, status, best
    checkpoint and final parameter is what the uncompacted, unrepadded run gives (float64)."""
    from rnnlab.engine import train as tr
    spec = ModelSpec(cell="gru", dtype="float64")
    seeds = np.arange(24)
    dims, hid = np.where(seeds % 3 == 0, 2, 4), np.where(seeds % 3 == 0, 2, 3 + seeds % 2)
    runners = [0, 6, 9]                                          # all 2x2
    lr = np.where(np.isin(seeds, runners), 1e-2, 1e-7)
    prot = MEHTA.with_(patience=None)
    monkeypatch.setattr(tr, "COMPACT_MIN_EPOCHS_LEFT", 3)
    monkeypatch.setattr(tr, "COMPACT_WASTE", 0)                # compact as soon as the sizes allow
    calls = []
    real = tr.run_epoch
    tr.run_epoch = lambda *a, **k: calls.append((int(np.shape(a[7])[0]), a[2])) or real(*a, **k)
    try:
        on = train(make_population(spec, dims, hid, seeds), prot, first_small, lr=lr, max_epochs=4, progress=False)
    finally:
        tr.run_epoch = real
    off = train(make_population(spec, dims, hid, seeds), prot, first_small, lr=lr, max_epochs=4, progress=False,
                compact=False)
    assert calls == [(24, 4), (4, 2), (4, 2), (4, 2)], calls   # (models, padded hidden) per epoch
    assert (on.summary.status == off.summary.status).all()
    for col in ("val_acc", "val_loss", "loss", "train_acc", "lr"):
        np.testing.assert_allclose(on.curves[col].to_numpy(float), off.curves[col].to_numpy(float), rtol=0, atol=1e-12)
    for a, b in ((on.population.params, off.population.params), (on.best_params, off.best_params)):
        for x, y in zip(_leaves(a), _leaves(b)):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


def test_repad_shrinks_and_grows_exactly():
    from rnnlab.engine import model as mdl
    with rnnlab.float64():
        for cell in ("gru", "lstm", "rnn-tanh"):
            spec = ModelSpec(cell=cell, dtype="float64")
            pop = make_population(spec, [2, 3, 2], [2, 4, 3], np.arange(3))
            two = _gather0(pop.params, [0, 2])                      # models 2x2 and 2x3 of a 3x4 layout
            cut = mdl.repad(spec, two, pop.emax, pop.hmax, 2, 3)
            for i, (j, h) in enumerate(((0, 2), (2, 3))):        # each model's own tensors survive the cut
                own = mdl.unpad_params(spec, jax.tree_util.tree_map(lambda a: a[i], cut), 2, h)
                for x, y in zip(_leaves(own), _leaves(pop.model_params(j))):
                    np.testing.assert_array_equal(x, y)
            back = mdl.repad(spec, cut, 2, 3, pop.emax, pop.hmax)     # and growing pads the zeros back
            for x, y in zip(_leaves(back), _leaves(two)):
                np.testing.assert_array_equal(x, y)


def _gather0(tree, idx):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[np.asarray(idx)], tree)


def test_compact_size_shrinks_by_powers_of_two():
    from rnnlab.engine.train import compact_size
    assert compact_size(48, 48) == 48          # all running
    assert compact_size(25, 48) == 48          # 32 is more than half of 48
    assert compact_size(24, 48) == 48          # 32 > 24 = 48 // 2
    assert compact_size(16, 48) == 16
    assert compact_size(9, 48) == 16
    assert compact_size(3, 48) == 4
    assert compact_size(3, 8) == 4
    assert compact_size(5, 12) == 12           # 8 > 12 // 2
    assert compact_size(1, 12) == 1            # a last straggler trains alone
    assert compact_size(1, 1) == 1


def test_stop_acc_stops_each_model_at_its_first_epoch_at_the_target(first_small):
    """protocol.stop_acc: a model stops after the first epoch whose val acc reaches it; until
    then it trains exactly as without the rule, so its best accuracy is unchanged."""
    spec = ModelSpec(cell="gru", dtype="float64")
    prot = MEHTA.with_(patience=None, halve_on="none", lr=1e-2)
    free = train(make_population(spec, 4, 4, np.arange(8)), prot, first_small, max_epochs=6, progress=False)
    target = float(np.median(free.curves.query("epoch > 0").val_acc))
    ruled = train(make_population(spec, 4, 4, np.arange(8)), prot.with_(stop_acc=target), first_small,
                  max_epochs=6, progress=False)
    stopped = 0
    for i in range(8):
        c = free.curves.query("model == @i and epoch > 0").val_acc.to_numpy()
        hit = np.flatnonzero(c >= target)
        row = ruled.summary.iloc[i]
        if len(hit):
            stopped += 1
            assert row.status == "reached_acc" and row.epochs == hit[0] + 1
            np.testing.assert_allclose(ruled.curves.query("model == @i and epoch > 0").val_acc, c[:hit[0] + 1],
                                       rtol=0, atol=1e-12)
            assert row.best_val_acc >= target
        else:
            assert row.status == "max_epochs"
    assert stopped > 0                     # the median is reached by at least half of the models


def test_stop_acc_out_of_range_is_a_config_error():
    from rnnlab.errors import ConfigError
    for bad in (0.0, 1.5, -1):
        with pytest.raises(ConfigError, match="^stop_acc:"):
            MEHTA.with_(stop_acc=bad)
