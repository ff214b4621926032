"""Lyapunov spectra: exact on a known linear system; the experiment end to end; its claim can fail."""
import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from rnnlab import experiments
from rnnlab.analysis.lyapunov import population_spectra, spectrum
from rnnlab.experiments import lyapunov


@pytest.mark.usefixtures("float64")       # the test's own arrays are float64
def test_spectrum_of_a_contracting_linear_system_is_log_of_its_eigenvalues():
    p = {"W_ih": jnp.zeros((2, 3)), "W_hh": jnp.array([[0.5, 0.0], [0.3, 0.25]]),
         "b_ih": jnp.zeros(2), "b_hh": jnp.zeros(2)}
    xs = jnp.zeros((200, 3))
    lam = np.asarray(spectrum("rnn-tanh", p, xs, burn_in=20))
    np.testing.assert_allclose(lam, np.log([0.5, 0.25]), atol=1e-6)
    # the population form agrees with the single-model form
    stack = {k: jnp.stack([v, 2 * v]) for k, v in p.items()}
    pop = np.asarray(population_spectra("rnn-tanh", stack, jnp.zeros((2, 1, 200, 3)), 20))
    np.testing.assert_allclose(pop[0, 0], lam, atol=1e-9)
    np.testing.assert_allclose(pop[1, 0], np.log([1.0, 0.5]), atol=1e-6)


def test_lyapunov_experiment_tiny(tmp_path):
    res = experiments.run("lyapunov", scale="tiny", out=tmp_path, progress=False)
    sp = res.tables["spectra"]
    assert {"task", "cell", "condition", "model", "sequence", "index", "exponent"} <= set(sp.columns)
    assert set(sp.condition) == {"trained", "random"}
    assert set(sp.cell) == {"rnn-tanh", "gru", "rnn-sigmoid", "gru-s"}
    for name in ("spectra", "lambda1"):
        assert (tmp_path / "lyapunov" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "lyapunov" / f"{name}.svg").exists()
    claims = json.loads((tmp_path / "lyapunov" / "claims.json").read_text())
    assert [c["id"] for c in claims] == ["lambda1-first", "lambda1-embedded-reber"]
    assert all(c["verdict"] in ("holds", "fails", "inconclusive") for c in claims)
    again = experiments.run("lyapunov", scale="tiny", out=tmp_path, progress=False)
    assert again.reused


def test_lyapunov_claim_fails_when_vanilla_forgets_slower():
    rows = []
    for task, van, gat in (("first", "rnn-tanh", "gru"), ("embedded-reber", "rnn-sigmoid", "gru-s")):
        for m in range(5):
            rows.append((task, van, "trained", m, 0, 1, -0.1 + 0.01 * m))
            rows.append((task, gat, "trained", m, 0, 1, -2.0 - 0.01 * m))
    sp = pd.DataFrame(rows, columns=["task", "cell", "condition", "model", "sequence", "index", "exponent"])
    cfg = lyapunov.default_config("tiny")
    verdicts = [c.verdict for c in lyapunov.claims({"spectra": sp}, cfg)]
    assert verdicts == ["fails", "fails"]
