"""Nothing lost: resume after a kill, bad input, divergence, concurrent runs, determinism.

The sweep used throughout is capacity-inits at scale "tiny": 2 tasks x 2 cells = 4 shards (one
population of 8 models each). Every run happens in a fresh process through the real command
(``python -m rnnlab.cli run``) or the Python API; the processes share a JAX compilation-cache
folder, for speed only: a cached executable computes exactly what a fresh compilation does,
which the bitwise comparisons below check (the reference run compiles from scratch).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rnnlab
from rnnlab import cli, experiments, tasks
from rnnlab.engine.model import ModelSpec
from rnnlab.engine.population import make_population
from rnnlab.engine.protocols import Protocol
from rnnlab.errors import ConfigError, RnnlabError, StoreError
from rnnlab.store import Store, view_name

EXP = "capacity-inits"
OTHER = "trainability-grid"
TOTAL = 8                                            # shards of EXP at scale tiny (task x cell x hidden)


# ----------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sub_env(tmp_path_factory):
    env = dict(os.environ)
    env.update(RNNLAB_PROGRESS="0", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax-cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    src = str(Path(rnnlab.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Run:
    out: Path                  # the results folder (holds store/)
    run_id: str
    info: dict                 # run.json
    stdout: str

    @property
    def exp_dir(self) -> Path:
        return self.out / EXP

    @property
    def store_root(self) -> Path:
        return self.out / "store"

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.exp_dir / f"{name}.parquet")


def _cli_run(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rnnlab.cli", "run", EXP, "--scale", "tiny", "--out", str(out),
            "--quiet", "--device", "cpu", *extra]


def run_cli(out: Path, env: dict, *extra: str) -> Run:
    r = subprocess.run(_cli_run(out, *extra), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / EXP / "run.json").read_text())
    return Run(out, info["run_id"], info, r.stdout + r.stderr)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sub_env):
    """The uninterrupted run every other run is compared with (compiles from scratch)."""
    run = run_cli(tmp_path_factory.mktemp("reference"), sub_env)
    assert (run.info["shards_computed"], run.info["shards_reused"]) == (TOTAL, 0)
    return run


def _done_keys(store_root: Path) -> set[str]:
    """Shards whose completion marker is a complete file (what a reader may trust)."""
    folder = store_root / "tables" / "shards_done"
    if not folder.is_dir():
        return set()
    return {p.name[:-len(".parquet")] for p in folder.iterdir()
            if p.name.endswith(".parquet") and ".tmp-" not in p.name}


def _bits(df: pd.DataFrame) -> pd.DataFrame:
    """Float columns as their IEEE bit patterns (NaN payloads and -0.0 included)."""
    df = df.reset_index(drop=True).copy()
    for c in df.columns:
        if df[c].dtype.kind == "f":
            df[c] = df[c].to_numpy().view(np.uint64 if df[c].dtype.itemsize == 8 else np.uint32)
        elif df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], (list, np.ndarray)):
            df[c] = [np.asarray(v).tobytes() for v in df[c]]
    return df


def assert_bitwise_equal(a: pd.DataFrame, b: pd.DataFrame, what: str = ""):
    assert list(a.columns) == list(b.columns), what
    pd.testing.assert_frame_equal(_bits(a), _bits(b), check_exact=True, obj=what)


def assert_outputs_equal(dir_a: Path, dir_b: Path):
    names = sorted(p.name for p in dir_a.glob("*.parquet"))
    assert names and names == sorted(p.name for p in dir_b.glob("*.parquet"))
    for n in names:
        assert_bitwise_equal(pd.read_parquet(dir_a / n), pd.read_parquet(dir_b / n), n)
    assert (dir_a / "claims.json").read_text() == (dir_b / "claims.json").read_text()


def snapshot(folder: Path) -> dict:
    """Every file (path, size, mtime) and folder under `folder`. Lock files are left out: a lock
    holds no result, and taking one is how a run (or a wait for one) starts."""
    snap = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            snap[os.path.relpath(os.path.join(root, d), folder)] = "dir"
        for f in files:
            p = os.path.join(root, f)
            if f.endswith(".lock") and os.path.basename(root) == "locks":
                continue
            st = os.stat(p)
            snap[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return snap


# ---------------------------------------------------------------------------- kill and resume


def test_kill_during_sweep_then_resume(reference, tmp_path, sub_env):
    ref_keys = _done_keys(reference.store_root)
    assert len(ref_keys) == TOTAL
    out = tmp_path / "killed"
    store_root = out / "store"

    proc = subprocess.Popen(_cli_run(out), env=sub_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if _done_keys(store_root):               # >= 1 shard finished: kill it mid-sweep
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-sweep (rc {proc.returncode}): {err[-2000:]}"

    done_before = _done_keys(store_root)
    assert 1 <= len(done_before) <= TOTAL - 2, done_before
    assert done_before <= ref_keys                   # the same shard keys in every process
    store = Store(store_root)
    assert store.run(reference.run_id)["status"] == "running"      # the record tells: unfinished
    assert not (out / EXP / "claims.json").exists()

    # What a crash can leave, planted on shards that did NOT finish:
    not_done = sorted(ref_keys - done_before)
    done_dir = store_root / "tables" / "shards_done"
    ref_root = reference.store_root
    ref_done = ref_root / "tables" / "shards_done"
    tables = [f"shard.{EXP}.summary", f"shard.{EXP}.curves"]
    # (a) temporary files of interrupted writes, with COMPLETE valid content: must be ignored
    k = not_done[0]
    shutil.copy(ref_done / f"{k}.parquet", done_dir / f"{k}.parquet.tmp-4242-deadbeef")
    for t in tables:
        (store_root / "tables" / t).mkdir(parents=True, exist_ok=True)
        shutil.copy(ref_root / "tables" / t / f"{k}.parquet",
                    store_root / "tables" / t / f"{k}.parquet.tmp-4242-deadbeef")
    # (b) truncated files under the final names (marker and data): must count as absent
    k2 = not_done[1]
    for src, dst in [(ref_done / f"{k2}.parquet", done_dir / f"{k2}.parquet")] + [
            (ref_root / "tables" / t / f"{k2}.parquet", store_root / "tables" / t / f"{k2}.parquet")
            for t in tables]:
        data = src.read_bytes()
        dst.write_bytes(data[: len(data) // 2])

    resumed = run_cli(out, sub_env)                   # the same command again
    assert resumed.info["shards_reused"] == len(done_before)           # finished: not recomputed
    assert resumed.info["shards_computed"] == TOTAL - len(done_before)  # the rest, planted ones too
    assert store.run(reference.run_id)["status"] == "done"
    assert store.verify() == []                                   # truncated files were replaced
    assert (done_dir / f"{k}.parquet.tmp-4242-deadbeef").exists()  # ignored, not consumed
    assert_outputs_equal(resumed.exp_dir, reference.exp_dir)       # == the uninterrupted run
    for t in tables + ["shards_done"]:
        for key in ref_keys:
            assert_bitwise_equal(store.read(t, key), Store(ref_root).read(t, key), f"{t}/{key}")


def test_damaged_stored_shard_and_output_are_recomputed_not_trusted(reference, tmp_path, sub_env):
    """Files damaged after the fact (not by our writes, which are atomic): a truncated shard file
    under its final name and a truncated output table. The rerun detects both, recomputes that
    one shard only and rewrites the outputs."""
    out = tmp_path / "copy"
    shutil.copytree(reference.out, out)
    store_root = out / "store"
    key = sorted(_done_keys(store_root))[2]
    victim = store_root / "tables" / f"shard.{EXP}.curves" / f"{key}.parquet"
    victim.write_bytes(victim.read_bytes()[:-100])
    table = out / EXP / "accuracy.parquet"
    table.write_bytes(table.read_bytes()[:50])
    with pytest.raises(StoreError, match=r"corrupted or truncated"):   # reading it: named, one line
        Store(store_root).read(f"shard.{EXP}.curves")

    rerun = run_cli(out, sub_env)
    assert (rerun.info["shards_reused"], rerun.info["shards_computed"]) == (TOTAL - 1, 1)
    assert f"rnnlab: warning: results file {victim} is damaged" in rerun.stdout
    assert_outputs_equal(rerun.exp_dir, reference.exp_dir)
    assert Store(store_root).verify() == []


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("rnnlab: warning: ")]


def _quarantined(store_root: Path) -> list[str]:
    folder = store_root / "quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_damaged_shards_of_a_finished_run_are_recomputed_on_a_plain_rerun(reference, tmp_path, sub_env):
    """The outputs and the run record are intact, so the run counts as finished; two of its
    shard files are damaged (one bit flipped, one truncated to half). A plain rerun checks the
    run's stored files, moves the damaged ones to quarantine (one warning line each) and
    recomputes those two shards only: the same tables, bit for bit."""
    out = tmp_path / "copy"
    shutil.copytree(reference.out, out)
    store_root = out / "store"
    keys = sorted(_done_keys(store_root))
    flipped = store_root / "tables" / f"shard.{EXP}.curves" / f"{keys[0]}.parquet"
    cut = store_root / "tables" / f"shard.{EXP}.summary" / f"{keys[1]}.parquet"
    _flip_a_byte(flipped)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])

    rerun = run_cli(out, sub_env)
    assert (rerun.info["shards_reused"], rerun.info["shards_computed"]) == (TOTAL - 2, 2)
    warned = _warnings(rerun.stdout)
    assert len(warned) == 2 and all("quarantine" in w for w in warned), warned
    assert any(str(flipped) in w and "checksum" in w for w in warned)
    assert any(str(cut) in w for w in warned)
    moved = [n for n in _quarantined(store_root) if n.endswith(".parquet")]
    assert len(moved) == 2 and any(n.endswith(f"__{keys[0]}.parquet") for n in moved)
    assert_outputs_equal(rerun.exp_dir, reference.exp_dir)
    store, ref = Store(store_root), Store(reference.store_root)
    assert store.verify() == []
    for t in (f"shard.{EXP}.curves", f"shard.{EXP}.summary", "shards_done"):
        for key in keys:
            assert_bitwise_equal(store.read(t, key), ref.read(t, key), f"{t}/{key}")


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_run_record_is_moved_aside_and_the_run_redone_from_its_shards(reference, tmp_path,
                                                                            sub_env, damage):
    """A truncated run record used to stop every rerun; an altered one (still valid JSON) was
    trusted. Both are now moved to quarantine with one warning, and the rerun rebuilds the run
    from its stored shards (none recomputed) and writes the record again."""
    out = tmp_path / "copy"
    shutil.copytree(reference.out, out)
    store_root = out / "store"
    record = store_root / "runs" / f"{reference.run_id}.json"
    good = json.loads(record.read_text())
    if damage == "truncated":
        record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    else:                                   # a digit of the wall time: still a valid record
        text = record.read_text()
        i = text.index('"wall_s": ') + len('"wall_s": ')
        record.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
        assert json.loads(record.read_text())["wall_s"] != good["wall_s"]

    rerun = run_cli(out, sub_env)
    assert (rerun.info["shards_reused"], rerun.info["shards_computed"]) == (TOTAL, 0)
    warned = _warnings(rerun.stdout)
    assert len(warned) == 1 and str(record) in warned[0] and "quarantine" in warned[0], warned
    assert any(n.endswith(f"runs__{reference.run_id}.json") for n in _quarantined(store_root))
    assert_outputs_equal(rerun.exp_dir, reference.exp_dir)
    store = Store(store_root)
    assert store.verify() == []
    again = store.run(reference.run_id)
    assert again["status"] == "done" and again["verdicts"] == good["verdicts"]


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_device_is_bitwise_identical(reference, tmp_path, sub_env):
    """Two runs, two processes, two folders: every output table and every stored shard table
    is bitwise the same."""
    again = run_cli(tmp_path, sub_env)
    assert again.run_id == reference.run_id and again.info["shards_computed"] == TOTAL
    assert_outputs_equal(again.exp_dir, reference.exp_dir)
    a, b = Store(again.store_root), Store(reference.store_root)
    assert a.tables() == b.tables()
    for t in a.tables():
        assert a.keys(t) == b.keys(t)
        for k in a.keys(t):
            assert_bitwise_equal(a.read(t, k), b.read(t, k), f"{t}/{k}")
    acc = reference.table("accuracy")          # not vacuous: trained models, varied accuracies
    assert len(acc) == 32 and acc["best_val_acc"].nunique() > 5


# ------------------------------------------------------------------------------- divergence


_DIVERGE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from rnnlab.experiments.common import train_shard
    shard, dump = json.loads(sys.argv[1]), Path(sys.argv[2])
    for name, lr in (("bad", json.loads(sys.argv[3])), ("clean", json.loads(sys.argv[4]))):
        (dump / name).mkdir(parents=True)
        for t, df in train_shard(dict(shard, lr=lr)).items():
            df.to_parquet(dump / name / f"{t}.parquet", index=False)
""")


def test_diverging_models_in_an_experiment_shard(reference, tmp_path, sub_env):
    """An experiment's own shard (capacity-inits, rnn-tanh on First, one hidden size) with two models
    given an absurd learning rate: those two are marked diverged at epoch 1 with finite
    parameters; the others are bitwise what they are when nobody diverges."""
    ref = Store(reference.store_root)
    shard = next(m["shard"] for m in (ref.meta("shards_done", k) for k in ref.keys("shards_done"))
                 if m["shard"]["cell"] == "rnn-tanh" and m["shard"]["task"] == "first")
    m = len(shard["seeds"])
    bad_ix = [1, m - 1]
    good_ix = [i for i in range(m) if i not in bad_ix]
    lr = [1e300 if i in bad_ix else 1e-3 for i in range(m)]
    r = subprocess.run([sys.executable, "-c", _DIVERGE, json.dumps(shard), str(tmp_path / "dump"),
                        json.dumps(lr), json.dumps([1e-3] * m)],
                       env=sub_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    bad = {t: pd.read_parquet(tmp_path / "dump" / "bad" / f"{t}.parquet") for t in ("summary", "curves", "params")}
    clean = {t: pd.read_parquet(tmp_path / "dump" / "clean" / f"{t}.parquet") for t in ("summary", "curves", "params")}

    s = bad["summary"]
    assert list(s.status[bad_ix]) == ["diverged", "diverged"]
    assert list(s.diverged_epoch[bad_ix]) == [1, 1]
    assert (s.status[good_ix] != "diverged").all() and (s.diverged_epoch[good_ix] == -1).all()
    assert (clean["summary"].status != "diverged").all()
    cols = ["seed", "input", "hidden", "best_val_acc", "best_epoch", "test_acc", "epochs", "status"]
    assert_bitwise_equal(s.loc[good_ix, cols], clean["summary"].loc[good_ix, cols], "summary")
    c, cc = bad["curves"], clean["curves"]
    assert_bitwise_equal(c[c.model.isin(good_ix)], cc[cc.model.isin(good_ix)], "curves")
    assert c[c.model.isin(bad_ix)].epoch.max() == 1            # a diverged model stops there
    p, pc = bad["params"], clean["params"]
    assert_bitwise_equal(p[p.model.isin(good_ix)], pc[pc.model.isin(good_ix)], "params")
    for i in bad_ix:          # a diverged model keeps finite parameters (its best: the initial ones)
        assert np.isfinite(np.concatenate(p[p.model == i]["values"].tolist())).all()
    # the diverged rows (non-finite losses included) survive the store exactly
    store = Store(tmp_path / "store")
    for t, df in bad.items():
        store.write(f"div.{t}", "k", df)
        assert_bitwise_equal(store.read(f"div.{t}", "k"), df, t)


# -------------------------------------------------------------------------------- bad input


@pytest.fixture
def populated(reference, tmp_path):
    """A copy of the reference results folder (a store with a finished run), and its snapshot."""
    out = tmp_path / "results"
    shutil.copytree(reference.out, out)
    return out


# (id, call(out) -> raises, exception class, start of the one-line message)
API_CASES = [
    ("unknown-experiment", lambda out: experiments.run("no-such-exp", scale="tiny", out=out), ConfigError, "experiment:"),
    ("unknown-scale", lambda out: experiments.run(EXP, scale="huge", out=out), ConfigError, "scale:"),
    ("unknown-key", lambda out: experiments.run(EXP, {"hidden_size": 4}, scale="tiny", out=out), ConfigError, "hidden_size:"),
    ("unknown-cell", lambda out: experiments.run(EXP, {"cells": ["rnn-tanh", "gru2"]}, scale="tiny", out=out), ConfigError, "cells:"),
    ("no-cells", lambda out: experiments.run(EXP, {"cells": []}, scale="tiny", out=out), ConfigError, "cells:"),
    ("unknown-task", lambda out: experiments.run(EXP, {"tasks": ["firstt"]}, scale="tiny", out=out), ConfigError, "task"),
    ("wrong-kind-task", lambda out: experiments.run(EXP, {"tasks": ["reber"]}, scale="tiny", out=out), ConfigError, "tasks:"),
    ("unknown-init", lambda out: experiments.run(EXP, {"init_scheme": "he"}, scale="tiny", out=out), ConfigError, "init"),
    ("unknown-protocol", lambda out: experiments.run(EXP, {"protocol": "adam"}, scale="tiny", out=out), ConfigError, "protocol:"),
    ("zero-hidden", lambda out: experiments.run(EXP, {"hiddens": [2, 0]}, scale="tiny", out=out), ConfigError, "hiddens:"),
    ("negative-input", lambda out: experiments.run(EXP, {"inputs": [-2]}, scale="tiny", out=out), ConfigError, "inputs:"),
    ("huge-hidden", lambda out: experiments.run(EXP, {"hiddens": [10**9]}, scale="tiny", out=out), ConfigError, "hiddens:"),
    ("fractional-input", lambda out: experiments.run(EXP, {"inputs": [2.5]}, scale="tiny", out=out), ConfigError, "inputs:"),
    ("text-hidden", lambda out: experiments.run(EXP, {"hiddens": "four"}, scale="tiny", out=out), ConfigError, "hiddens:"),
    ("zero-inits", lambda out: experiments.run(EXP, {"inits": 0}, scale="tiny", out=out), ConfigError, "inits:"),
    ("negative-epochs", lambda out: experiments.run(EXP, {"max_epochs": -1}, scale="tiny", out=out), ConfigError, "max_epochs:"),
    ("text-seed", lambda out: experiments.run(EXP, {"seed": "abc"}, scale="tiny", out=out), ConfigError, "seed:"),
    ("negative-seed", lambda out: experiments.run(EXP, {"seed": -1}, scale="tiny", out=out), ConfigError, "seed:"),
    ("float-seed", lambda out: experiments.run(EXP, {"seed": 1.5}, scale="tiny", out=out), ConfigError, "seed:"),
    ("zero-train-size", lambda out: experiments.run(EXP, {"data_sizes": {"train": 0, "val": 10}}, scale="tiny", out=out), ConfigError, "data_sizes"),
    ("huge-train-size", lambda out: experiments.run(EXP, {"data_sizes": {"train": 10**9, "val": 10}}, scale="tiny", out=out), ConfigError, "data_sizes"),
    ("unknown-split", lambda out: experiments.run(EXP, {"data_sizes": {"train": 10, "valid": 10}}, scale="tiny", out=out), ConfigError, "data_sizes:"),
    ("threshold-out-of-range", lambda out: experiments.run(EXP, {"good_acc": 1.5}, scale="tiny", out=out), ConfigError, "good_acc:"),
    ("list-for-int", lambda out: experiments.run(EXP, {"inits": [2]}, scale="tiny", out=out), ConfigError, "inits:"),
    ("unknown-backend", lambda out: experiments.run(EXP, scale="tiny", out=out, backend="spark"), ConfigError, "backend:"),
    # engine, tasks, protocols, store: the layers under the experiments
    ("population-huge-hidden", lambda out: make_population(ModelSpec(), 4, 10**9, [1]), ConfigError, "hidden:"),
    ("population-too-many-params", lambda out: make_population(ModelSpec(cell="lstm"), 4, 4000, [1]), ConfigError, "hidden:"),
    ("population-no-models", lambda out: make_population(ModelSpec(), 4, 4, []), ConfigError, "inits:"),
    ("spec-unknown-cell", lambda out: ModelSpec(cell="transformer"), ConfigError, "cell:"),
    ("spec-unknown-init", lambda out: ModelSpec(init="orthogonal"), ConfigError, "init:"),
    ("spec-bad-dtype", lambda out: ModelSpec(dtype="float16"), ConfigError, "dtype:"),
    ("task-unknown", lambda out: tasks.splits("parity", 0), ConfigError, "task:"),
    ("task-zero-length", lambda out: tasks.make("first", 10, 0, length=0), ConfigError, "length:"),
    ("task-huge-length", lambda out: tasks.make("first", 10, 0, length=10**9), ConfigError, "length:"),
    ("task-huge-n", lambda out: tasks.splits("first", 0, {"train": 10**10}), ConfigError, "sizes"),
    ("protocol-negative-lr", lambda out: Protocol(lr=-1e-3), ConfigError, "lr:"),
    ("protocol-infinite-lr", lambda out: Protocol(lr=float("inf")), ConfigError, "lr:"),
    ("protocol-nan-lr", lambda out: Protocol(lr=float("nan")), ConfigError, "lr:"),
    ("protocol-zero-batch", lambda out: Protocol(batch_size=0), ConfigError, "batch_size:"),
    ("results-folder-is-a-file", lambda out: experiments.run(EXP, scale="tiny", out=out / EXP / "claims.json"), StoreError, "results folder:"),
    ("store-missing", lambda out: Store(out / "nowhere", create=False), StoreError, "results folder:"),
    ("query-unknown-table", lambda out: Store(out / "store").query("SELECT * FROM nope"), StoreError, "query failed:"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_input_api(case, populated):
    _, call, exc, start = case
    before = snapshot(populated)
    t0 = time.perf_counter()
    with pytest.raises(exc) as e:
        call(populated)
    assert time.perf_counter() - t0 < 5                     # fails fast, allocates nothing big
    assert isinstance(e.value, RnnlabError)
    msg = str(e.value)
    assert msg.startswith(start) and "\n" not in msg and len(msg) < 400, msg
    assert snapshot(populated) == before


def test_truncated_parquet_in_store_is_named(populated):
    store = Store(populated / "store")
    t = f"{EXP}.accuracy"
    path = store.path(t, store.keys(t)[0])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = snapshot(populated)
    for call in (lambda: store.read(t), lambda: store.read(t, store.keys(t)[0]),
                 lambda: store.query(f"SELECT count(*) FROM {view_name(t)}")):
        with pytest.raises(StoreError) as e:
            call()
        assert str(path) in str(e.value) and "truncated" in str(e.value) and "\n" not in str(e.value)
    assert store.verify() == [str(path)]
    assert snapshot(populated) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_results_folder(populated):
    before = snapshot(populated)
    os.chmod(populated / "store", 0o555)
    try:
        with pytest.raises(StoreError, match=r"^results folder: .* is not writable$"):
            experiments.run(EXP, {"seed": 7}, scale="tiny", out=populated, progress=False)
    finally:
        os.chmod(populated / "store", 0o755)
    assert snapshot(populated) == before


def test_unwritable_results_folder_as_seen_by_access(populated, monkeypatch):
    """The same check where the tests run as root (root writes anywhere): the folder reports
    itself unwritable."""
    before = snapshot(populated)
    real = os.access
    store_root = str(populated / "store")
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p).startswith(store_root)
                        else real(p, mode, *a, **k))
    with pytest.raises(StoreError, match=r"^results folder: .* is not writable$"):
        experiments.run(EXP, {"seed": 7}, scale="tiny", out=populated, progress=False)
    monkeypatch.undo()
    assert snapshot(populated) == before


def _bad_config_file(out: Path, text: str) -> str:
    path = out.parent / "bad-config.json"
    path.write_text(text)
    return str(path)


# (id, argv builder(out) , expected exit code, start of the message after "rnnlab: error: ")
CLI_CASES = [
    ("unknown-experiment", lambda o: ["run", "no-such-exp", "--out", str(o)], 1, "experiment:"),
    ("unknown-scale", lambda o: ["run", EXP, "--scale", "huge", "--out", str(o)], 2, "scale:"),
    ("unknown-key", lambda o: ["run", EXP, "--scale", "tiny", "--set", "bogus=1", "--out", str(o)], 1, "bogus:"),
    ("zero-hidden", lambda o: ["run", EXP, "--scale", "tiny", "--set", "hiddens=[0]", "--out", str(o)], 1, "hiddens:"),
    ("huge-hidden", lambda o: ["run", EXP, "--scale", "tiny", "--set", "hiddens=[1000000000]", "--out", str(o)], 1, "hiddens:"),
    ("non-numeric-inits", lambda o: ["run", EXP, "--scale", "tiny", "--set", "inits=many", "--out", str(o)], 1, "inits:"),
    ("unknown-cell", lambda o: ["run", EXP, "--scale", "tiny", "--cells", "rnn-tanh,gur", "--out", str(o)], 1, "cells:"),
    ("negative-seed", lambda o: ["run", EXP, "--scale", "tiny", "--seed", "-3", "--out", str(o)], 2, "seed:"),
    ("config-unknown-key", lambda o: ["run", EXP, "--scale", "tiny", "--config",
                                      _bad_config_file(o, '{"inits": 2, "hidden_units": 8}'), "--out", str(o)], 1, "hidden_units:"),
    ("config-not-json", lambda o: ["run", EXP, "--scale", "tiny", "--config",
                                   _bad_config_file(o, '{"inits": 2,'), "--out", str(o)], 1, "config:"),
    ("out-is-a-file", lambda o: ["run", EXP, "--scale", "tiny", "--out", str(o / EXP / "run.json")], 1, "out:"),
    ("unknown-backend", lambda o: ["run", EXP, "--scale", "tiny", "--backend", "spark", "--out", str(o)], 2, "backend:"),
    ("address-without-ray", lambda o: ["run", EXP, "--scale", "tiny", "--address", "127.0.0.1:1", "--out", str(o)], 1, "address:"),
    ("train-unknown-task", lambda o: ["train", "--task", "parity", "--cell", "gru", "--out", str(o)], 1, "task:"),
    ("train-unknown-cell", lambda o: ["train", "--task", "first", "--cell", "gur", "--out", str(o)], 1, "cell:"),
    ("train-zero-hidden", lambda o: ["train", "--task", "first", "--cell", "gru", "--hidden", "0", "--out", str(o)], 2, "hidden:"),
    ("train-text-input", lambda o: ["train", "--task", "first", "--cell", "gru", "--input", "two", "--out", str(o)], 2, "input:"),
    ("train-huge-hidden", lambda o: ["train", "--task", "first", "--cell", "gru", "--hidden", "1000000000",
                                     "--out", str(o)], 1, "hidden:"),
    ("query-bad-sql", lambda o: ["query", "SELEKT 1", "--out", str(o)], 1, "sql: query failed:"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_cli(case, populated, capsys):
    _, argv, code, start = case
    args = argv(populated)
    before = snapshot(populated)
    try:
        rc = cli.main(args)
    except SystemExit as e:                          # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"rnnlab: error: {start}"), lines[0]
    assert snapshot(populated) == before


def test_bad_input_cli_subprocess_one_line(populated, sub_env):
    """The real command: exit status 1 and one line on stderr, no traceback."""
    before = snapshot(populated)
    r = subprocess.run([sys.executable, "-m", "rnnlab.cli", "run", EXP, "--scale", "tiny", "--set",
                        "hiddens=[1000000000]", "--out", str(populated)], env=sub_env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("rnnlab: error: hiddens:")
    assert snapshot(populated) == before


# ------------------------------------------------------------------------------- concurrency

_WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from rnnlab import experiments
    name, config, out, dump = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    res = experiments.run(name, config, scale="tiny", out=out, progress=False)
    dump.mkdir(parents=True)
    for t, df in res.tables.items():
        df.to_parquet(dump / f"{t}.parquet", index=False)
    (dump / "result.json").write_text(json.dumps({"run_id": res.run_id, "reused": res.reused,
        "computed": res.shards_computed, "reused_shards": res.shards_reused}))
""")


def test_concurrent_runs_share_one_results_folder(reference, tmp_path, sub_env):
    out = tmp_path / "shared"
    jobs = {"a1": (EXP, {}), "a2": (EXP, {}), "b": (OTHER, {})}
    procs = {j: subprocess.Popen([sys.executable, "-c", _WORKER, name, json.dumps(cfg), str(out),
                                  str(tmp_path / f"dump-{j}")], env=sub_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for j, (name, cfg) in jobs.items()}
    for j, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{j}: {err[-3000:]}"
    res = {j: json.loads((tmp_path / f"dump-{j}" / "result.json").read_text()) for j in jobs}

    # the same experiment twice: one computed every shard, the other waited and reused the run
    a = sorted((res["a1"], res["a2"]), key=lambda r: r["reused"])
    assert a[0]["run_id"] == a[1]["run_id"] == reference.run_id
    assert (a[0]["reused"], a[0]["computed"]) == (False, TOTAL) and a[1]["reused"] is True
    for t in ("accuracy", "curves"):
        x = pd.read_parquet(tmp_path / "dump-a1" / f"{t}.parquet")
        y = pd.read_parquet(tmp_path / "dump-a2" / f"{t}.parquet")
        assert_bitwise_equal(x, y, t)
        assert_bitwise_equal(x, reference.table(t).drop(columns=["run_id"]), t)
    assert_outputs_equal(out / EXP, reference.exp_dir)

    # both experiments are complete and queryable from the one store
    store = Store(out / "store")
    assert store.verify() == []
    runs = store.runs().set_index("run_id")
    assert set(runs.loc[[res["a1"]["run_id"], res["b"]["run_id"]], "status"]) == {"done"}
    n_a = store.query(f"SELECT count(*) AS n FROM {view_name(EXP + '.accuracy')}")["n"].item()
    n_b = store.query(f"SELECT count(*) AS n FROM {view_name(OTHER + '.accuracy')}")["n"].item()
    assert n_a == len(reference.table("accuracy"))
    assert n_b == len(pd.read_parquet(tmp_path / "dump-b" / "accuracy.parquet")) > 0


@pytest.mark.parametrize("name", [n for n in experiments.names() if "cells" in experiments.get(n).default_config("tiny")])
def test_every_experiment_checks_its_cells_in_the_runner(name, monkeypatch):
    """The runner, not each experiment, normalises and checks "cells": a comma string becomes a
    list, unknown and repeated cells are refused with a one-line message naming the field."""
    mod = experiments.get(name)
    if hasattr(mod, "validate"):          # the runner alone must do it: the experiment's own checks are off
        monkeypatch.setattr(mod, "validate", lambda cfg: None)
    first = mod.default_config("tiny")["cells"]
    first = first[0] if isinstance(first, list) else first.split(",")[0]
    cfg = experiments.resolve_config(mod, "tiny", {"cells": f" {first} ,lstm"})
    assert cfg["cells"] == [first, "lstm"]
    for bad in ([first, first], [first, "gru2"], []):
        with pytest.raises(ConfigError) as e:
            experiments.resolve_config(mod, "tiny", {"cells": bad})
        assert str(e.value).startswith("cells:") and "\n" not in str(e.value)


def test_lyapunov_checks_its_reber_cells():
    mod = experiments.get("lyapunov")
    for bad in (["rnn-sigmoid", "nope"], ["gru-s", "gru-s"]):
        with pytest.raises(ConfigError, match="^reber_cells:"):
            experiments.resolve_config(mod, "tiny", {"reber_cells": bad})
    assert experiments.resolve_config(mod, "tiny", {"reber_cells": "rnn-sigmoid,gru-s"})["reber_cells"] == ["rnn-sigmoid", "gru-s"]
