"""rnnlab's jit wrapper (rnnlab._jaxcfg.jit): compiler options per program, usable anywhere a
jax.jit function is."""
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import _jaxcfg
from rnnlab._jaxcfg import jit


def _f(x, n):
    return jnp.tanh(x) * n


def test_jit_computes_what_jax_jit_computes_at_top_level_and_inside_transformations():
    f = jit(_f, static_argnames=("n",))
    ref = jax.jit(_f, static_argnames=("n",))
    x = jnp.linspace(-2.0, 2.0, 7)
    np.testing.assert_array_equal(f(x, n=3), ref(x, n=3))
    # inside a user's jit (XLA takes compiler options at the top level only), grad and vmap
    np.testing.assert_array_equal(jax.jit(lambda y: f(y, n=3) + 1)(x), ref(x, n=3) + 1)
    np.testing.assert_allclose(jax.grad(lambda y: f(y, n=2).sum())(x), 2 * (1 - jnp.tanh(x) ** 2), rtol=1e-6)
    assert jax.vmap(lambda y: f(y, n=1))(jnp.stack([x, x])).shape == (2, 7)
    assert f.lower(x, n=3).compile() is not None


def test_cpu_options_are_per_program_and_merged():
    g = jit(_f, cpu_options={"xla_cpu_prefer_vector_width": 512}, static_argnames=("n",))
    assert g._cpu == dict(_jaxcfg.CPU_OPTIONS, xla_cpu_prefer_vector_width=512)
    assert "xla_cpu_prefer_vector_width" not in _jaxcfg.CPU_OPTIONS        # nothing shared changed
    np.testing.assert_array_equal(g(jnp.ones(3), n=2), _f(jnp.ones(3), 2))
    if jax.default_backend() == "cpu":
        assert g._cache_size() == 1
    plain = jit(_f, cpu_options={"xla_cpu_prefer_vector_width": 512}, fast_compile=False, static_argnames=("n",))
    assert plain._cpu == {"xla_cpu_prefer_vector_width": 512}
    np.testing.assert_array_equal(plain(jnp.ones(3), n=2), _f(jnp.ones(3), 2))


def test_lane_kernel_picks_its_options_by_population_size():
    from rnnlab.engine import lanes
    assert lanes._SMALL._cpu == dict(lanes.CPU_OPTIONS, **_jaxcfg.CPU_OPTIONS, **_jaxcfg.SMALL_OPTIONS)
    assert lanes._LARGE._cpu == lanes.CPU_OPTIONS
    from rnnlab.engine import train
    assert train._EPOCH_SMALL._cpu == dict(_jaxcfg.CPU_OPTIONS, **_jaxcfg.SMALL_OPTIONS)
    assert train._EPOCH_LARGE._cpu == _jaxcfg.CPU_OPTIONS


def test_models_first_epoch_picks_its_program_by_population_size(monkeypatch):
    from rnnlab.engine import lanes, train
    calls = []
    monkeypatch.setattr(train, "_EPOCH_SMALL", lambda *a, **k: calls.append(("small", len(a[7]))))
    monkeypatch.setattr(train, "_EPOCH_LARGE", lambda *a, **k: calls.append(("large", len(a[7]))))
    for m in (1, lanes.FAST_COMPILE_MAX_MODELS, lanes.FAST_COMPILE_MAX_MODELS + 1):
        train.train_epoch(None, None, 4, 1, {}, {}, {}, np.ones(m), np.ones(m, bool), None, 0, {})
    assert calls == [("small", 1), ("small", lanes.FAST_COMPILE_MAX_MODELS),
                     ("large", lanes.FAST_COMPILE_MAX_MODELS + 1)]
