"""Your own cell and task everywhere: plugins (files, modules, RNNLAB_PLUGINS, entry points),
one-line plugin errors, the cell conformance suite (passes on the built-in cells and the
example, names the failed check of deliberately broken cells), compare-cell, the results API,
`python -m rnnlab`, and an `import rnnlab` that changes no global state.

The example plugin in worker processes and on Ray: tests/test_backends.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import rnnlab
from rnnlab import cells, cli, compare, experiments, plugins, tasks
from rnnlab.backends.local import LocalBackend
from rnnlab.cells import conformance
from rnnlab.cells.base import Cell, Param, input_linear, linear
from rnnlab.errors import ConfigError, PluginError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_cell.py"
SRC = str(Path(rnnlab.__file__).resolve().parent.parent)


def _snapshot():
    return (dict(cells.CELLS), dict(tasks.TASKS), dict(experiments._EXTRA), dict(plugins._LOADED),
            dict(plugins._OWNER), dict(plugins._AUTO), set(sys.modules))


def _restore(snap):
    c, t, e, loaded, owner, auto, mods = snap
    for reg, old in ((cells.CELLS, c), (tasks.TASKS, t), (experiments._EXTRA, e), (plugins._LOADED, loaded),
                     (plugins._OWNER, owner), (plugins._AUTO, auto)):
        reg.clear()
        reg.update(old)
    for m in set(sys.modules) - mods:
        if m.startswith("rnnlab_plugin_") or m.startswith("t18_"):
            del sys.modules[m]


@pytest.fixture
def registry():
    """Whatever a test registers or loads is gone afterwards (the other test files see the
    built-in registries only)."""
    snap = _snapshot()
    yield
    _restore(snap)


@pytest.fixture(scope="module")
def example():
    snap = _snapshot()
    yield plugins.load(EXAMPLE)
    _restore(snap)


def _env():
    return {**os.environ, "RNNLAB_PROGRESS": "0", "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)}


def _main(argv, monkeypatch):
    """cli.main in this process (it sets MPLBACKEND for itself: restored afterwards)."""
    monkeypatch.setenv("MPLBACKEND", os.environ.get("MPLBACKEND", "Agg"))
    return cli.main(argv)


# ------------------------------------------------------------------------------ plugins


def test_example_registers_its_cell_and_task_once(example):
    assert cells.get("scaled-tanh").name == "scaled-tanh" and "scaled-tanh" not in cells.BUILTIN
    assert plugins.load(str(EXAMPLE)) is example and plugins.load(os.path.relpath(EXAMPLE)) is example
    assert plugins.owner("cell", "scaled-tanh") == str(EXAMPLE) == plugins.owner("task", "last")
    assert str(EXAMPLE) in plugins.loaded()
    data = tasks.make("last", 200, seed=3)
    assert data.labels.mean() not in (0.0, 1.0)
    for toks, label in zip(data.tokens, data.labels):          # the rule: the LAST non-stop word
        nonstop = [t for t in toks if t >= tasks.POS[0]]
        assert label == int(nonstop[-1] in tasks.POS)
    assert np.array_equal(tasks.make("last", 200, seed=3).tokens, data.tokens)      # seeded


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_broken_plugin_is_one_line_naming_the_file_and_the_error(tmp_path, registry):
    raising = _write(tmp_path / "raising.py", "import os\nx = 1\nraise ValueError('no good')\n")
    syntax = _write(tmp_path / "syntax.py", "def f(:\n    pass\n")
    cases = [(raising, rf"^plugin: {raising}: line 3: ValueError: no good$"),
             (syntax, rf"^plugin: {syntax}: line 1: SyntaxError: "),
             (tmp_path / "missing.py", rf"^plugin: {tmp_path / 'missing.py'}: no such file$"),
             ("t18_no_such_module", r"^plugin: t18_no_such_module: ModuleNotFoundError: No module named "
                                    r"'t18_no_such_module'$")]
    for spec, pattern in cases:
        with pytest.raises(PluginError, match=pattern) as e:
            plugins.load(spec)
        assert "\n" not in str(e.value)
    assert "raising" not in " ".join(sys.modules)               # nothing half-imported is left


def test_cli_exits_2_with_one_line_for_a_broken_plugin(tmp_path):
    """`python -m rnnlab` works; a broken --plugin ends any command with status 2, one line,
    no traceback."""
    bad = _write(tmp_path / "bad_cell.py", "import jax.numpy as jnp\n\nSTEP = undefined_name\n")
    r = subprocess.run([sys.executable, "-m", "rnnlab", "list", "--plugin", str(bad)], capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"rnnlab: error: plugin: {bad}: line 3: NameError: name 'undefined_name' is not defined\n"
    assert r.stdout == ""


CELL_PLUGIN = """
from rnnlab import cells
from rnnlab.cells.rnn import RNN_TANH
import dataclasses
cells.register(dataclasses.replace(RNN_TANH, name={name!r}))
"""


def test_env_and_entry_point_plugins_load_on_first_lookup(tmp_path, monkeypatch, registry):
    _write(tmp_path / "t18_env_cell.py", CELL_PLUGIN.format(name="env-cell"))
    _write(tmp_path / "t18_ep_cells.py", CELL_PLUGIN.format(name="ep-cell") + "\n\ndef more():\n"
           + "    cells.register(dataclasses.replace(RNN_TANH, name='ep-cell-2'))\n")
    dist = tmp_path / "t18_ep_dist-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: t18-ep-dist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rnnlab.plugins]\nmine = t18_ep_cells\nmore = t18_ep_cells:more\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RNNLAB_PLUGINS", f"{tmp_path / 't18_env_cell.py'}{os.pathsep}")
    monkeypatch.setitem(plugins._AUTO, "done", False)
    assert "env-cell" not in cells.CELLS
    assert cells.get("env-cell").name == "env-cell"            # the first lookup loads them all
    assert {"ep-cell", "ep-cell-2"} <= set(cells.CELLS)
    assert plugins.owner("cell", "ep-cell") == "t18_ep_cells"
    assert experiments.base.check_cells("rnn-tanh,env-cell") == ["rnn-tanh", "env-cell"]
    # a broken automatic plugin: every lookup that needs the plugins says so
    _write(tmp_path / "t18_env_bad.py", "raise RuntimeError('broken on purpose')\n")
    monkeypatch.setenv("RNNLAB_PLUGINS", str(tmp_path / "t18_env_bad.py"))
    monkeypatch.setitem(plugins._AUTO, "done", False)
    for _ in range(2):
        with pytest.raises(PluginError, match=r"t18_env_bad.py: line 1: RuntimeError: broken on purpose$"):
            cells.get("not-registered")


def test_registries_refuse_what_would_break_them(registry):
    rnn = cells.get("rnn-tanh")
    import dataclasses
    with pytest.raises(ConfigError, match="^cell: 'gru' is a built-in cell"):
        cells.register(dataclasses.replace(rnn, name="gru"))
    with pytest.raises(ConfigError, match="^cell: invalid cell name 'a,b'"):
        cells.register(dataclasses.replace(rnn, name="a,b"))
    with pytest.raises(ConfigError, match=r"^cell bad: params\['W_hh'\]: a w_rec tensor's last axis must be h"):
        cells.register(dataclasses.replace(rnn, name="bad", params={**rnn.params, "W_hh": Param(("h", "gh"), "w_rec")}))
    first = tasks.get("first")
    with pytest.raises(ConfigError, match="^task: 'first' is a built-in task"):
        tasks.register(first)
    with pytest.raises(ConfigError, match="^task mine: task_id must be an integer >= 1000"):
        tasks.register(dataclasses.replace(first, name="mine"))
    tasks.register(dataclasses.replace(first, name="mine", task_id=5000))
    with pytest.raises(ConfigError, match="^task other: task_id 5000 is already the id of task 'mine'"):
        tasks.register(dataclasses.replace(first, name="other", task_id=5000))
    with pytest.raises(ConfigError, match="^experiment: .* lacks execute, claims, figures"):
        experiments.register(type("E", (), {"NAME": "e", "PAPER": "x", "SOURCE": "", "QUESTION": "",
                                            "default_config": staticmethod(lambda s: {})}))


def test_user_cells_enter_store_keys_built_in_keys_are_unchanged(example):
    from rnnlab.experiments.base import Context
    from rnnlab.experiments.common import train_shard
    from rnnlab.store import config_hash
    ctx = Context("x", 1, {}, None, None, False)
    shard = {"cell": "gru", "task": "first"}
    plain = config_hash({"experiment": "x", "version": 1, "fn": f"{train_shard.__module__}.train_shard",
                         "shard": shard})
    assert ctx.shard_key(train_shard, shard) == plain                  # built-ins: as before
    mine = dict(shard, cell="scaled-tanh")
    fp = plugins.fingerprint(mine)
    assert list(fp) == ["cell:scaled-tanh"]
    assert ctx.shard_key(train_shard, mine) == config_hash(
        {"experiment": "x", "version": 1, "fn": f"{train_shard.__module__}.train_shard", "shard": mine,
         "plugins": fp})


def test_a_cell_registered_here_only_is_refused_by_worker_processes(registry):
    import dataclasses
    cells.register(dataclasses.replace(cells.get("rnn-tanh"), name="notebook-cell"))
    be = LocalBackend(processes=1)
    try:
        with pytest.raises(ConfigError, match="^plugin: cell 'notebook-cell' is registered in this process only"):
            list(be.map(_identity, [{"cell": "notebook-cell"}]))
        assert not be._pools                                    # refused before any process started
    finally:
        be.close()


def _identity(shard):
    return shard


def _in_worker(shard):
    from rnnlab import cells as registry
    return os.getpid(), "scaled-tanh" in registry.CELLS, bool(jax.config.jax_enable_x64), \
        os.environ.get("RNNLAB_PROGRESS"), bool(jax.config.jax_compilation_cache_dir)


def test_worker_processes_load_the_drivers_plugins_first(example):
    be = LocalBackend(processes=1)
    try:
        out = dict(be.map(_in_worker, [{"i": i} for i in range(2)]))
    finally:
        be.close()
    assert sorted(out) == [0, 1]
    assert os.getpid() not in {r[0] for r in out.values()}
    assert all(r[1:] == (True, True, "0", True) for r in out.values()), out   # plugin, float64, quiet, cache


# ----------------------------------------------------------------------------- float64


def test_rnnlab_threads_compute_in_float64_whatever_the_global_setting():
    from rnnlab.engine.train import sharded
    assert not jax.config.jax_enable_x64               # nobody switched it on globally
    seen = []

    def fn(x):
        seen.append((threading.current_thread().name, bool(jax.config.jax_enable_x64)))
        return x * 2
    with rnnlab.float64():
        out = sharded(fn, 4, 2, (("m", jnp.arange(4.0)),))
    assert out.dtype == jnp.float64 and len(seen) == 2
    assert all(name.startswith("rnnlab-shard") and on for name, on in seen)
    flags = dict(LocalBackend(workers=2).map(lambda s: bool(jax.config.jax_enable_x64), [{}, {}, {}]))
    assert flags == {0: True, 1: True, 2: True}
    assert not jax.config.jax_enable_x64


IMPORT_STATE = r'''
import json, logging, sys, warnings
import numpy as np, jax, jax.numpy as jnp
import pandas, pyarrow, duckdb, scipy.stats, optax, tqdm, matplotlib, matplotlib.pyplot   # its dependencies first
NAMES = ["jax_enable_x64", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
         "jax_platforms", "jax_default_matmul_precision", "jax_numpy_rank_promotion", "jax_debug_nans"]

def state():
    root = logging.getLogger()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dtype = str(jnp.zeros(2, jnp.float64).dtype)
    return {"jax": {n: str(getattr(jax.config, n)) for n in NAMES}, "float64": dtype, "warned": len(w),
            "geterr": np.geterr(), "print": str(np.get_printoptions()),
            "mpl_backend": str(dict.__getitem__(matplotlib.rcParams, "backend")),
            "root": [root.level, [type(h).__name__ for h in root.handlers]],
            "loggers": sorted(n for n, l in logging.root.manager.loggerDict.items()
                              if isinstance(l, logging.Logger) and (l.handlers or l.level)),
            "filters": [str(f) for f in warnings.filters]}

before = state()
import importlib, pkgutil
import rnnlab
mods = [m.name for m in pkgutil.walk_packages(rnnlab.__path__, "rnnlab.")
        if m.name not in ("rnnlab.__main__",)]
for m in mods:
    importlib.import_module(m)
from rnnlab import cells, experiments, tasks
from rnnlab.engine.model import ModelSpec
from rnnlab.engine.population import make_population, evaluate
from rnnlab.engine.train import device_data
experiments.registry()
spec = ModelSpec(cell="gru", dtype="float64")
pop = make_population(spec, 2, 2, [1, 2])
_, acc = evaluate(spec, "xent", 2, pop.params, pop.mask, device_data(tasks.make("first", 8, 0), jnp.float64))
after = state()
print(json.dumps({"before": before, "after": after, "modules": len(mods),
                  "params": str(pop.params["cell"]["W_hh"].dtype), "acc": str(acc.dtype)}))
'''


def test_import_rnnlab_changes_no_global_state(tmp_path):
    env = {k: v for k, v in _env().items() if not k.startswith("JAX_") and k not in ("MPLBACKEND",)}
    from rnnlab._jaxcfg import cache_dir
    if cache_dir():                  # compile from rnnlab's cache (speed), set by the user's way:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir()       # rnnlab must leave it as it is
    env["RNNLAB_JAX_CACHE"] = str(tmp_path / "not-for-a-library")
    r = subprocess.run([sys.executable, "-c", IMPORT_STATE], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["before"]["jax"]["jax_enable_x64"] == "False"
    assert out["before"]["float64"] == "float32" and out["before"]["warned"] == 1
    for key in out["before"]:
        assert out["after"][key] == out["before"][key], key
    assert out["modules"] > 40
    assert (out["params"], out["acc"]) == ("float64", "float64")      # inside rnnlab's calls: float64


# --------------------------------------------------------------------------- check-cell


CHEAP = ["contract", "shapes", "seeding", "forms"]


@pytest.mark.parametrize("name", sorted(cells.BUILTIN))
def test_built_in_cells_pass_the_quick_checks(name):
    results = conformance.check(name, only=CHEAP)
    assert [r.check for r in results] == CHEAP
    assert all(r.ok for r in results), conformance.report(results)


def test_gru_passes_every_check():
    """Every check on the gated cell here (on all built-in cells: the slow test below; on the
    example's tanh cell: through the CLI below)."""
    results = conformance.check("gru")
    assert [r.check for r in results] == list(conformance.CHECKS)
    assert all(r.ok for r in results), conformance.report(results)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(cells.BUILTIN))
def test_built_in_cells_pass_every_check(name):
    results = conformance.check(name)
    assert all(r.ok for r in results), conformance.report(results)


def test_check_cell_passes_on_the_example(example, monkeypatch, capsys):
    assert _main(["check-cell", f"{EXAMPLE}:scaled-tanh"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{len(conformance.CHECKS)}/{len(conformance.CHECKS)} checks pass"
    assert [ln.split()[1] for ln in out.splitlines()[1:-1]] == list(conformance.CHECKS)


def _rnn(name, step, state_mult=1):
    params = {"W_ih": Param(("gh", "in"), "w_in"), "W_hh": Param(("gh", "h"), "w_rec"),
              "b_ih": Param(("gh",), "bias"), "b_hh": Param(("gh",), "bias")}
    return cells.register(Cell(name, 1, params, step, state_mult=state_mult, bias_params=("b_ih", "b_hh")))


def _pre(p, h, x):
    return input_linear(p, x) + linear(p, "W_hh", "b_hh", h)


def test_a_cell_that_reads_padded_entries_fails_padding(registry):
    _rnn("reads-padding", lambda p, h, x: jnp.tanh(_pre(p, h, x) + jnp.mean(h)))
    res = {r.check: r for r in conformance.check("reads-padding", only=["shapes", "padding", "population"])}
    assert res["shapes"].ok
    assert not res["padding"].ok and "padded to 4x5" in res["padding"].message
    assert not res["population"].ok and "differ from its own alone" in res["population"].message


_NOISE = np.random.default_rng()


def test_a_nondeterministic_cell_fails_seeding(registry):
    _rnn("noisy", lambda p, h, x: jnp.tanh(_pre(p, h, x)) + 1e-3 * _NOISE.standard_normal())
    (r,) = conformance.check("noisy", only=["seeding"])
    assert not r.ok and r.message.startswith("step is not deterministic")


def test_a_wrong_shape_and_a_wrong_gradient_are_caught(registry):
    _rnn("wrong-shape", lambda p, h, x: jnp.concatenate([jnp.tanh(_pre(p, h, x))] * 2))
    (r,) = conformance.check("wrong-shape", only=["shapes"])
    assert not r.ok and "step returns a state of shape (6,), expected (3,)" in r.message

    @jax.custom_jvp
    def bad_tanh(v):
        return jnp.tanh(v)
    bad_tanh.defjvp(lambda primals, tangents: (jnp.tanh(primals[0]), 0.5 * tangents[0]))   # a wrong derivative
    _rnn("wrong-grad", lambda p, h, x: bad_tanh(_pre(p, h, x)))
    (r,) = conformance.check("wrong-grad", only=["gradient"])
    assert not r.ok and "finite differences" in r.message


def test_check_cell_cli_names_the_failed_checks(tmp_path, registry, monkeypatch, capsys):
    broken = _write(tmp_path / "broken_cell.py", """
        import jax.numpy as jnp
        from rnnlab import cells
        from rnnlab.cells.base import Cell, Param, input_linear, linear
        P = {"W_ih": Param(("gh", "in"), "w_in"), "W_hh": Param(("gh", "h"), "w_rec")}
        cells.register(Cell("doubled", 1, P, lambda p, h, x: jnp.concatenate(
            [jnp.tanh(input_linear(p, x) + linear(p, "W_hh", None, h))] * 2)))
    """)
    assert _main(["check-cell", f"{broken}:doubled"], monkeypatch) == 1
    out = capsys.readouterr().out
    assert "FAIL  shapes" in out and "PASS  contract" in out
    assert "checks pass; FAILED: shapes" in out.splitlines()[-1]
    assert _main(["check-cell", "nope"], monkeypatch) == 1
    assert capsys.readouterr().err == ("rnnlab: error: cell: unknown cell 'nope'; known: "
                                       + ", ".join(sorted(cells.CELLS)) + "\n")


# --------------------------------------------------------------------- compare-cell, results


def test_ranking_orders_by_verdict_then_the_claimed_direction():
    from rnnlab.analysis.claims import threshold_claim
    cl = [threshold_claim(f"more-{c}-vs-rnn-tanh", "", "", v, (v - 0.01, v + 0.01), 0.1, ">")
          for c, v in (("gru", 0.3), ("gru-s", 0.5), ("lstm", 0.05))]
    cl += [threshold_claim(f"close[{c} vs rnn-tanh]", "", "", v, None, 0.1, "<") for c, v in (("gru", 0.02), ("gru-s", 0.01))]
    cl += [threshold_claim("global", "", "", 1.0, None, 0.5, ">"), threshold_claim("vanishes[rnn-tanh]", "", "", 0.0, None, 0.5, "<")]
    df = compare.rank({"e": cl}, ["rnn-tanh", "gru", "gru-s", "lstm"]).set_index("claim")
    assert df.loc["more-gru-s-vs-rnn-tanh", "family"] == "more-{cell}-vs-rnn-tanh" == df.loc["more-gru-vs-rnn-tanh", "family"]
    assert [df.loc[f"more-{c}-vs-rnn-tanh", "rank"] for c in ("gru-s", "gru", "lstm")] == [1, 2, 3]   # lstm fails
    assert (df.loc["close[gru-s vs rnn-tanh]", "rank"], df.loc["close[gru vs rnn-tanh]", "rank"]) == (1, 2)
    assert df.loc["vanishes[rnn-tanh]", "cell"] == "rnn-tanh" and pd.isna(df.loc["global", "cell"])
    s = compare.summarize(df.reset_index(), ["rnn-tanh", "gru", "gru-s", "lstm"]).set_index("cell")
    assert s.loc["gru-s", "wins"] == 2 and s.loc["gru-s", "mean_rank"] == 1.0 and s.index[0] == "gru-s"


@pytest.fixture(scope="module")
def compared(example, tmp_path_factory):
    """rnnlab compare-cell at tiny scale on capacity-inits (First only) against rnn-tanh and gru."""
    out = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        rc = _main(["compare-cell", "scaled-tanh", "--plugin", str(EXAMPLE), "--against", "rnn-tanh,gru",
                    "--experiments", "capacity-inits", "--scale", "tiny", "--set", 'tasks=["first"]',
                    "--out", str(out)], mp)
    assert rc == 0
    return out


def test_compare_cell_ranks_the_cell_into_the_report(compared):
    doc = json.loads((compared / "compare-scaled-tanh" / "ranking.json").read_text())
    assert (doc["cell"], doc["against"], doc["experiments"]) == ("scaled-tanh", ["rnn-tanh", "gru"], ["capacity-inits"])
    fams = {(r["family"], r["cell"]) for r in doc["ranking"]}
    for fam in ("similar-capacity-first-2x4-{cell}-vs-rnn-tanh", "similar-capacity-first-4x4-{cell}-vs-rnn-tanh",
                "more-good-inits-first-{cell}-vs-rnn-tanh"):
        assert {(fam, "gru"), (fam, "scaled-tanh")} <= fams
    assert [r["cell"] for r in doc["summary"]] and {r["cell"] for r in doc["summary"]} == {"rnn-tanh", "gru", "scaled-tanh"}
    page = (compared / "report.html").read_text()
    assert 'id="ranking-exp-scaled-tanh"' in page and '<tr data-cell="scaled-tanh">' in page
    assert "compare-scaled-tanh/report.html" in page and (compared / "compare-scaled-tanh" / "report.html").exists()
    assert "## Ranking: scaled-tanh against rnn-tanh, gru" in (compared / "report.md").read_text()


def test_results_api(compared):
    r = rnnlab.open(compared)
    ex = r.experiments()
    assert ex[["experiment", "folder"]].values.tolist() == [["capacity-inits", "compare-scaled-tanh"]]
    cl = r.claims()
    # per compared cell (gru, scaled-tanh): capacity at the paper's two sizes (2x4, 4x4) + good inits
    assert len(cl) == ex.loc[0, "claims"] == 6 and set(cl.verdict) <= {"holds", "fails", "inconclusive"}
    assert list(cl.columns[:7]) == ["experiment", "folder", "claim", "verdict", "value", "lo", "hi"]
    acc = r.table("capacity-inits.accuracy", all_runs=True)
    assert set(acc.cell) == {"rnn-tanh", "gru", "scaled-tanh"}
    n = r.sql("SELECT count(*) AS n FROM capacity_inits_accuracy")["n"][0]
    assert n == len(acc)
    rk = r.rankings()
    assert set(rk.compared) == {"scaled-tanh"} and len(rk) == len(cl)
    with pytest.raises(ConfigError, match="^table: no table 'nope.x'"):
        r.table("nope.x")
    with pytest.raises(ConfigError, match="^results: .* does not exist"):
        rnnlab.open(compared / "nothing-here")
