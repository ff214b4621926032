"""Tests of rnnlab.store: Parquet files + DuckDB, atomic writes, locks, many writers."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rnnlab.store
from rnnlab.errors import StoreError
from rnnlab.store import Store, config_hash, load, open_store


def run_python(code: str, *args: str, env: dict | None = None, timeout: float = 60,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the same one as the tests)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, check=check,
                          env={**os.environ, **(env or {})})


def popen_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def one_line_naming(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


# ------------------------------------------------------------------------ round trip
def test_round_trip_write_read_meta_keys_tables(store: Store):
    a = pd.DataFrame({"step": [0, 1, 2], "loss": [1.0, 0.5, 0.25], "cell": ["gru"] * 3})
    b = pd.DataFrame({"step": [0, 1], "loss": [2.0, 1.5], "cell": ["rnn"] * 2})
    path = store.write("curves", "k-a", a, meta={"lr": np.float64(0.1), "seeds": (1, 2)})
    store.write("curves", "k.b", b)

    assert path == store.root / "tables" / "curves" / "k-a.parquet" and path.is_file()
    pd.testing.assert_frame_equal(store.read("curves", "k-a"), a)
    pd.testing.assert_frame_equal(store.read("curves"), pd.concat([a, b], ignore_index=True))
    assert store.meta("curves", "k-a") == {"lr": 0.1, "seeds": [1, 2]}
    assert store.meta("curves", "k.b") == {}
    assert store.keys("curves") == ["k-a", "k.b"]
    assert store.tables() == ["curves"]
    assert store.has("curves", "k-a") and not store.has("curves", "nope")
    # The files are plain Parquet: pandas reads them without rnnlab.
    pd.testing.assert_frame_equal(pd.read_parquet(path), a)

    store.write("curves", "k-a", b)  # replacing a result
    pd.testing.assert_frame_equal(store.read("curves", "k-a"), b)


def test_named_index_is_kept_as_column_unnamed_dropped(store: Store):
    df = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index([10, 20], name="step"))
    store.write("t", "named", df)
    store.write("t", "unnamed", pd.DataFrame({"x": [3.0]}, index=[7]))
    assert store.read("t", "named").to_dict("list") == {"step": [10, 20], "x": [1.0, 2.0]}
    assert store.read("t", "unnamed").to_dict("list") == {"x": [3.0]}


def test_missing_things(store: Store):
    assert store.read("nothing").empty
    assert store.keys("nothing") == [] and store.tables() == []
    assert store.run("nope") is None
    with pytest.raises(StoreError, match="no result"):
        store.read("nothing", "k")
    with pytest.raises(StoreError, match="no result"):
        store.meta("nothing", "k")


@pytest.mark.parametrize("table,key", [("a/b", "k"), ("t", "../k"), ("..", "k"), ("t", ""),
                                       ("t", ".hidden"), ("t", "sp ace"), ("t", "x" * 201)])
def test_bad_names_are_refused(store: Store, table: str, key: str):
    with pytest.raises(StoreError, match="name"):
        store.write(table, key, pd.DataFrame({"x": [1]}))
    assert list((store.root / "tables").iterdir()) == []


def test_table_names_that_would_clash_in_sql_are_refused(store: Store):
    store.write("a-b", "k", pd.DataFrame({"x": [1]}))
    with pytest.raises(StoreError, match="a_b"):
        store.write("a.b", "k", pd.DataFrame({"x": [2]}))
    with pytest.raises(StoreError, match="runs"):
        store.write("runs", "k", pd.DataFrame({"x": [2]}))


# ------------------------------------------------------------------------------ SQL
def test_query_joins_two_tables_and_runs(store: Store):
    store.write("curves", "gru", pd.DataFrame({"model": ["gru", "gru"], "loss": [0.5, 0.25]}))
    store.write("curves", "rnn", pd.DataFrame({"model": ["rnn"], "loss": [0.75]}))
    info = pd.DataFrame({"model": ["gru", "rnn"], "gated": [True, False]})
    store.write("model.info", "all", info)
    store.record_run("r1", {"experiment": "cap", "config": {"cell": "gru"}, "status": "done"})

    out = store.query("""
        SELECT c.model, i.gated, min(c.loss) AS best
        FROM curves c JOIN model_info i USING (model)
        GROUP BY c.model, i.gated ORDER BY c.model""")
    assert out.to_dict("list") == {"model": ["gru", "rnn"], "gated": [True, False],
                                   "best": [0.25, 0.75]}

    runs = store.query("SELECT run_id, json_extract_string(config, '$.cell') AS cell FROM runs")
    assert runs.to_dict("list") == {"run_id": ["r1"], "cell": ["gru"]}


def test_union_by_name_across_files_with_different_columns(store: Store):
    store.write("m", "1", pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}))
    store.write("m", "2", pd.DataFrame({"step": [0], "acc": [0.9]}))
    store.write("m", "3", pd.DataFrame({"step": [5], "loss": [7]}))  # int loss: widened

    df = store.read("m")
    assert list(df.columns) == ["step", "loss", "acc"]
    assert df["step"].tolist() == [0, 1, 0, 5]
    assert df["loss"].tolist()[:2] == [1.0, 0.5] and df["loss"].tolist()[3] == 7.0
    assert df["loss"].isna().tolist() == [False, False, True, False]
    assert df["acc"].isna().tolist() == [True, True, False, True]

    q = store.query("SELECT count(*) AS n, count(acc) AS n_acc, sum(loss) AS s FROM m")
    assert q.to_dict("list") == {"n": [4], "n_acc": [1], "s": [8.5]}


def test_bad_sql_is_a_one_line_store_error(store: Store):
    store.write("t", "k", pd.DataFrame({"x": [1]}))
    with pytest.raises(StoreError, match=r"query failed: Parser Error") as e:
        store.query("SELEC x FROM t")
    assert "\n" not in str(e.value)
    with pytest.raises(StoreError, match="nope"):
        store.query("SELECT nope FROM t")


# ------------------------------------------------------------------------- run records
def test_run_records(store: Store):
    store.record_run("run-1", {"experiment": "cap", "config": {"b": 1, "a": np.int64(2)},
                               "status": "running", "started": "2024-01-01T00:00:00"})
    store.record_run("run-1", {**store.run("run-1"), "status": "done", "wall_s": 1.5})
    store.record_run("run-0", {"experiment": "cap", "status": "failed", "note": "oom"})

    assert store.run("run-1")["status"] == "done"
    runs = store.runs()
    assert runs["run_id"].tolist() == ["run-0", "run-1"]
    assert list(runs.columns[:7]) == ["run_id", "experiment", "status", "started", "finished",
                                      "wall_s", "config"]
    assert runs["config"].tolist()[1] == '{"a":2,"b":1}'
    assert "note" in runs.columns
    assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'done'")["n"][0] == 1


def test_empty_runs_view_is_queryable(store: Store):
    assert store.runs().empty
    assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'done'")["n"][0] == 0


# ------------------------------------------------------------------------ config_hash
@dataclasses.dataclass
class Cfg:
    cell: str
    hidden: int
    lr: float
    seeds: tuple


def test_config_hash_ignores_key_order_and_sees_values():
    a = {"cell": "gru", "hidden": 32, "opt": {"lr": 0.1, "eps": 1e-8}}
    b = {"opt": {"eps": 1e-8, "lr": 0.1}, "hidden": 32, "cell": "gru"}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16 and int(config_hash(a), 16) >= 0
    assert config_hash(a) != config_hash({**a, "hidden": 33})
    assert config_hash(a) != config_hash({**a, "opt": {"lr": 0.1 + 2 ** -55, "eps": 1e-8}})
    assert config_hash({"x": 1}) != config_hash({"x": 1.0}) != config_hash({"x": True})


def test_config_hash_numpy_tuples_dataclasses():
    plain = {"hidden": 32, "lr": 0.5, "seeds": [1, 2, 3], "w": [[1.0, 2.0]], "on": True}
    numpy = {"hidden": np.int64(32), "lr": np.float64(0.5), "seeds": (1, 2, 3),
             "w": np.array([[1.0, 2.0]]), "on": np.bool_(True)}
    assert config_hash(numpy) == config_hash(plain)
    assert config_hash(np.float32(0.5)) == config_hash(0.5)  # exactly representable
    assert config_hash(np.float32(0.1)) != config_hash(0.1)  # a different double
    cfg = Cfg("gru", 32, 0.5, (1, 2))
    assert config_hash(cfg) == config_hash({"cell": "gru", "hidden": 32, "lr": 0.5,
                                            "seeds": [1, 2]})
    with pytest.raises(TypeError):
        config_hash({"f": object()})


def test_config_hash_is_the_same_in_another_process():
    cfg = {"cell": "lstm", "hidden": 64, "lr": 0.1, "sizes": (8, 16), "tags": {"b": 1, "a": 2}}
    child = run_python("""
        import sys
        from rnnlab.store import config_hash
        cfg = {"tags": {"a": 2, "b": 1}, "sizes": [8, 16], "lr": 0.1, "hidden": 64, "cell": "lstm"}
        print(config_hash(cfg))
        """, env={"PYTHONHASHSEED": "12345"})
    assert child.stdout.strip() == config_hash(cfg)


# ------------------------------------------------------------------------- atomicity
def test_failed_rename_leaves_nothing_visible(store: Store, monkeypatch: pytest.MonkeyPatch):
    good = pd.DataFrame({"x": [1, 2]})
    store.write("t", "good", good)

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="No space left"):
        store.write("t", "bad", pd.DataFrame({"x": [3]}))
    with pytest.raises(StoreError, match="No space left"):
        store.record_run("r", {"status": "done"})
    monkeypatch.undo()

    assert not store.has("t", "bad") and store.keys("t") == ["good"]
    assert sorted(p.name for p in (store.root / "tables" / "t").iterdir()) == [
        ".good.parquet.sha256", "good.parquet"]                      # the result and its checksum
    assert list((store.root / "runs").iterdir()) == [] and store.run("r") is None
    pd.testing.assert_frame_equal(store.read("t"), good)


def test_crash_mid_write_leaves_only_an_ignored_tmp_file(store: Store):
    # A process killed between writing the temporary file and renaming it.
    child = run_python("""
        import os, sys
        import pandas as pd
        from rnnlab.store import Store
        store = Store(sys.argv[1])
        store.write("t", "good", pd.DataFrame({"x": [1]}))
        os.replace = lambda src, dst: os._exit(3)
        store.write("t", "torn", pd.DataFrame({"x": [2]}))
        """, str(store.root), check=False)
    assert child.returncode == 3, child.stderr

    leftovers = sorted(p.name for p in (store.root / "tables" / "t").iterdir())
    assert len(leftovers) == 4 and [leftovers[0], leftovers[2]] == [".good.parquet.sha256",
                                                                    "good.parquet"]
    assert leftovers[1].startswith(".torn.parquet.sha256.tmp-")       # killed at its 1st rename
    assert leftovers[3].startswith("torn.parquet.tmp-")
    assert store.keys("t") == ["good"] and not store.has("t", "torn")
    assert store.read("t")["x"].tolist() == [1]
    assert store.query("SELECT sum(x) AS s FROM t")["s"][0] == 1
    assert store.verify() == []

    assert store.clean_tmp() == []  # too recent: might be a write still running
    removed = store.clean_tmp(older_than=0)
    assert len(removed) == 2 and all(".tmp-" in r and "torn.parquet" in r for r in removed)
    assert sorted(p.name for p in (store.root / "tables" / "t").iterdir()) == [
        ".good.parquet.sha256", "good.parquet"]


# ------------------------------------------------------------------ damaged files
def test_truncated_parquet_is_a_store_error_naming_the_file(store: Store):
    store.write("t", "ok", pd.DataFrame({"x": [1.0] * 100}))
    path = store.write("t", "cut", pd.DataFrame({"x": np.arange(100.0), "y": ["s"] * 100}))
    store.write("other", "k", pd.DataFrame({"z": [5]}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(StoreError) as e:
        store.read("t")
    assert "truncated" in one_line_naming(e, path)
    with pytest.raises(StoreError) as e:
        store.read("t", "cut")
    one_line_naming(e, path)
    with pytest.raises(StoreError) as e:
        store.meta("t", "cut")
    one_line_naming(e, path)
    with pytest.raises(StoreError) as e:
        store.query("SELECT count(*) FROM t")
    assert "truncated" in one_line_naming(e, path)

    assert not store.has("t", "cut") and store.has("t", "ok")
    assert store.verify() == [str(path)]
    assert store.query("SELECT z FROM other")["z"].tolist() == [5]  # other tables unaffected

    store.write("t", "cut", pd.DataFrame({"x": [2.0]}))  # recomputing repairs it
    assert store.verify() == [] and store.read("t")["x"].sum() == 102.0


def test_damaged_run_record_is_a_store_error(store: Store):
    store.record_run("r", {"status": "done"})
    path = store.root / "runs" / "r.json"
    path.write_text('{"status": "do')
    with pytest.raises(StoreError) as e:
        store.run("r")
    one_line_naming(e, path)
    assert store.verify() == [str(path)]


# ----------------------------------------------------------------- unusable folders
def test_root_that_is_a_file(tmp_path: Path):
    root = tmp_path / "results"
    root.write_text("not a folder")
    with pytest.raises(StoreError, match="is a file") as e:
        Store(root)
    one_line_naming(e, root)
    with pytest.raises(StoreError, match="is a file"):
        Store(root / "store")  # its parent is the file


def test_missing_root_with_create_false(tmp_path: Path):
    with pytest.raises(StoreError, match="does not exist") as e:
        Store(tmp_path / "nope", create=False)
    one_line_naming(e, tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_unwritable_root(tmp_path: Path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        probe = root / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: chmod 0o500 does not stop writing "
                        "(test_root_that_is_a_file covers the error path)")
        with pytest.raises(StoreError, match=f"results folder: {root} is not writable"):
            Store(root)
        assert Store(root, create=False).read("t").empty  # reading needs no write access
    finally:
        root.chmod(0o700)


def test_open_store_and_load_use_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RNNLAB_RESULTS", str(tmp_path / "env-store"))
    store = open_store()
    assert store.root == tmp_path / "env-store"
    store.write("curves", "k", pd.DataFrame({"loss": [0.5]}))
    assert load("curves")["loss"].tolist() == [0.5]
    assert rnnlab.store.load("curves", root=tmp_path / "env-store").shape == (1, 1)
    with pytest.raises(StoreError, match="does not exist"):
        load("curves", root=tmp_path / "elsewhere")  # load never creates a store


# ----------------------------------------------------------------------------- locks
LOCK_HOLDER = """
    import sys, time
    from rnnlab.store import Store
    root, log = sys.argv[1], sys.argv[2]
    def note(what):
        with open(log, "a") as f:
            f.write(f"{what} {time.time():.6f}\\n")
    def seen(what):
        with open(log) as f:
            return any(line.startswith(what) for line in f)
    store = Store(root)
    if sys.argv[3] == "first":
        with store.lock("train", timeout=30):
            note("first-acquired")
            deadline = time.time() + 30
            while not seen("second-waiting") and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # the second process is now blocked in lock()
            note("first-released")
    else:
        note("second-waiting")
        with store.lock("train"):
            note("second-acquired")
    """


def test_lock_makes_the_second_process_wait(store: Store, tmp_path: Path):
    log = tmp_path / "lock.log"
    log.touch()
    first = popen_python(LOCK_HOLDER, str(store.root), str(log), "first")
    deadline = time.time() + 30
    while "first-acquired" not in log.read_text() and time.time() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.01)
    second = popen_python(LOCK_HOLDER, str(store.root), str(log), "second")
    for proc in (first, second):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err

    events = dict(line.split() for line in log.read_text().splitlines())
    t = {k: float(v) for k, v in events.items()}
    assert list(events) == ["first-acquired", "second-waiting", "first-released",
                            "second-acquired"]
    assert t["second-waiting"] < t["first-released"] <= t["second-acquired"]


def test_lock_timeout(store: Store):
    with store.lock("x"):
        start = time.monotonic()
        with pytest.raises(StoreError, match="still held"):
            with store.lock("x", timeout=0.2):
                pass
        assert 0.2 <= time.monotonic() - start < 5
        with store.lock("other", timeout=0):  # a different lock is free
            pass
    with store.lock("x", timeout=0):  # released
        pass


def test_lock_released_when_the_body_raises(store: Store):
    with pytest.raises(ZeroDivisionError):
        with store.lock("x"):
            1 / 0
    with store.lock("x", timeout=0):
        pass


# -------------------------------------------------------------------- many writers
WRITER = """
    import sys
    import pandas as pd
    from rnnlab.store import Store
    root, who = sys.argv[1], sys.argv[2]
    store = Store(root)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(20):
        store.write("shared", f"{who}-{i:02d}", pd.DataFrame({"who": [who] * 3, "i": [i] * 3}))
    """


def test_two_processes_write_the_same_table_at_once(store: Store):
    writers = [popen_python(WRITER, str(store.root), who) for who in ("a", "b")]
    for w in writers:
        assert w.stdout.readline().strip() == "ready", w.communicate()
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err

    keys = store.keys("shared")
    assert keys == sorted(f"{w}-{i:02d}" for w in "ab" for i in range(20))
    df = store.read("shared")
    assert len(df) == 120 and df.groupby("who").size().to_dict() == {"a": 60, "b": 60}
    assert store.query("SELECT count(DISTINCT (who, i)) AS n FROM shared")["n"][0] == 40
    assert store.verify() == []
    assert not [p for p in (store.root / "tables" / "shared").iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- read-only queries
@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '{d}/x.csv'",
    "COPY t TO '{d}/x.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{d}/x'",
    "ATTACH '{d}/x.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE TABLE x AS SELECT 1",
    "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
    "SET enable_external_access = true",
    "PRAGMA version",
    "CALL pragma_version()",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{d}/x.csv'",
    "SELECT 1; COPY (SELECT 1) TO '{d}/x.csv'",
])
def test_query_refuses_statements_that_are_not_reads(store: Store, tmp_path: Path, sql: str):
    store.write("t", "k", pd.DataFrame({"x": [1]}))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StoreError) as e:
        store.query(sql.format(d=tmp_path))
    message = str(e.value)
    assert message.startswith("query refused: ") and "\n" not in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == before       # nothing written


def test_query_reads_nothing_outside_the_store(store: Store, tmp_path: Path):
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    store.write("t", "k", pd.DataFrame({"x": [1]}))
    for sql in (f"SELECT * FROM read_csv('{outside}')", f"SELECT * FROM '{outside}'",
                f"SELECT * FROM read_parquet('{store.path('t', 'k')}')"):
        with pytest.raises(StoreError, match=r"^query failed: .*disabled"):
            store.query(sql)


@pytest.mark.parametrize("sql,column", [
    ("SELECT sum(x) AS s FROM t", "s"),
    ("WITH a AS (SELECT x FROM t) SELECT max(x) AS s FROM a", "s"),
    ("  select sum(x) as s from t;", "s"),
    ("EXPLAIN SELECT * FROM t", "explain_value"),
    ("DESCRIBE t", "column_name"),
    ("SHOW TABLES", "name"),
])
def test_query_answers_reads(store: Store, sql: str, column: str):
    store.write("t", "a", pd.DataFrame({"x": [1, 2]}))
    store.write("t", "b", pd.DataFrame({"x": [3]}))
    out = store.query(sql)
    assert column in out.columns and len(out) >= 1
    if column == "s":
        assert out["s"].tolist() in ([6], [3])


# ------------------------------------------------------------------ checksums, quarantine
def _flip_a_bit(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x10
    path.write_bytes(bytes(data))


def _flip_a_bit_parquet_misses(path: Path) -> pd.DataFrame:
    """Flip one bit of ``path`` where pyarrow still reads the file (a changed value, no error);
    return what it reads."""
    import pyarrow.parquet as pq
    original = path.read_bytes()
    for at in range(len(original) // 2, len(original) - 8):
        data = bytearray(original)
        data[at] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            return pq.read_table(path).to_pandas()
        except (OSError, ValueError):       # this one Parquet notices: try the next byte
            continue
    raise AssertionError("no bit flip of the file goes unnoticed by Parquet")


def test_every_stored_file_has_a_checksum_beside_it(store: Store):
    path = store.write("t", "k", pd.DataFrame({"x": [1.0, 2.0]}))
    store.record_run("r", {"status": "done"})
    for f in (path, store.root / "runs" / "r.json"):
        sidecar = f.with_name(f".{f.name}.sha256")
        import hashlib
        assert sidecar.read_text().split() == ["sha256", hashlib.sha256(f.read_bytes()).hexdigest(),
                                               str(f.stat().st_size)]
    assert store.keys("t") == ["k"] and store.tables() == ["t"]        # sidecars are not results
    assert pd.read_parquet(path.parent)["x"].tolist() == [1.0, 2.0]    # pandas reads the folder


def test_bit_flipped_parquet_that_still_parses_is_detected(store: Store):
    df = pd.DataFrame({"x": np.arange(2000.0)})
    path = store.write("t", "flip", df)
    store.write("t", "ok", pd.DataFrame({"x": [1.0]}))
    flipped = _flip_a_bit_parquet_misses(path)         # Parquet itself does not notice ...
    assert not flipped.equals(df)                      # ... that a value changed
    for call in (lambda: store.read("t"), lambda: store.read("t", "flip"),
                 lambda: store.meta("t", "flip"), lambda: store.query("SELECT sum(x) FROM t")):
        with pytest.raises(StoreError) as e:
            call()
        assert "checksum" in one_line_naming(e, path)
    assert not store.has("t", "flip") and store.has("t", "ok")
    assert store.verify() == [str(path)]


def test_bit_flipped_run_record_is_detected(store: Store):
    store.record_run("r", {"status": "done", "wall_s": 12.5})
    path = store.root / "runs" / "r.json"
    path.write_text(path.read_text().replace("12.5", "92.5"))         # still valid JSON
    with pytest.raises(StoreError) as e:
        store.run("r")
    assert "checksum" in one_line_naming(e, path)
    assert store.verify() == [str(path)]


def test_reuse_moves_a_damaged_file_to_quarantine_with_one_warning(store: Store):
    good = pd.DataFrame({"x": [1.0, 2.0]})
    path = store.write("t", "k", good)
    pd.testing.assert_frame_equal(store.reuse("t", "k"), good)
    assert store.reuse("t", "missing") is None
    _flip_a_bit(path)
    damaged = path.read_bytes()
    with pytest.warns(rnnlab.store.StoreWarning) as caught:
        assert store.reuse("t", "k") is None
    assert len(caught) == 1
    message = str(caught[0].message)
    assert str(path) in message and "quarantine" in message and "\n" not in message
    assert not path.exists() and not store.has("t", "k") and store.verify() == []
    moved = sorted((store.root / "quarantine").iterdir())
    assert [p.suffix for p in moved] == [".parquet", ".sha256"]        # the file and its checksum
    assert moved[0].name.endswith("tables__t__k.parquet") and moved[0].read_bytes() == damaged
    store.write("t", "k", good)                                         # recomputed
    pd.testing.assert_frame_equal(store.reuse("t", "k"), good)


def test_file_without_checksum_is_trusted_if_it_parses(store: Store):
    """Stores written before checksums existed: a file with no sidecar is read (verified by
    parsing only); a truncated one is still detected."""
    path = store.write("t", "old", pd.DataFrame({"x": [1, 2]}))
    store.write("t", "cut", pd.DataFrame({"x": [3]}))
    for key in ("old", "cut"):
        sidecar = path.with_name(f".{key}.parquet.sha256")
        sidecar.unlink()
    cut = store.path("t", "cut")
    cut.write_bytes(cut.read_bytes()[:-20])
    assert store.read("t", "old")["x"].tolist() == [1, 2] and store.has("t", "old")
    assert not store.has("t", "cut") and store.verify() == [str(cut)]


@pytest.mark.parametrize("crash_at", [1, 2])
def test_kill_between_checksum_and_data_never_serves_a_wrong_file(store: Store, crash_at: int):
    """A write renames the checksum into place (1st rename), then the data (2nd rename). A kill
    before either leaves the old result (or none) readable and never a mismatched pair read as
    good: the new checksum beside the old data is damage, detected and recomputed."""
    store.write("t", "k", pd.DataFrame({"x": [1]}))
    child = run_python("""
        import os, sys
        import pandas as pd
        from rnnlab.store import Store
        store, crash_at, calls = Store(sys.argv[1]), int(sys.argv[2]), []
        real = os.replace
        def replace(src, dst):
            calls.append(dst)
            if len(calls) == crash_at:
                os._exit(3)
            real(src, dst)
        os.replace = replace
        store.write("t", "k", pd.DataFrame({"x": [2]}))
        """, str(store.root), str(crash_at), check=False)
    assert child.returncode == 3, child.stderr
    if crash_at == 1:            # nothing renamed: the old result, whole and verified
        assert store.read("t", "k")["x"].tolist() == [1]
    else:                        # new checksum, old data: never read as good
        assert not store.has("t", "k")
        with pytest.raises(StoreError, match="checksum"):
            store.read("t", "k")
    store.write("t", "k", pd.DataFrame({"x": [2]}))
    assert store.read("t", "k")["x"].tolist() == [2] and store.verify() == []


# ----------------------------------------------------------------------- stale locks
def test_lock_file_is_removed_when_released_even_after_an_error(store: Store):
    with store.lock("a"):
        assert (store.root / "locks" / "a.lock").read_text().split()[0] == str(os.getpid())
    with pytest.raises(ZeroDivisionError):
        with store.lock("b"):
            1 / 0
    assert list((store.root / "locks").iterdir()) == []


def test_stale_lock_of_a_dead_process_is_cleared(store: Store):
    """A process killed while holding a lock leaves its file (pid and host inside): the next
    lock taken in the store sees the owner gone and removes it."""
    child = run_python("""
        import os, sys
        from rnnlab.store import Store
        with Store(sys.argv[1]).lock("run-x"):
            os.kill(os.getpid(), 9)
        """, str(store.root), check=False)
    assert child.returncode == -9
    stale = store.root / "locks" / "run-x.lock"
    assert stale.exists()                                          # what a kill leaves
    with store.lock("other"):
        assert not stale.exists()
    with store.lock("run-x", timeout=0):
        pass
    assert list((store.root / "locks").iterdir()) == []


def test_a_lock_held_by_a_live_process_is_never_cleared(store: Store, tmp_path: Path):
    holder = popen_python("""
        import sys
        from rnnlab.store import Store
        with Store(sys.argv[1]).lock("held"):
            print("holding", flush=True)
            sys.stdin.readline()
        """, str(store.root))
    assert holder.stdout.readline().strip() == "holding", holder.communicate()
    try:
        path = store.root / "locks" / "held.lock"
        # even a file naming a dead pid is kept while its lock is held
        path.write_text(f"999999999 {__import__('socket').gethostname()}\n")
        with store.lock("other"):
            pass
        assert path.exists()
        with pytest.raises(StoreError, match="still held"):
            with store.lock("held", timeout=0.1):
                pass
    finally:
        holder.stdin.write("done\n")
        holder.stdin.flush()
        holder.communicate(timeout=30)
    assert holder.returncode == 0
    with store.lock("held", timeout=5):
        pass
