"""Beyond one machine: the device choice, and shards on a real (local, loopback) Ray cluster give
the same tables as the local backend, whatever the order of the shards or the number of workers.

The Ray tests (marker ``ray``) start their own head node with ``ray start`` on 127.0.0.1 in its
own process group and temp folder, and stop it by killing that process group (never a global
``ray stop``, which would also stop other people's Ray instances on the machine).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import rnnlab
from rnnlab import backends, device, experiments
from rnnlab.backends.local import LocalBackend
from rnnlab.errors import ConfigError
from rnnlab.experiments.common import train_shard

# --------------------------------------------------------------------------- shards used below

_SHARD = dict(task="first", task_seed=3, cell="gru", init="torch", sizes=[[2, 2], [2, 4], [4, 2]],
              seeds=[11, 12, 13], protocol="mehta", max_epochs=2,
              data_sizes={"train": 96, "val": 48, "test": 48})


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for t in a:
        pd.testing.assert_frame_equal(a[t].reset_index(drop=True), b[t].reset_index(drop=True),
                                      check_exact=True, obj=t)


# ----------------------------------------------------------------------------------- device


def test_device_auto_picks_what_jax_sees():
    assert device.select("auto") == ("gpu" if device.gpu_available() else "cpu")


def test_device_unknown_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^device: unknown device 'tpu'; known: auto, cpu, gpu$"):
        device.select("tpu")


def test_device_cpu():
    if device.gpu_available():
        pytest.skip("select('cpu') would switch this process off its GPU")
    assert device.select("cpu") == "cpu"
    assert jax.numpy.ones(2).devices() == {jax.devices("cpu")[0]}


def test_device_gpu_without_gpu_is_a_config_error():
    if device.gpu_available():
        assert device.select("gpu") == "gpu"
        return
    with pytest.raises(ConfigError) as e:
        device.select("gpu")
    msg = str(e.value)
    assert msg.startswith("device:") and "\n" not in msg


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 2e-3)])
def test_population_on_gpu_matches_cpu(dtype, tol):
    shard = dict(_SHARD, dtype=dtype, sizes=[[2, 2], [2, 4], [4, 2], [4, 4]], seeds=[1, 2, 3, 4])
    with jax.default_device(jax.devices("cpu")[0]):
        cpu = train_shard(shard)
    with jax.default_device(jax.devices("gpu")[0]):
        gpu = train_shard(shard)
    c, g = cpu["curves"].dropna(subset=["loss"]), gpu["curves"].dropna(subset=["loss"])
    for col in ("loss", "val_loss"):
        np.testing.assert_allclose(g[col].to_numpy(), c[col].to_numpy(), rtol=tol, atol=tol)
    # accuracies: at most one example may flip in float32 (a logit within rounding of a tie)
    n_val = shard["data_sizes"]["val"]
    atol_acc = 0 if dtype == "float64" else 1.0 / n_val + 1e-12
    np.testing.assert_allclose(g["val_acc"].to_numpy(), c["val_acc"].to_numpy(), rtol=0, atol=atol_acc)
    for (_, a), (_, b) in zip(cpu["params"].iterrows(), gpu["params"].iterrows()):
        np.testing.assert_allclose(b["values"], a["values"], rtol=tol, atol=tol)


# ------------------------------------------------------------------------------ ray: basics


def test_ray_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"^backend: ray is not installed; pip install 'rnnlab\[ray\]'$"):
        backends.get("ray")


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^backend: unknown backend 'spark'"):
        backends.get("spark")


# ------------------------------------------------------------------------ ray: a real cluster

RAY_START_S: dict = {}


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node on 127.0.0.1 with 2 CPUs (rnnlab.backends.ray_head: the venv's `ray start` in
    its own process group and temp folder); yields its address. Stopped by killing that process
    group (and only it)."""
    pytest.importorskip("ray")
    from rnnlab.backends.ray_head import LocalHead, ray_command
    if not Path(ray_command()[0]).exists():
        pytest.skip(f"{ray_command()[0]} not found")
    # Hermetic against the machine's Ray state: Ray >= 2.5x turns token authentication on for
    # `ray start` when ~/.ray/auth_token exists (any earlier local ray.init() writes one), while a
    # client with RAY_AUTH_MODE unset connects without the token and is refused (InvalidAuthToken).
    # The head, this process and every subprocess the tests start use the same explicit mode.
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.delenv("RAY_ADDRESS", raising=False)
    head = LocalHead(num_cpus=2, timeout=60)
    try:
        head.start()
        RAY_START_S["ray start"] = head.start_s
        yield head.address
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
        head.stop()
        mp.undo()
        print(f"\n`ray start` took {RAY_START_S.get('ray start', float('nan')):.1f} s")


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory):
    """Workers inherit the driver's JAX_* settings: a shared compilation cache, so the second
    batch of workers loads what the first compiled (speed only; results are compared exactly)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax-cache")))
        mp.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        yield


EXP = "capacity-inits"


def _child_env(**extra) -> dict:
    """This process's environment for a `python -m rnnlab` child, with this rnnlab importable."""
    path = os.pathsep.join(p for p in (str(Path(rnnlab.__file__).resolve().parent.parent),
                                       os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def both_runs(ray_cluster, worker_env, tmp_path_factory):
    """capacity-inits at scale tiny through the Ray cluster (its workers compile first and fill
    the shared compilation cache), then through the local backend in a fresh process."""
    ray_res = experiments.run(EXP, scale="tiny", backend="ray", address=ray_cluster,
                              out=tmp_path_factory.mktemp("ray"), progress=False)
    local_out = tmp_path_factory.mktemp("local")
    r = subprocess.run([sys.executable, "-m", "rnnlab.cli", "run", EXP, "--scale", "tiny", "--out",
                        str(local_out), "--quiet", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300,
                       env=_child_env())
    assert r.returncode == 0, r.stderr[-3000:]
    return ray_res, local_out


@pytest.mark.ray
def test_ray_experiment_tables_equal_local(both_runs):
    ray_res, local_out = both_runs
    local_dir = local_out / EXP
    assert not __import__("ray").is_initialized()              # the run disconnected its driver
    local_info = json.loads((local_dir / "run.json").read_text())
    ray_info = json.loads((ray_res.out_dir / "run.json").read_text())
    assert ray_info["run_id"] == local_info["run_id"] == ray_res.run_id
    assert (ray_info["backend"], local_info["backend"]) == ("ray", "local")
    assert ray_info["shards_computed"] == local_info["shards_computed"] == 8     # task x cell x hidden
    names = sorted(p.name for p in local_dir.glob("*.parquet"))
    assert names == sorted(p.name for p in ray_res.out_dir.glob("*.parquet")) and names
    for n in names:
        pd.testing.assert_frame_equal(pd.read_parquet(ray_res.out_dir / n),
                                      pd.read_parquet(local_dir / n), check_exact=True, obj=n)
    assert (ray_res.out_dir / "claims.json").read_text() == (local_dir / "claims.json").read_text()


@pytest.mark.ray
def test_ray_shard_results_do_not_depend_on_order_or_workers(both_runs, ray_cluster):
    import ray
    from rnnlab.experiments.base import Context
    from rnnlab.experiments.trainability_grid import accuracy_shard, grid_shards
    from rnnlab.store import Store
    ray_res, local_out = both_runs
    shards = grid_shards(ray_res.config, tag=4)                # capacity-inits' own shards
    store = Store(local_out / "store")                         # what the local backend stored
    ctx = Context(EXP, experiments.get(EXP).VERSION, ray_res.config, store, None, False)
    local = [ctx._cached(ctx.shard_key(accuracy_shard, sh)) for sh in shards]
    assert all(x is not None for x in local)
    with backends.get("ray", ray_cluster) as be:
        assert be.name == "ray"
        two = dict(be.map(accuracy_shard, shards[::-1]))       # 2 workers, reverse order
        be.max_in_flight = 1
        one = dict(be.map(accuracy_shard, shards))             # 1 worker at a time, in order
        # a backend made while Ray is connected uses that connection and leaves it open
        with backends.get("ray", ray_cluster) as inner:
            # a shard's deliberate error reaches the driver as itself (one line, same type)
            with pytest.raises(ConfigError, match=r"^cell: unknown cell 'no-such-cell'"):
                list(inner.map(train_shard, [dict(_SHARD, cell="no-such-cell")]))
        assert ray.is_initialized()
    assert not ray.is_initialized()                            # closed what it opened
    n = len(shards)
    assert sorted(one) == sorted(two) == list(range(n))
    for i in range(n):
        _assert_same(one[i], local[i])
        _assert_same(two[n - 1 - i], local[i])


@pytest.fixture(scope="module")
def plugin_runs(ray_cluster, worker_env, tmp_path_factory):
    """The example plugin's cell in capacity-inits (tiny, First only) through the CLI, on the
    Ray cluster and in 2 local worker processes: both load the plugin before any shard."""
    example = Path(__file__).resolve().parents[1] / "examples" / "plugin_cell.py"
    args = [sys.executable, "-m", "rnnlab", "run", EXP, "--plugin", str(example), "--cells", "rnn-tanh,scaled-tanh",
            "--scale", "tiny", "--set", 'tasks=["first"]', "--quiet", "--device", "cpu"]
    env = _child_env(RNNLAB_PROGRESS="0")
    outs = {}
    for name, extra in (("ray", ["--backend", "ray", "--address", ray_cluster]), ("processes", ["--processes", "2"])):
        out = tmp_path_factory.mktemp(f"plugin-{name}")
        r = subprocess.run(args + ["--out", str(out)] + extra, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[name] = out / EXP
    return outs


@pytest.mark.ray
def test_plugin_cell_on_ray_equals_local_worker_processes(plugin_runs):
    ray_dir, proc_dir = plugin_runs["ray"], plugin_runs["processes"]
    info = [json.loads((d / "run.json").read_text()) for d in (ray_dir, proc_dir)]
    assert [i["backend"] for i in info] == ["ray", "local"] and info[0]["run_id"] == info[1]["run_id"]
    assert info[0]["shards_computed"] == info[1]["shards_computed"] == 4         # cell x hidden
    acc = pd.read_parquet(ray_dir / "accuracy.parquet")
    assert set(acc.cell) == {"rnn-tanh", "scaled-tanh"}
    for n in sorted(p.name for p in ray_dir.glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(ray_dir / n), pd.read_parquet(proc_dir / n),
                                      check_exact=True, obj=n)
    assert (ray_dir / "claims.json").read_text() == (proc_dir / "claims.json").read_text()


def test_ray_unreachable_address_fails_fast():
    pytest.importorskip("ray")
    from rnnlab.backends.ray_head import free_ports
    (port,) = free_ports(1)                                    # nothing listens there
    t0 = time.perf_counter()
    for address, start in ((f"127.0.0.1:{port}", "address: no Ray cluster answers"),
                           ("no-port", "address: expected HOST:PORT")):
        with pytest.raises(ConfigError, match=f"^{start}"):
            backends.get("ray", address)
    assert time.perf_counter() - t0 < 15


@pytest.mark.ray
def test_new_local_ray_instance_never_forks_jax(tmp_path):
    """`--backend ray` without an address starts a private head with `ray start` (not forked from
    the driver, which has initialized JAX): no "os.fork() was called" warning, the same tables as
    the local backend, and no Ray process left once the run ends - also with a token file in
    HOME (which switches a plain `ray start` to token authentication)."""
    pytest.importorskip("ray")
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0" * 64 + "\n")
    env = _child_env(HOME=str(home), RNNLAB_PROGRESS="0", PYTHONWARNINGS="default")
    for k in ("RAY_ADDRESS", "RAY_AUTH_MODE"):
        env.pop(k, None)
    outs = {}
    for be in ("ray", "local"):
        outs[be] = tmp_path / be
        r = subprocess.run([sys.executable, "-m", "rnnlab", "run", EXP, "--scale", "tiny", "--set", 'tasks=["first"]',
                            "--set", 'hiddens=[2]', "--backend", be, "--out", str(outs[be])],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "os.fork()" not in r.stderr + r.stdout
    for n in sorted(p.name for p in (outs["ray"] / EXP).glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(outs["ray"] / EXP / n),
                                      pd.read_parquet(outs["local"] / EXP / n), check_exact=True, obj=n)
    assert not _processes_with_env(f"HOME={home}")              # the private head is gone


def _processes_with_env(entry: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and entry.encode() in Path(f"/proc/{d}/environ").read_bytes().split(b"\0"):
                found.append(int(d))
        except OSError:
            continue
    return found


def _square(shard):
    return shard["x"] ** 2


def test_local_backend_yields_every_shard_in_order():
    be = LocalBackend(workers=1)
    assert be.name == "local"
    assert list(be.map(_square, [{"x": 3}, {"x": 1}, {"x": 2}])) == [(0, 9), (1, 1), (2, 4)]
    be.close()


def _slow_square(shard):
    time.sleep(shard["wait"])
    from rnnlab.engine.train import _cpus
    return shard["x"] ** 2, _cpus(), threading.current_thread().name


def test_local_backend_runs_shards_concurrently_each_with_its_share_of_the_cores():
    be = LocalBackend(workers=2)
    shards = [{"x": 3, "wait": 0.6}, {"x": 1, "wait": 0.05}, {"x": 2, "wait": 0.05}]
    t0 = time.perf_counter()
    out = list(be.map(_slow_square, shards))
    assert time.perf_counter() - t0 < 0.6 + 0.05 + 0.4          # the short ones ran beside the long one
    assert [i for i, _ in out] == [1, 2, 0]                      # yielded as they finish
    from rnnlab.engine.train import _cpus
    assert {r[1] for _, r in out} == {max(1, _cpus() // 2)}      # each shard: half the cores
    assert all(r[2].startswith("rnnlab-local") for _, r in out)
    assert sorted((i, r[0]) for i, r in out) == [(0, 9), (1, 1), (2, 4)]


def _fail_on_one(shard):
    if shard["x"] == 1:
        raise ValueError("shard 1 is broken")
    time.sleep(0.3 if shard["x"] == 0 else 0.01)
    return shard["x"]


def test_local_backend_error_stops_the_sweep_and_is_raised():
    """Shards are submitted as workers free up: when shard 1 fails while shard 0 still runs,
    no other shard has been started."""
    started = []
    be = LocalBackend(workers=2)
    shards = [{"x": k} for k in range(30)]
    with pytest.raises(ValueError, match="shard 1 is broken"):
        for i, r in be.map(lambda s: started.append(s["x"]) or _fail_on_one(s), shards):
            pass
    assert sorted(started) == [0, 1]


def test_local_experiment_tables_do_not_depend_on_workers(tmp_path):
    """capacity-inits (tiny: 2 tasks x 2 cells = 4 shards) with 1 and with 2 workers."""
    outs = {}
    for w in (1, 2):
        res = experiments.run(EXP, scale="tiny", out=tmp_path / f"w{w}", backend=LocalBackend(workers=w), progress=False)
        outs[w] = res.tables
    for t in outs[1]:
        pd.testing.assert_frame_equal(outs[1][t], outs[2][t])


def test_workers_from_the_environment(monkeypatch):
    monkeypatch.delenv("RNNLAB_WORKERS", raising=False)
    assert LocalBackend().workers == 1                          # the measured default
    monkeypatch.setenv("RNNLAB_WORKERS", "3")
    assert LocalBackend().workers == 3
    monkeypatch.setenv("RNNLAB_WORKERS", "zero")
    with pytest.raises(ConfigError, match="^RNNLAB_WORKERS: must be a positive integer"):
        LocalBackend()


# ----------------------------------------------------------------------------- pinned worker processes

two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinned workers need >= 2 cores")


def _where(shard):
    if shard.get("fail"):
        raise ConfigError("shard says: broken on purpose")
    if shard.get("dir"):            # a barrier: wait (at most 30 s) until `need` workers have checked in,
        Path(shard["dir"], str(os.getpid())).touch()   # so that a fast-starting worker cannot take every shard
        t0 = time.perf_counter()
        while len(os.listdir(shard["dir"])) < shard["need"] and time.perf_counter() - t0 < 30:
            time.sleep(0.05)
    time.sleep(0.2)
    return os.getpid(), sorted(os.sched_getaffinity(0)), os.environ.get("RNNLAB_PROGRESS")


@two_cores
def test_pinned_shards_run_in_worker_processes_one_core_each(monkeypatch, tmp_path):
    monkeypatch.delenv("RNNLAB_PINNED", raising=False)
    need = len(os.sched_getaffinity(0))
    be = LocalBackend()
    try:
        out = dict(be.map(_where, [{"x": i, "dir": str(tmp_path), "need": need} for i in range(6)], pinned=True))
    finally:
        be.close()
    assert sorted(out) == list(range(6))
    pids = {r[0] for r in out.values()}
    assert os.getpid() not in pids and len(pids) == len(os.sched_getaffinity(0))   # one worker per core
    cores = {r[0]: tuple(r[1]) for r in out.values()}
    assert all(len(c) == 1 for c in cores.values()) and len(set(cores.values())) == len(pids)   # distinct cores
    assert all(r[2] == "0" for r in out.values())                  # workers draw no progress bars


@two_cores
def test_pinned_shard_error_is_raised_with_its_type(monkeypatch):
    monkeypatch.delenv("RNNLAB_PINNED", raising=False)
    be = LocalBackend()
    try:
        with pytest.raises(ConfigError, match="broken on purpose"):
            list(be.map(_where, [{"x": 0}, {"x": 1, "fail": True}, {"x": 2}], pinned=True))
    finally:
        be.close()


def test_pinned_off_or_single_shard_runs_here(monkeypatch):
    monkeypatch.setenv("RNNLAB_PINNED", "0")
    be = LocalBackend()
    out = dict(be.map(_where, [{"x": 0}, {"x": 1}], pinned=True))
    assert {r[0] for r in out.values()} == {os.getpid()}
    monkeypatch.delenv("RNNLAB_PINNED")
    assert dict(be.map(_where, [{"x": 0}], pinned=True))[0][0] == os.getpid()
    be.close()


@two_cores
def test_pinned_landscape_shards_equal_in_process(monkeypatch):
    """Blocks of random draws computed in the pinned workers give the tables computed here."""
    from rnnlab.experiments import random_landscape as rl
    monkeypatch.delenv("RNNLAB_PINNED", raising=False)
    shards = [{"task": "first", "seed": 0, "n_val": 100, "cell": cell, "init": "torch", "dtype": "float32",
               "input": 2, "hidden": 2, "emax": 2, "hmax": 2, "start": 0, "n": 96, "chunk": 32, "sample": 10}
              for cell in ("rnn-tanh", "gru")]
    be = LocalBackend()
    try:
        there = dict(be.map(rl.landscape_shard, shards, pinned=True))
    finally:
        be.close()
    for i, shard in enumerate(shards):
        here = rl.landscape_shard(shard)
        for t in ("histogram", "sample"):
            pd.testing.assert_frame_equal(there[i][t], here[t])
