"""The (l, k)-discrepancy against a plain per-draw NumPy loop (the authors' method) with the very
same parameters; shapes, dtype, seeds, argument checks."""
import numpy as np
import pytest

import rnnlab
from rnnlab import ConfigError
from rnnlab.analysis import discrepancy as dm

LENGTHS = [1, 2, 4, 7]
SIZES = [1, 3, 4, 6]


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_step(cell, p, state, x):
    """The cells' equations written out in NumPy (no shared code with rnnlab)."""
    k = p["W_hh"].shape[1]
    b_ih = p.get("b_ih", np.zeros(p["W_ih"].shape[0]))
    b_hh = p.get("b_hh", np.zeros(p["W_hh"].shape[0]))
    if cell == "lstm":
        h, c = state[:k], state[k:]
        g = p["W_ih"] @ x + b_ih + p["W_hh"] @ h + b_hh
        i, f, gg, o = np.split(g, 4)
        c = _sig(f) * c + _sig(i) * np.tanh(gg)
        return np.concatenate([_sig(o) * np.tanh(c), c])
    h = state
    gi = p["W_ih"] @ x + b_ih
    if cell in ("rnn-sigmoid", "rnn-tanh"):
        act = _sig if cell == "rnn-sigmoid" else np.tanh
        return act(gi + p["W_hh"] @ h + b_hh)
    if cell == "gru":
        gh = p["W_hh"] @ h + b_hh
        r = _sig(gi[:k] + gh[:k])
        z = _sig(gi[k:2 * k] + gh[k:2 * k])
        n = np.tanh(gi[2 * k:] + r * gh[2 * k:])
        return (1 - z) * n + z * h
    assert cell == "gru-s"
    Wz, Wr, Wh = np.split(p["W_hh"], 3)
    bz, br, bh = np.split(b_hh, 3)
    z = _sig(gi[:k] + Wz @ h + bz)
    r = _sig(gi[k:2 * k] + Wr @ h + br)
    hc = np.tanh(gi[2 * k:] + Wh @ (r * h) + bh)
    return (1 - z) * hc + z * h


def _reference(cell, params, lengths, sizes):
    """Per-draw ||h_u - h_v||: loop over draws, sizes and time steps, one model at a time."""
    zero, one = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    out = np.zeros((len(params), len(lengths), len(sizes)))
    for d, by_k in enumerate(params):
        for j, k in enumerate(sizes):
            p = by_k[k]
            mult = 2 if cell == "lstm" else 1
            su, sv = np.zeros(mult * k), np.zeros(mult * k)
            dist = []
            for t in range(max(lengths)):
                su = _np_step(cell, p, su, zero)
                sv = _np_step(cell, p, sv, one if t == 0 else zero)
                dist.append(np.linalg.norm(su[:k] - sv[:k]))
            out[d, :, j] = [dist[length - 1] for length in lengths]
    return out


@pytest.mark.parametrize("cell,init,bias,kernel", [
    ("rnn-sigmoid", "normal", False, "auto"),
    ("gru-s", "normal", False, "auto"),
    ("gru-s", "xavier", False, "generic"),
    ("gru", "torch", True, "auto"),
    ("rnn-tanh", "uniform", False, "auto"),
    ("lstm", "normal", True, "auto"),        # no fast kernel: the cell's own step
])
def test_matches_numpy_loop_with_the_same_parameters(cell, init, bias, kernel):
    draws = 9
    params = dm.sample_parameters(cell, SIZES, draws, init, bias, seed=5)
    ref = _reference(cell, params, LENGTHS, SIZES)
    got = dm.discrepancy_draws(cell, LENGTHS, SIZES, draws, init, bias, seed=5, chunk=4, kernel=kernel)
    assert got.shape == (draws, len(LENGTHS), len(SIZES)) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    D = dm.discrepancy(cell, LENGTHS, SIZES, draws, init, bias, seed=5)
    np.testing.assert_allclose(D, ref.mean(axis=0), rtol=1e-12, atol=1e-14)


def test_parameters_follow_the_scheme():
    ps = dm.sample_parameters("gru-s", [2, 5], 400, "xavier", False, seed=1)
    w = np.concatenate([p[5]["W_hh"].ravel() for p in ps])
    assert abs(w.std() - 1 / np.sqrt(5)) < 0.02
    u = np.concatenate([p[2]["W_ih"].ravel() for p in ps])
    assert abs(u.std() - 1 / np.sqrt(2)) < 0.03                # fan_in of the input = 2 symbols
    assert set(ps[0][2]) == {"W_ih", "W_hh"}                    # no biases
    assert ps[0][2]["W_hh"].shape == (6, 2) and ps[0][5]["W_ih"].shape == (15, 2)
    # the k=2 model of a draw is the leading block (per gate) of that draw's k=5 model, rescaled
    np.testing.assert_allclose(ps[3][2]["W_hh"][2:4] * np.sqrt(2), ps[3][5]["W_hh"][5:7, :2] * np.sqrt(5),
                               rtol=1e-14)


def test_shape_dtype_order_seeds_and_public_api(monkeypatch):
    lengths, sizes = [3, 1, 3], [2, 1]
    D = rnnlab.discrepancy("rnn-sigmoid", lengths, sizes, draws=50, seed=3)
    assert D.shape == (3, 2) and D.dtype == np.float64
    assert np.all(D > 0)
    np.testing.assert_array_equal(D[0], D[2])
    full = dm.discrepancy("rnn-sigmoid", [1, 3], [1, 2], draws=50, seed=3)
    np.testing.assert_allclose(D[1], full[0, ::-1], rtol=1e-14)   # permuted arguments, same numbers
    np.testing.assert_array_equal(D, rnnlab.discrepancy("rnn-sigmoid", lengths, sizes, draws=50, seed=3))
    assert not np.allclose(D, rnnlab.discrepancy("rnn-sigmoid", lengths, sizes, draws=50, seed=4))
    # the first draws do not depend on how many draws are taken, nor on the chunking and the
    # worker threads (170 draws = 6 chunks of 40 computed by 2 threads)
    few = dm.discrepancy_draws("rnn-sigmoid", [1, 3], [1, 2], draws=7, seed=3)
    many = dm.discrepancy_draws("rnn-sigmoid", [1, 3], [1, 2], draws=170, seed=3)
    np.testing.assert_allclose(few, many[:7], rtol=1e-14)
    # ... nor on the blocks the draws are drawn and computed in (170 draws in blocks of 2 chunks:
    # 6 blocks, several in flight at once; a scheme with uniform draws too)
    monkeypatch.setattr(dm, "BLOCK", 80)
    np.testing.assert_array_equal(many, dm.discrepancy_draws("rnn-sigmoid", [1, 3], [1, 2], draws=170, seed=3))
    one = dm.discrepancy_draws("gru-s", [1, 4], [1, 3], draws=130, init="uniform", bias=True, seed=2, chunk=8)
    monkeypatch.setattr(dm, "BLOCK", 10 ** 6)
    np.testing.assert_array_equal(one, dm.discrepancy_draws("gru-s", [1, 4], [1, 3], draws=130, init="uniform",
                                                            bias=True, seed=2, chunk=8))
    # after one step (h_0 = 0) the k-unit state is the leading part of the (k+1)-unit one, whose
    # input weights have the same N(0, 1) scale: the distance cannot shrink with k, draw by draw
    assert np.all(many[:, 0, 1] >= many[:, 0, 0]) and np.all(many > 0)


@pytest.mark.parametrize("kw,field", [
    ({"lengths": [0, 3]}, "lengths"), ({"lengths": []}, "lengths"), ({"lengths": [2.5]}, "lengths"),
    ({"hidden_sizes": [0]}, "hidden_sizes"), ({"hidden_sizes": "x"}, "hidden_sizes"),
    ({"draws": 0}, "draws"), ({"cell": "nope"}, "cell"), ({"init": "he"}, "init"),
    ({"seed": -1}, "seed"), ({"bias": "no"}, "bias"),
])
def test_bad_arguments_name_the_field(kw, field):
    args = {"cell": "gru-s", "lengths": [1, 2], "hidden_sizes": [1, 2], "draws": 3, **kw}
    with pytest.raises(ConfigError, match=f"^{field}:"):
        rnnlab.discrepancy(**args)


def test_buckets_cover_every_size_once():
    for sizes in ([1], [3, 1, 2], list(range(1, 21)), [5, 5, 40]):
        groups = dm.buckets(sizes)
        assert sorted(k for g in groups for k in g) == sorted(set(sizes))
        assert len(groups) <= dm.MAX_BUCKETS
