"""Conformance suite of the cell contract (docs/extending.md): does a cell work everywhere
rnnlab uses one? ``check(cell)`` returns one :class:`Result` per check; ``rnnlab check-cell
[PLUGIN:]CELL`` prints them.

========== ==================================================================================
check      what it asserts (float64 throughout)
========== ==================================================================================
contract   the static fields: name, gates, params (axes, roles), bias_params, step callable
shapes     every parameter drawn at the shape its spec gives, with and without biases; step
           maps a state [state_mult*hidden] to one of the same shape and dtype, finite;
           ``hidden_of`` gives [hidden]
seeding    parameters depend on the seed only (same seed: identical; another seed: different);
           the step is deterministic (two eager calls and a jitted one agree bit for bit)
forms      optional forms agree with ``step``: step_proj(input_proj(x)) == step exactly, the
           parallel form equals stepping with the valid mask (1e-12)
gradient   reverse-mode gradients (parameters and inputs) of a 5-step loss equal central
           finite differences along random directions (relative error < 1e-6)
padding    a model zero-padded into a population of larger models (masked, as the engine
           does) computes the same outputs and own states as alone (the training path, 1e-12);
           its padded parameters get exactly zero gradient
population each of 3 models of mixed sizes in one population (vmapped over the model axis, as
           training computes it) gets the outputs, loss and gradients it gets alone (1e-12)
========== ==================================================================================

Every check runs even when another fails; an exception inside a check is its failure, with
the exception's type and message.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np

from .._jaxcfg import x64

CHECKS = ("contract", "shapes", "seeding", "forms", "gradient", "padding", "population")

#: the sizes checked: a model of (E, H), padded into (EMAX, HMAX)
E, H, EMAX, HMAX, T = 2, 3, 4, 5, 5
TOL = 1e-12


@dataclass
class Result:
    check: str
    ok: bool
    message: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.check:<10}  {self.message}"


class CheckFailed(AssertionError):
    pass


def _require(cond, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def _maxdiff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)))


def _rng_params(cell, e, h, seed, bias=True):
    rng = np.random.default_rng(seed)
    return {k: 0.5 * rng.standard_normal(s) for k, s in cell.shapes(e, h, bias).items()}


def _inputs(e, seed, t=T):
    return np.random.default_rng(seed).standard_normal((t, e))


def _run(cell, p, xs, hidden):
    """States [T, state] of stepping the cell (jitted scan)."""
    import jax
    import jax.numpy as jnp

    def body(s, x):
        s = cell.step(p, s, x)
        return s, s
    return jax.lax.scan(body, cell.init_state(hidden, jnp.float64), xs)[1]


# ------------------------------------------------------------------------------ checks


def _contract(cell):
    from . import check_cell
    check_cell(cell)
    return f"gates {cell.gates}, state {cell.state_mult} x hidden, params {', '.join(sorted(cell.params))}"


def _shapes(cell):
    import jax.numpy as jnp
    from ..engine import model as mdl
    for bias in (True, False):
        spec = mdl.ModelSpec(cell=cell.name, dtype="float64", bias=bias)
        p = mdl.init_params_np(spec, 0, E, H)
        got = {k: tuple(np.shape(v)) for k, v in p["cell"].items()}
        want = cell.shapes(E, H, bias)
        _require(got == want, f"bias={bias}: drawn shapes {got} != spec shapes {want}")
        s0 = cell.init_state(H, jnp.float64)
        _require(tuple(s0.shape) == (cell.state_mult * H,),
                 f"init_state({H}) has shape {tuple(s0.shape)}, expected {(cell.state_mult * H,)}")
        pj = {k: jnp.asarray(v) for k, v in _rng_params(cell, E, H, 1, bias).items()}
        s = cell.step(pj, s0, jnp.asarray(_inputs(E, 2)[0]))
        _require(tuple(np.shape(s)) == (cell.state_mult * H,),
                 f"bias={bias}: step returns a state of shape {tuple(np.shape(s))}, expected "
                 f"{(cell.state_mult * H,)} (state_mult * hidden)")
        _require(s.dtype == jnp.float64, f"bias={bias}: step returns {s.dtype} from float64 inputs")
        _require(bool(np.all(np.isfinite(np.asarray(s)))), f"bias={bias}: step returns non-finite values")
        hid = cell.hidden_of(s, H)
        _require(tuple(np.shape(hid)) == (H,), f"hidden_of gives shape {tuple(np.shape(hid))}, expected {(H,)}")
    return f"input {E}, hidden {H}: {cell.n_params(E, H)} parameters, state {cell.state_mult * H}"


def _seeding(cell):
    import jax
    import jax.numpy as jnp
    from ..engine import model as mdl
    spec = mdl.ModelSpec(cell=cell.name, dtype="float64")
    a, b, c = (mdl.init_params_np(spec, s, E, H) for s in (5, 5, 6))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        _require(np.array_equal(x, y), "init_params_np: the same seed gave different parameters")
    _require(any(not np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a["cell"]),
                                                         jax.tree_util.tree_leaves(c["cell"]))),
             "init_params_np: seeds 5 and 6 gave the same cell parameters")
    p = {k: jnp.asarray(v) for k, v in _rng_params(cell, E, H, 3).items()}
    s0 = cell.init_state(H, jnp.float64) + 0.1
    x = jnp.asarray(_inputs(E, 4)[0])
    one, two = np.asarray(cell.step(p, s0, x)), np.asarray(cell.step(p, s0, x))
    _require(np.array_equal(one, two), f"step is not deterministic: two calls on the same inputs differ by "
                                       f"{_maxdiff(one, two):.3g}")
    jit = np.asarray(jax.jit(cell.step)(p, s0, x))
    _require(np.array_equal(jax.jit(cell.step)(p, s0, x), jit) and _maxdiff(jit, one) < TOL,
             f"step is not deterministic: jitted and eager calls differ by {_maxdiff(jit, one):.3g}")
    return "same seed, same parameters; deterministic step (eager and jitted)"


def _forms(cell):
    import jax.numpy as jnp
    done = []
    p = {k: jnp.asarray(v) for k, v in _rng_params(cell, E, H, 7).items()}
    xs = jnp.asarray(_inputs(E, 8))
    if cell.split:
        s = cell.init_state(H, jnp.float64) + 0.2
        for x in xs:
            a = np.asarray(cell.step(p, s, x))
            b = np.asarray(cell.step_proj(p, s, cell.input_proj(p, x)))
            _require(np.array_equal(a, b), f"step_proj(input_proj(x)) differs from step by {_maxdiff(a, b):.3g}")
        done.append("split form == step")
    if cell.parallel is not None:
        ref = np.asarray(_run(cell, p, xs, H))
        valid = jnp.arange(T) < T - 2
        par = np.asarray(cell.parallel(p, xs, jnp.ones(T, bool)))
        _require(_maxdiff(par, ref) < TOL, f"parallel form differs from stepping by {_maxdiff(par, ref):.3g}")
        held = np.asarray(cell.parallel(p, xs, valid))
        want = np.concatenate([ref[:T - 2], np.repeat(ref[T - 3:T - 2], 2, axis=0)])
        _require(_maxdiff(held, want) < TOL, "parallel form does not carry the state where valid is False")
        done.append("parallel form == stepping")
    return ", ".join(done) or "no optional forms (input_proj/step_proj, parallel)"


def _gradient(cell):
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(11)
    p = {k: jnp.asarray(v) for k, v in _rng_params(cell, E, H, 9).items()}
    xs = jnp.asarray(_inputs(E, 10))
    probe = jnp.asarray(rng.standard_normal((T, cell.state_mult * H)))
    vg = jax.jit(jax.value_and_grad(lambda p, xs: jnp.sum(_run(cell, p, xs, H) * probe), argnums=(0, 1)))
    f = lambda p, xs: vg(p, xs)[0]  # noqa: E731 - one compilation for values and gradients
    gp, gx = vg(p, xs)[1]
    eps, worst = 1e-6, 0.0
    for k in range(6):
        dp = {n: jnp.asarray(rng.standard_normal(v.shape)) for n, v in p.items()}
        dx = jnp.asarray(rng.standard_normal(xs.shape))
        plus = f({n: p[n] + eps * dp[n] for n in p}, xs + eps * dx)
        minus = f({n: p[n] - eps * dp[n] for n in p}, xs - eps * dx)
        fd = float(plus - minus) / (2 * eps)
        an = float(sum(jnp.sum(gp[n] * dp[n]) for n in p) + jnp.sum(gx * dx))
        err = abs(fd - an) / max(1.0, abs(fd), abs(an))
        worst = max(worst, err)
        _require(np.isfinite(an) and err < 1e-6,
                 f"gradient along a random direction: autodiff {an:.10g}, finite differences {fd:.10g} "
                 f"(relative error {err:.2g} > 1e-6)")
    return f"6 random directions, worst relative error {worst:.1g}"


#: models of the padding and population checks: (input, hidden, seed); the second one makes
#: the others padded (to EMAX x HMAX) inside the population
MODELS = ((E, H, 1), (EMAX, HMAX, 2), (E, H, 3))
_ENGINE: dict = {}


def _engine_runs(cell):
    """What the engine computes for a population of MODELS and for each model alone (one
    compiled function): per model, on 6 sequences of First, the states and outputs of the
    training path (engine.model.token_states: input_proj/step_proj where the cell has them,
    else step) with the parameters masked as engine.population.batch_loss masks them, and the
    gradient of a loss on every output."""
    if id(cell) in _ENGINE:
        return _ENGINE[id(cell)]
    import jax
    import jax.numpy as jnp
    from ..engine import model as mdl
    from ..engine.population import apply_mask, make_population
    from ..engine.train import device_data
    from ..tasks import make
    spec = mdl.ModelSpec(cell=cell.name, dtype="float64")
    d = device_data(make("first", 6, seed=1, length=T), jnp.float64)
    probe = jnp.asarray(np.random.default_rng(2).standard_normal((6, T, 2)))

    def per_model(p, m, hmax):
        def loss(p):
            q = apply_mask(p, m)          # as engine.population.batch_loss: padded entries masked
            states = jax.vmap(lambda t, n: mdl.token_states(spec, q, t, n, hmax))(d["tokens"], d["lengths"])
            out = mdl.readout(spec, q, cell.hidden_of(states, hmax))
            return jnp.sum(jax.nn.log_softmax(out) * probe), (out, states)
        (value, (out, states)), grad = jax.value_and_grad(loss, has_aux=True)(p)
        return {"out": out, "states": states, "loss": value, "grad": grad}
    run = jax.jit(lambda p, m, hmax: jax.vmap(lambda a, b: per_model(a, b, hmax))(p, m), static_argnums=2)
    pops = [make_population(spec, [e for e, _, _ in MODELS], [h for _, h, _ in MODELS], [s for _, _, s in MODELS])]
    pops += [make_population(spec, e, h, [seed]) for e, h, seed in MODELS]
    outs = [run(pp.params, pp.mask, pp.hmax) for pp in pops]      # compiled once per shape
    res = {"pop": pops[0], "pop_out": outs[0], "solo": list(zip(pops[1:], outs[1:]))}
    _ENGINE[id(cell)] = res
    return res


def _own_states(cell, states, hidden, hmax):
    """The model's own units of each state block (state_mult blocks of hmax)."""
    blocks = states.reshape(states.shape[:-1] + (cell.state_mult, hmax))[..., :hidden]
    return blocks.reshape(states.shape[:-1] + (cell.state_mult * hidden,))


def _padding(cell):
    import jax
    r = _engine_runs(cell)
    pop, po = r["pop"], r["pop_out"]
    solo, so = r["solo"][0]
    e, h, _ = MODELS[0]
    one = jax.tree_util.tree_map(lambda a: a[0], po)
    alone = jax.tree_util.tree_map(lambda a: a[0], so)
    where = f"a {e}x{h} model padded to {pop.emax}x{pop.hmax} in a population"
    _require(_maxdiff(one["out"], alone["out"]) < TOL,
             f"{where}: its outputs differ from its outputs alone by {_maxdiff(one['out'], alone['out']):.3g} "
             "(does step read the padded entries of its state or parameters?)")
    own = _own_states(cell, one["states"], h, pop.hmax)
    _require(_maxdiff(own, alone["states"]) < TOL,
             f"{where}: its own state units differ from alone by {_maxdiff(own, alone['states']):.3g}")
    mask0 = jax.tree_util.tree_map(lambda a: a[0], pop.mask)
    leak = max(float(np.max(np.abs(np.asarray(g) * (1 - np.asarray(m)))))
               for g, m in zip(jax.tree_util.tree_leaves(one["grad"]), jax.tree_util.tree_leaves(mask0)))
    _require(leak == 0.0, f"{where}: its padded parameters get a non-zero gradient (max {leak:.3g})")
    return f"{e}x{h} padded into {pop.emax}x{pop.hmax}: same outputs and states; padded gradient exactly 0"


def _population(cell):
    import jax
    r = _engine_runs(cell)
    pop, po = r["pop"], r["pop_out"]
    worst = 0.0
    for i, ((e, h, _), (solo, so)) in enumerate(zip(MODELS, r["solo"])):
        diff = max([abs(float(po["loss"][i]) - float(so["loss"][0])),
                    _maxdiff(po["out"][i], so["out"][0])]
                   + [_maxdiff(a, b) for a, b in zip(jax.tree_util.tree_leaves(pop.model_params(i, po["grad"])),
                                                     jax.tree_util.tree_leaves(solo.model_params(0, so["grad"])))])
        worst = max(worst, diff)
        _require(diff < TOL, f"model {i} ({e}x{h}) in a population of {len(MODELS)} gets outputs, a loss or "
                             f"gradients that differ from its own alone by {diff:.3g}")
    return (f"{len(MODELS)} models of sizes {', '.join(f'{e}x{h}' for e, h, _ in MODELS)}: outputs, loss and "
            f"gradients equal the solo ones (max difference {worst:.1g})")


_FUNCS = {"contract": _contract, "shapes": _shapes, "seeding": _seeding, "forms": _forms,
          "gradient": _gradient, "padding": _padding, "population": _population}


@x64
def check(cell, only=None) -> list[Result]:
    """Run the checks (`only`: a subset of :data:`CHECKS`, in that order) on `cell` (a Cell or a
    registered name). Never raises for a broken cell: each failure is a Result with ok=False."""
    from . import Cell, get
    from ..errors import ConfigError
    cell = get(cell) if isinstance(cell, str) else cell
    names = list(CHECKS if only is None else only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"checks: unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    if not isinstance(cell, Cell):
        return [Result("contract", False, f"not a rnnlab.cells.Cell: {type(cell).__name__}")]
    from . import CELLS
    registered = CELLS.get(cell.name) is cell
    _ENGINE.clear()
    out = []
    for name in names:
        if name in ("shapes", "seeding", "padding", "population") and not registered:
            out.append(Result(name, False, f"cell {cell.name!r} is not registered (rnnlab.cells.register): "
                                           "the engine finds cells by name"))
            continue
        try:
            out.append(Result(name, True, _FUNCS[name](cell)))
        except CheckFailed as e:
            out.append(Result(name, False, str(e)))
        except Exception as e:      # noqa: BLE001 - a cell that raises fails the check, with why
            where = traceback.extract_tb(e.__traceback__)[-1]
            msg = " ".join(str(e).split())[:300]
            out.append(Result(name, False, f"raised {type(e).__name__}: {msg} "
                                           f"(at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"))
    _ENGINE.clear()
    return out


def report(results: list[Result]) -> str:
    lines = [r.line() for r in results]
    bad = [r.check for r in results if not r.ok]
    lines.append(f"{len(results) - len(bad)}/{len(results)} checks pass"
                 + (f"; FAILED: {', '.join(bad)}" if bad else ""))
    return "\n".join(lines)
