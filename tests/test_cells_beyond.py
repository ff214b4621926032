"""Cells beyond the papers: UGRNN (Collins et al. 2017) and minGRU (Feng et al. 2024)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from rnnlab import cells

# this file's own JAX code computes in float64 (importing rnnlab no longer switches it on)
pytestmark = pytest.mark.usefixtures("float64")

T, E, H, B = 9, 3, 5, 4


def _steps(cell, p, xs):
    c = cells.get(cell)
    return jax.lax.scan(lambda s, x: (c.step(p, s, x),) * 2, c.init_state(H, jnp.float64), xs)[1]


def test_ugrnn_matches_its_equations_in_torch():
    rng = np.random.default_rng(0)
    c = cells.get("ugrnn")
    pn = {k: rng.normal(size=s) for k, s in c.shapes(E, H).items()}
    xs = rng.normal(size=(T, E))
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in pn.items()}
    h = torch.zeros(H, dtype=torch.float64)
    outs = []
    for t in range(T):
        pre = pt["W_ih"] @ torch.tensor(xs[t]) + pt["b_ih"] + pt["W_hh"] @ h + pt["b_hh"]
        cand, gate = torch.tanh(pre[:H]), torch.sigmoid(pre[H:])
        h = gate * h + (1 - gate) * cand
        outs.append(h)
    ref = torch.stack(outs)
    ref.sum().backward()
    pj = {k: jnp.asarray(v) for k, v in pn.items()}
    np.testing.assert_allclose(np.asarray(_steps("ugrnn", pj, jnp.asarray(xs))), ref.detach().numpy(), atol=1e-12)
    g = jax.grad(lambda p: jnp.sum(_steps("ugrnn", p, jnp.asarray(xs))))(pj)
    for k in pn:
        np.testing.assert_allclose(np.asarray(g[k]), pt[k].grad.numpy(), atol=1e-12)


def test_mingru_parallel_scan_equals_stepping_and_respects_length():
    rng = np.random.default_rng(1)
    c = cells.get("mingru")
    p = {k: jnp.asarray(rng.normal(size=s)) for k, s in c.shapes(E, H).items()}
    xs = jnp.asarray(rng.normal(size=(T, E)))
    seq = _steps("mingru", p, xs)
    par = c.parallel(p, xs, jnp.ones(T, bool))
    np.testing.assert_allclose(np.asarray(par), np.asarray(seq), atol=1e-12)
    valid = jnp.arange(T) < 5
    par5 = c.parallel(p, xs, valid)
    np.testing.assert_allclose(np.asarray(par5[4:]), np.broadcast_to(np.asarray(seq[4]), (T - 4, H)), atol=1e-12)
    # gradients agree too
    g1 = jax.grad(lambda q: jnp.sum(_steps("mingru", q, xs) ** 2))(p)
    g2 = jax.grad(lambda q: jnp.sum(c.parallel(q, xs, jnp.ones(T, bool)) ** 2))(p)
    for k in p:
        np.testing.assert_allclose(np.asarray(g1[k]), np.asarray(g2[k]), atol=1e-10)


def test_engine_runs_mingru_with_its_parallel_scan():
    """The engine's run_states takes the parallel form (not the step) and gives the stepped states,
    values and gradients, with a length that ends the sequence early."""
    from rnnlab.engine import model as mdl
    spec = mdl.ModelSpec(cell="mingru", vocab=7, n_outputs=7, embed=False, dtype="float64")
    c = cells.get("mingru")
    calls = []
    orig = c.parallel
    object.__setattr__(c, "parallel", lambda *a: calls.append(1) or orig(*a))
    try:
        rng = np.random.default_rng(2)
        p = {"cell": {k: jnp.asarray(rng.normal(size=s)) for k, s in c.shapes(7, H).items()}}
        xs = jax.nn.one_hot(jnp.asarray(rng.integers(0, 7, T)), 7, dtype=jnp.float64)
        got = mdl.run_states(spec, p, xs, 6, H)
        assert calls, "run_states did not use the parallel form"
        seq = _steps("mingru", p["cell"], xs)
        np.testing.assert_allclose(np.asarray(got[:6]), np.asarray(seq[:6]), atol=1e-12)
        np.testing.assert_allclose(np.asarray(got[6:]), np.broadcast_to(np.asarray(seq[5]), (T - 6, H)), atol=1e-12)
        g1 = jax.grad(lambda q: jnp.sum(mdl.run_states(spec, q, xs, T, H) ** 2))(p)["cell"]
        g2 = jax.grad(lambda q: jnp.sum(_steps("mingru", q["cell"], xs) ** 2))(p)["cell"]
        for k in g1:
            np.testing.assert_allclose(np.asarray(g1[k]), np.asarray(g2[k]), atol=1e-10)
    finally:
        object.__setattr__(c, "parallel", orig)


def test_trailing_batch_switch_is_per_thread():
    """A kernel traced with trailing batch axes in one thread leaves matvec alone in another."""
    import threading
    from rnnlab.cells import base
    w, v = jnp.ones((2, 3)), jnp.arange(3.0)
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait()
        seen["other"] = base._trailing()[0]
        done.set()
    t = threading.Thread(target=other)
    t.start()
    with base.trailing_batch():
        seen["here"] = base._trailing()[0]
        inside.set()
        done.wait()
    t.join()
    assert seen == {"here": True, "other": False}
    assert base._trailing()[0] is False
    np.testing.assert_allclose(np.asarray(base.matvec(w, v)), [3.0, 3.0])
