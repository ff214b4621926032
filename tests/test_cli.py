"""The `rnnlab` command: a tiny `train` through the real console script, bad arguments (one line
on stderr naming the field, no traceback), and `run` / `reproduce` / `report` / `bench` with a
fake experiment registered in place of the real ones (so these tests do not depend on them)."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import rnnlab.experiments as experiments
from rnnlab import cli
from rnnlab.store import Store

FAKE = textwrap.dedent('''
    """A tiny experiment with the contract: two claims, the second one always fails."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from rnnlab.analysis.claims import threshold_claim
    from rnnlab.experiments import base

    NAME = "fake-exp"
    PAPER = "mehta"
    SOURCE = "M test, Fig. 0"
    QUESTION = "Does the command line run an experiment end to end?"
    ORDER = 1
    VERSION = 1
    CHOICES = {"n": "values per cell: ours"}


    def default_config(scale):
        return {"seed": 0, "cells": ["rnn-tanh", "gru"], "n": 5 if scale == "tiny" else 50,
                "threshold": 2.0}


    def shard_fn(shard):
        rng = np.random.default_rng([shard["seed"], len(shard["cell"])])
        return {"values": pd.DataFrame({"cell": shard["cell"], "x": rng.random(shard["n"])})}


    def execute(ctx):
        c = ctx.config
        outs = ctx.map(shard_fn, [{"seed": c["seed"], "cell": cell, "n": c["n"]} for cell in c["cells"]])
        return {"values": pd.concat([o["values"] for o in outs], ignore_index=True)}


    def figures(tables, config):
        fig, ax = plt.subplots(figsize=(3, 2))
        for cell, g in tables["values"].groupby("cell"):
            ax.plot(g["x"].to_numpy(), label=cell)
        ax.set_title("values")
        ax.legend()
        return {"values": fig}


    def claims(tables, config):
        m = float(tables["values"]["x"].mean())
        return [threshold_claim("mean-positive", "The mean is positive.", "mean x", m, None, 0.0),
                threshold_claim("mean-large", "The mean exceeds the threshold.", "mean x", m, None,
                                config["threshold"])]


    def run(config=None, **kw):
        return base.run(NAME, config, **kw)
''')

BROKEN = textwrap.dedent('''
    NAME = "broken-exp"
    PAPER = "sterin"
    SOURCE = "S test"
    QUESTION = "Does reproduce go on after a broken experiment?"
    ORDER = 2
    VERSION = 1
    CHOICES = {}

    def default_config(scale):
        return {"seed": 0, "cells": ["gru"]}

    def execute(ctx):
        raise RuntimeError("deliberately broken")

    def figures(tables, config):
        return {}

    def claims(tables, config):
        return []
''')

WRAPPER = textwrap.dedent('''
    """`rnnlab` with the fake experiment registered in place of the real ones."""
    import sys
    sys.path.insert(0, {here!r})
    import fake_exp
    import rnnlab.experiments as E
    E._REGISTRY = {{fake_exp.NAME: fake_exp}}
    from rnnlab.cli import main
    sys.exit(main(sys.argv[1:]))
''')


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fake")
    (d / "fake_exp.py").write_text(FAKE)
    (d / "broken_exp.py").write_text(BROKEN)
    (d / "run_cli.py").write_text(WRAPPER.format(here=str(d)))
    (d / "afile").write_text("not a folder")
    (d / "bad.json").write_text(json.dumps({"n": 3, "bogus_key": 1}))
    (d / "latin1.json").write_bytes('{"n": 3, "note": "café"}'.encode("latin-1"))   # not UTF-8
    (d / "emptydir").mkdir()
    Store(d / "results" / "store")       # an (empty) store for the query cases
    return d


@pytest.fixture
def fake_registry(fake_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_dir))
    mods = [importlib.import_module(m) for m in ("fake_exp", "broken_exp")]
    monkeypatch.setattr(experiments, "_REGISTRY", {m.NAME: m for m in mods})
    monkeypatch.setenv("RNNLAB_PROGRESS", "0")
    return mods


def rnnlab_cmd() -> list[str]:
    script = Path(sys.executable).parent / "rnnlab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rnnlab.cli"]


def _env():
    return {**os.environ, "RNNLAB_PROGRESS": "0", "JAX_PLATFORMS": "cpu"}


# ------------------------------------------------------------------------------ train

def test_train_tiny_then_reuse_and_query(tmp_path):
    out = tmp_path / "res"
    args = ["train", "--task", "first", "--cell", "gru", "--input", "2", "--hidden", "3", "--inits", "3",
            "--epochs", "2", "--train-size", "64", "--val-size", "50", "--test-size", "50",
            "--out", str(out), "--device", "cpu"]
    r = subprocess.run(rnnlab_cmd() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if "best_val_acc" in line)
    for col in ("seed", "test_acc", "epochs", "status"):
        assert col in lines[head]
    assert [line.split()[1] for line in lines[head + 1: head + 4]] == ["0", "1", "2"]   # seeds
    assert any(line.startswith("3 models: best val acc median") for line in lines)
    assert "Traceback" not in r.stderr

    again = subprocess.run(rnnlab_cmd() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stderr
    assert "reusing the stored result" in again.stdout

    sql = ("SELECT count(*) AS n, min(epochs) AS e, count(DISTINCT key) AS k, "
           "(SELECT count(*) FROM train_curves) AS nc FROM train_summary")
    q = subprocess.run(rnnlab_cmd() + ["query", sql, "--out", str(out)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines()[-1].split() == ["0", "3", "2", "1", "9"]   # 3 models x (init + 2 epochs)
    t = subprocess.run(rnnlab_cmd() + ["query", "--tables", "--out", str(out)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert t.returncode == 0 and "train_summary" in t.stdout and "train_curves" in t.stdout


# ----------------------------------------------------------------------- bad arguments
# (case id, argv, field named in the message); {d} is the fake folder

BAD = [
    ("unknown-task", "train --task nope --cell gru", "task"),
    ("unknown-cell", "train --task first --cell nope", "cell"),
    ("probe-task", "train --task discrepancy --cell gru", "task"),
    ("hidden-0", "train --task first --cell gru --hidden 0", "hidden"),
    ("input-negative", "train --task first --cell gru --input -1", "input"),
    ("inits-0", "train --task first --cell gru --inits 0", "inits"),
    ("epochs-abc", "train --task first --cell gru --epochs abc", "epochs"),
    ("train-size-0", "train --task first --cell gru --train-size 0", "train-size"),
    ("lr-infinite", "train --task first --cell gru --lr 1e309", "lr"),
    ("lr-nan", "train --task first --cell gru --lr nan", "lr"),
    ("train-out-file", "train --task first --cell gru --out {d}/afile", "out"),
    ("unknown-experiment", "run no-such-experiment", "experiment"),
    ("scale-huge", "run fake-exp --scale huge", "scale"),
    ("set-unknown-key", "run fake-exp --set unknownkey=1", "unknownkey"),
    ("set-bad-type", "run fake-exp --set n=abc", "n"),
    ("set-no-equals", "run fake-exp --set n", "set"),
    ("cells-unknown", "run fake-exp --cells gru,nope", "cells"),
    ("config-unknown-key", "run fake-exp --config {d}/bad.json", "bogus_key"),
    ("config-missing", "run fake-exp --config {d}/missing.json", "config"),
    ("config-not-utf8", "run fake-exp --config {d}/latin1.json", "config"),
    ("run-out-file", "run fake-exp --out {d}/afile", "out"),
    ("address-without-ray", "run fake-exp --address 1.2.3.4:6379", "address"),
    ("bad-sql", "query 'SELEC nonsense' --out {d}/results", "sql"),
    ("query-no-sql", "query --out {d}/results", "sql"),
    ("query-no-store", "query --tables --out {d}/empty", "out"),
    ("report-missing-dir", "report {d}/missing", "out"),
    ("report-empty-dir", "report {d}/emptydir", "dir: nothing to report"),
    ("query-copy", "query \"COPY (SELECT 1) TO '{d}/x.csv'\" --out {d}/results", "sql: query refused"),
    ("query-attach", "query \"ATTACH '{d}/x.db'\" --out {d}/results", "sql: query refused"),
    ("query-install", "query 'INSTALL httpfs' --out {d}/results", "sql: query refused"),
    ("unknown-command", "frobnicate", "command"),
    ("reproduce-paper", "reproduce --paper nobody", "paper"),
]


def _argv(template: str, d: Path) -> list[str]:
    import shlex
    return shlex.split(template.format(d=d))


def _one_line_error(code, err: str, field: str):
    assert code not in (0, None), err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnlab: error: "), lines[0]
    assert field in lines[0], lines[0]


@pytest.mark.parametrize("case,template,field", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_in_process(case, template, field, fake_dir, fake_registry, capsys):
    try:
        code = cli.main(_argv(template, fake_dir))
    except SystemExit as e:          # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    _one_line_error(code, err, field)


#: the same through real processes (the console script and the fake-registry wrapper), run
#: concurrently: one case per kind of error - argparse, ConfigError from train and from run,
#: StoreError, SQL, report (every case runs in process above; a process costs ~2.5 s of imports)
SUBPROCESS_CASES = ["unknown-task", "epochs-abc", "train-out-file", "set-unknown-key", "bad-sql",
                    "report-empty-dir", "config-not-utf8"]


@pytest.fixture(scope="module")
def subprocess_results(fake_dir):
    cases = {b[0]: b for b in BAD if b[0] in SUBPROCESS_CASES}

    def go(case):
        _, template, field = cases[case]
        argv = _argv(template, fake_dir)
        cmd = rnnlab_cmd() if argv[0] == "train" else [sys.executable, str(fake_dir / "run_cli.py")]
        r = subprocess.run(cmd + argv, capture_output=True, text=True, env=_env(), timeout=120)
        return case, (r.returncode, r.stderr, field)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(go, cases))


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_arguments_subprocess(case, subprocess_results):
    code, err, field = subprocess_results[case]
    _one_line_error(code, err, field)


def test_refused_inputs_leave_nothing_behind(fake_dir, subprocess_results):
    """The refused query wrote no file, the empty folder got no report (after all the cases
    above ran, in process and in subprocesses)."""
    assert not (fake_dir / "x.csv").exists() and not (fake_dir / "x.db").exists()
    assert list((fake_dir / "emptydir").iterdir()) == []


# ------------------------------------------------------------- run / reproduce / report


def test_run_reproduce_report(tmp_path, fake_registry, capsys):
    out = tmp_path / "res"
    assert cli.main(["run", "fake-exp", "--scale", "tiny", "--out", str(out), "--set", "n=4",
                     "--cells", "rnn-tanh,gru,lstm", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "mean-positive" in text and "holds" in text
    assert "FAILS" in text and "Our run does NOT reproduce claim mean-large" in text
    assert f"outputs: {out / 'fake-exp'}" in text and "3 shard(s) computed" in text
    claims = json.loads((out / "fake-exp" / "claims.json").read_text())
    assert [c["verdict"] for c in claims] == ["holds", "fails"]
    cfg = json.loads((out / "fake-exp" / "config.json").read_text())["config"]
    assert cfg["n"] == 4 and cfg["cells"] == ["rnn-tanh", "gru", "lstm"] and cfg["scale"] == "tiny"

    # the same command again reuses the run; a run's config.json is a valid --config file
    shutil.copy(out / "fake-exp" / "config.json", tmp_path / "again.json")
    assert cli.main(["run", "fake-exp", "--config", str(tmp_path / "again.json"), "--out", str(out)]) == 0
    assert "reused the stored run" in capsys.readouterr().out

    # reproduce: the broken experiment is reported, the others still run, the report is written
    code = cli.main(["reproduce", "--scale", "tiny", "--out", str(out), "--device", "cpu"])
    text, err = capsys.readouterr()
    assert code == 1
    assert "deliberately broken" in err
    assert "2 experiments (all, scale tiny), 2 claims: 1 hold, 1 fail, 0 inconclusive (100.0% decided)" in text
    assert "FAILED to run: broken-exp" in text and "total wall time" in text
    repro = json.loads((out / "reproduce.json").read_text())
    assert repro["experiments"]["fake-exp"]["status"] == "done"
    assert repro["experiments"]["broken-exp"]["status"] == "failed"
    html = (out / "report.html").read_text()
    assert "Our run does NOT reproduce this claim:" in html and "deliberately broken" in html
    assert 'data-claim="mean-large" data-verdict="fails"' in html
    assert "](fake-exp/values.png)" in (out / "report.md").read_text()

    (out / "report.html").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert "1/2 experiments with results" in capsys.readouterr().out
    assert (out / "report.html").exists()

    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    assert "fake-exp" in text and "M test, Fig. 0" in text and "broken-exp" in text


def test_reproduce_one_paper(tmp_path, fake_registry, capsys):
    assert cli.main(["reproduce", "--paper", "mehta", "--scale", "tiny", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "1 experiments (mehta, scale tiny)" in text
    assert (tmp_path / "report.html").exists() and (tmp_path / "report.md").exists()


def test_bench_missing_and_present(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rnnlab.bench", None)   # as if the module did not exist
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnlab: error: bench:")
    calls = []
    monkeypatch.setitem(sys.modules, "rnnlab.bench", types.SimpleNamespace(main=lambda quick: calls.append(quick)))
    assert cli.main(["bench", "--quick", "--device", "cpu"]) == 0
    assert calls == [True]


def test_list_real_registry():
    """`rnnlab list` over whatever experiments exist (all of them must import)."""
    r = subprocess.run(rnnlab_cmd() + ["list"], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["experiment", "paper", "source"]
    for name in experiments.names():
        assert name in r.stdout


def test_reproduce_releases_compiled_programs_near_the_map_limit(monkeypatch):
    """Between experiments, reproduce drops JAX's compiled programs once the process holds more
    than half of vm.max_map_count memory maps (a long run once died at the limit), not before."""
    import jax
    import jax.numpy as jnp
    from rnnlab import envvars
    f = jax.jit(lambda x: x * 3.0)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    monkeypatch.setattr(envvars, "memory_maps", lambda: (30000, 65530))
    cli._release_compiled()
    assert f._cache_size() == 1                       # below half the limit: kept
    monkeypatch.setattr(envvars, "memory_maps", lambda: (40000, 65530))
    cli._release_compiled()
    assert f._cache_size() == 0                       # above: released


def test_memory_maps_reads_this_process():
    from rnnlab import envvars
    used, limit = envvars.memory_maps()
    if limit is None:
        pytest.skip("no /proc/self/maps here")
    assert 0 < used < limit


def test_reproduce_jobs_match_one_process(tmp_path):
    """`reproduce --jobs 2` (experiments in two pinned worker processes) computes what one
    process computes: the same claims, value for value, and a reproduce.json that says so."""
    outs = {}
    for jobs in (2, 1):
        out = tmp_path / f"jobs{jobs}"
        r = subprocess.run(rnnlab_cmd() + ["reproduce", "--paper", "sterin", "--scale", "tiny", "--out", str(out),
                                           "--device", "cpu", "--jobs", str(jobs)],
                           capture_output=True, text=True, env=_env(), timeout=600)   # the suite's compilation cache
        assert r.returncode == 0, r.stderr[-3000:]
        repro = json.loads((out / "reproduce.json").read_text())
        assert repro["jobs"] == jobs
        assert all(s["status"] == "done" and not s["reused"] for s in repro["experiments"].values())
        outs[jobs] = {n: json.loads((out / n / "claims.json").read_text()) for n in repro["experiments"]}
    assert len(outs[2]) == 4 and outs[2] == outs[1]


def test_schedule_runs_the_model_owners_first():
    """reproduce's longest-first order starts the experiment that trains shared models before
    the one that reuses them (random-landscape -> perturbation, embedded-reber ->
    gradient-distribution), so the second reads them from the store instead of training them."""
    from rnnlab import experiments
    from rnnlab.backends.jobs import longest_first
    from rnnlab.backends.jobs import PAPER_WALL_S, QUICK_WALL_S
    assert set(PAPER_WALL_S) == set(QUICK_WALL_S) == set(experiments.names())
    for scale in ("quick", "paper"):
        order = longest_first(experiments.names(), scale)
        for first, second in (("random-landscape", "perturbation"), ("embedded-reber", "gradient-distribution")):
            assert order.index(first) < order.index(second)
    assert longest_first(experiments.names(), "paper")[0] == "random-landscape"
    assert longest_first(["fixed-points", "my-plugin-exp"], "paper") == ["my-plugin-exp", "fixed-points"]
