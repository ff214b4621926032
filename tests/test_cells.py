"""Cells against torch.nn.RNN / GRU / LSTM with copied weights (forward and gradients, float64),
and the two cells of Sterin et al. against their equations written out in torch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import rnnlab
from rnnlab import cells
from rnnlab.engine import model as mdl
from rnnlab.engine.model import ModelSpec

# this file's own JAX code computes in float64 (importing rnnlab no longer switches it on)
pytestmark = pytest.mark.usefixtures("float64")

T, E, H, B = 7, 3, 5, 4
TOL = 1e-10


def _torch_module(name):
    if name == "rnn-tanh":
        return torch.nn.RNN(E, H, nonlinearity="tanh", batch_first=True)
    if name == "gru":
        return torch.nn.GRU(E, H, batch_first=True)
    return torch.nn.LSTM(E, H, batch_first=True)


def _run_jax(cell, p, x):
    """Hidden states [B, T, H] for inputs x [B, T, E]."""
    c = cells.get(cell)

    def seq(xs):
        def body(s, xt):
            s = c.step(p, s, xt)
            return s, c.hidden_of(s, H)
        return jax.lax.scan(body, c.init_state(H, jnp.float64), xs)[1]
    return jax.vmap(seq)(x)


@pytest.mark.parametrize("cell", ["rnn-tanh", "gru", "lstm"])
def test_matches_torch_forward_and_gradients(cell):
    torch.manual_seed(0)
    mod = _torch_module(cell).double()
    x = torch.randn(B, T, E, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(B, T, H, dtype=torch.float64)
    out, _ = mod(x)
    (out * probe).sum().backward()

    names = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
    p = {k: jnp.asarray(getattr(mod, v).detach().numpy()) for k, v in names.items()}
    xj = jnp.asarray(x.detach().numpy())
    hs = _run_jax(cell, p, xj)
    np.testing.assert_allclose(np.asarray(hs), out.detach().numpy(), rtol=0, atol=TOL)

    f = lambda p, xx: jnp.sum(_run_jax(cell, p, xx) * jnp.asarray(probe.numpy()))  # noqa: E731
    gp, gx = jax.grad(f, argnums=(0, 1))(p, xj)
    for k, v in names.items():
        np.testing.assert_allclose(np.asarray(gp[k]), getattr(mod, v).grad.numpy(), rtol=0, atol=TOL,
                                   err_msg=k)
    np.testing.assert_allclose(np.asarray(gx), x.grad.numpy(), rtol=0, atol=TOL)


def _sterin_reference(cell, p, x):
    """The equations of Sterin et al. section II written out in torch (no shared code)."""
    h = torch.zeros(x.shape[0], H, dtype=torch.float64)
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if cell == "rnn-sigmoid":
            h = torch.sigmoid(xt @ p["W_ih"].T + h @ p["W_hh"].T + p["b_ih"] + p["b_hh"])
        else:
            Uz, Ur, Uh = p["W_ih"].split(H)
            Wz, Wr, Wh = p["W_hh"].split(H)
            bz, br, bh = (p["b_ih"] + p["b_hh"]).split(H)
            z = torch.sigmoid(xt @ Uz.T + h @ Wz.T + bz)
            r = torch.sigmoid(xt @ Ur.T + h @ Wr.T + br)
            hc = torch.tanh(xt @ Uh.T + (h * r) @ Wh.T + bh)
            h = (1 - z) * hc + z * h
        outs.append(h)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("cell", ["rnn-sigmoid", "gru-s"])
def test_sterin_cells_match_their_equations(cell):
    rng = np.random.default_rng(1)
    c = cells.get(cell)
    shapes = c.shapes(E, H)
    pn = {k: rng.normal(size=s) for k, s in shapes.items()}
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in pn.items()}
    x = rng.normal(size=(B, T, E))
    probe = rng.normal(size=(B, T, H))
    ref = _sterin_reference(cell, pt, torch.tensor(x))
    (ref * torch.tensor(probe)).sum().backward()
    pj = {k: jnp.asarray(v) for k, v in pn.items()}
    np.testing.assert_allclose(np.asarray(_run_jax(cell, pj, jnp.asarray(x))), ref.detach().numpy(),
                               rtol=0, atol=TOL)
    g = jax.grad(lambda p: jnp.sum(_run_jax(cell, p, jnp.asarray(x)) * probe))(pj)
    for k in pn:
        np.testing.assert_allclose(np.asarray(g[k]), pt[k].grad.numpy(), rtol=0, atol=TOL, err_msg=k)


def test_gru_forms_differ():
    """The two GRU forms put the reset gate in different places: same weights, other states."""
    rng = np.random.default_rng(2)
    p = {k: jnp.asarray(rng.normal(size=s)) for k, s in cells.get("gru").shapes(E, H).items()}
    x = jnp.asarray(rng.normal(size=(B, T, E)))
    a, b = _run_jax("gru", p, x), _run_jax("gru-s", p, x)
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


@pytest.mark.parametrize("cell", sorted(cells.CELLS))
@pytest.mark.parametrize("scheme", ["torch", "normal", "xavier", "uniform"])
def test_init_schemes_statistics(cell, scheme):
    spec = ModelSpec(cell=cell, init=scheme, dtype="float64")
    hid = 64
    p = mdl.init_params(spec, jax.random.PRNGKey(0), 32, hid)
    name, fan = ("W_hh", hid) if "W_hh" in p["cell"] else ("W_ih", 32)   # minGRU has no W_hh
    w = np.asarray(p["cell"][name])
    b = np.asarray(p["cell"]["b_ih"])
    if scheme == "torch":
        bound = 1 / np.sqrt(hid)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
        assert np.abs(b).max() > 0
    else:
        assert np.all(b == 0)
        std = {"normal": 1.0, "xavier": 1 / np.sqrt(fan), "uniform": 1 / np.sqrt(3 * fan)}[scheme]
        assert abs(w.std() / std - 1) < 0.05
    emb = np.asarray(p["emb"])
    assert abs(emb.std() - 1) < 0.2          # nn.Embedding N(0, 1) in every scheme


def test_unknown_cell_names_the_field():
    with pytest.raises(rnnlab.ConfigError, match="^cell: unknown cell 'nope'"):
        ModelSpec(cell="nope")
