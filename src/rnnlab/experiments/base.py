"""The experiment contract and its runner.

Every experiment is one module with::

    NAME, PAPER ("mehta" | "sterin" | "beyond"), SOURCE (figure reference), QUESTION
    CHOICES: dict[str, str]           # defaults we chose where the paper is silent
    VERSION: int                      # bump to invalidate stored shards after a code change
    default_config(scale) -> dict     # "quick" | "paper"
    execute(ctx) -> dict[str, DataFrame]            # data -> population -> train -> measure
    figures(tables, config) -> dict[str, Figure]    # plot
    claims(tables, config) -> list[Claim]           # claim check (pure: testable on broken input)

The runner resolves the config, hashes it into a run id, computes shards through a backend
(reusing every shard already in the store), writes tables/figures/config/claims into
``OUT/NAME/``, records the run in the store, and reuses a finished run as it is.

Nothing damaged is reused. The record of a finished run lists the store files it was built from
(its shards, its tables) and the checksum of every output file; a rerun checks them all first.
A damaged store file (or run record) is moved to the store's quarantine with one warning line
and recomputed (only the shards affected; the others are reused), a damaged output file makes
the outputs be written again from the stored shards.

Sequential runs (``run_until_decided``, ``rnnlab run EXP --until-decided``): an experiment that
declares ``ROUNDS = {"units": "inits", "offset": "init_offset"}`` can grow its sample in rounds
fixed in advance (:func:`rnnlab.analysis.stats.round_sizes`). Round 1 is the plain run (its
shards are reused as they are); round j trains new units whose seeds start at the offset, so no
stored shard changes key. Every look splits the claims' error budget over ``max_rounds`` looks.
"""
from __future__ import annotations

import json
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import backends, plugins
from .._jaxcfg import x64
from ..analysis import stats
from ..analysis.claims import Claim
from ..errors import ConfigError, DamagedFileError, RnnlabError, StoreWarning
from ..plots import style
from ..progress import progress_bar
from ..store import Store, canonical, config_hash
from ..store.files import digest, looks_complete

SCALES = ("quick", "paper", "tiny")


@dataclass
class ExperimentResult:
    name: str
    run_id: str
    out_dir: Path
    config: dict
    tables: dict[str, pd.DataFrame]
    claims: list[Claim]
    wall_s: float
    reused: bool = False
    shards_computed: int = 0
    shards_reused: int = 0
    figures: list[Path] = field(default_factory=list)


class Context:
    """What `execute` gets: the resolved config and a way to compute shards through the store."""

    def __init__(self, name: str, version: int, config: dict, store: Store, backend, progress: bool):
        self.name, self.version, self.config = name, version, config
        self.store, self.backend, self.progress = store, backend, progress
        self.shards_computed = 0
        self.shards_reused = 0
        self.stored: list[list[str]] = []    # [table, key] of every shard file used, for the record

    def shard_key(self, fn, shard: dict) -> str:
        key = {"experiment": self.name, "version": self.version,
               "fn": f"{fn.__module__}.{fn.__qualname__}", "shard": shard}
        fp = plugins.fingerprint(shard)      # a user cell's/task's code: editing it recomputes
        if fp:                               # (absent for built-ins: their keys are unchanged)
            key["plugins"] = fp
        return config_hash(key)

    def map(self, fn, shards: list[dict], desc: str | None = None, pinned: bool = False) -> list[dict[str, pd.DataFrame]]:
        """fn(shard) -> {table: DataFrame} for every shard; shards already in the store are read
        back, the others computed by the backend and written (by this process alone) as each one
        finishes, the completion marker last. fn must be a module-level function. `pinned`
        marks long compute-bound shards that the local backend may run in one worker process
        per core (``backends.local``)."""
        keys = [self.shard_key(fn, s) for s in shards]
        results: list = [None] * len(shards)
        todo = []
        for i, k in enumerate(keys):
            cached = self._cached(k)
            if cached is not None:
                results[i] = cached
                self.shards_reused += 1
                self._note(k, cached)
            else:
                todo.append(i)
        bar = progress_bar(total=len(shards), initial=len(shards) - len(todo),
                           desc=desc or f"{self.name}", disable=not self.progress, unit="shard")
        todo_shards = [shards[i] for i in todo]
        it = self.backend.map(fn, todo_shards, pinned=True) if pinned else self.backend.map(fn, todo_shards)
        for j, out in it:
            i = todo[j]
            for t, df in out.items():
                self.store.write(self._shard_table(t), keys[i], df)
            self.store.write("shards_done", keys[i], pd.DataFrame({"table": list(out)}),
                             meta={"experiment": self.name, "shard": canonical(shards[i])})
            results[i] = out
            self.shards_computed += 1
            self._note(keys[i], out)
            bar.update(1)
        bar.close()
        return results

    def map_as(self, owner, fn, shards: list[dict], desc: str | None = None) -> list[dict[str, pd.DataFrame]]:
        """:meth:`map` for shards of another experiment module `owner`, under its name and VERSION
        in the store: models that experiment trains are computed once and read back by both
        (gradient-distribution uses embedded-reber's, random-landscape perturbation's). Counted
        in this run's shards and listed in its record."""
        sub = Context(owner.NAME, owner.VERSION, self.config, self.store, self.backend, self.progress)
        out = sub.map(fn, shards, desc=desc)
        self.shards_computed += sub.shards_computed
        self.shards_reused += sub.shards_reused
        self.stored += sub.stored
        return out

    def _shard_table(self, t: str) -> str:
        return f"shard.{self.name}.{t}"

    def _note(self, key: str, tables: dict) -> None:
        self.stored += [["shards_done", key]] + [[self._shard_table(t), key] for t in tables]

    def _cached(self, key: str) -> dict[str, pd.DataFrame] | None:
        """The stored tables of shard `key`, or None when it must be computed: not finished, or
        one of its files missing or damaged. Every damaged file is moved to quarantine with a
        warning (Store.reuse); recomputing writes the shard's files whole again."""
        marker = self.store.reuse("shards_done", key)
        if marker is None:
            return None
        tables = {t: self.store.reuse(self._shard_table(t), key) for t in marker["table"].tolist()}
        return None if any(df is None for df in tables.values()) else tables


def _module(name: str):
    from . import get
    return get(name)


def resolve_config(mod, scale: str = "quick", config: dict | None = None) -> dict:
    """Defaults of `scale` updated with `config`; unknown keys and wrong types are ConfigErrors."""
    if scale not in SCALES:
        raise ConfigError(f"scale: unknown scale {scale!r}; known: quick, paper")
    cfg = dict(mod.default_config(scale))
    cfg.setdefault("max_rounds", 1)          # looks the claims' error budget is split over
    if getattr(mod, "ROUNDS", None):
        cfg.setdefault("rounds", 1)          # rounds of units in this run (sequential designs)
        cfg.setdefault(mod.ROUNDS["offset"], 0)
    for k, v in (config or {}).items():
        if k not in cfg:
            raise ConfigError(f"{k}: unknown config key for {mod.NAME}; known: {', '.join(sorted(cfg))}")
        cfg[k] = _coerce(k, v, cfg[k])
    cfg["scale"] = scale
    if "seed" in cfg:          # every experiment has one; checked here, before anything is stored
        from ..tasks.base import check_seed
        check_seed(cfg["seed"])
    if "cells" in cfg:
        cfg["cells"] = check_cells(cfg["cells"])
    for k in ("max_rounds", "rounds"):
        if k in cfg and (isinstance(cfg[k], bool) or not isinstance(cfg[k], int) or cfg[k] < 1):
            raise ConfigError(f"{k}: must be an integer >= 1, got {cfg[k]!r}")
    if cfg.get("rounds", 1) > cfg["max_rounds"]:
        raise ConfigError(f"rounds: {cfg['rounds']} exceeds max_rounds ({cfg['max_rounds']})")
    if hasattr(mod, "validate"):
        mod.validate(cfg)
    return cfg


def check_cells(value, field: str = "cells") -> list[str]:
    """Every experiment's "cells" (or another list of cells, named `field`): a non-empty list
    (or comma string) of distinct registered cells; returns the list (what the experiment's
    own `validate` then sees)."""
    from .. import cells
    names = [c.strip() for c in value.split(",") if c.strip()] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(f"{field}: expected a non-empty list of cell names, got {value!r}")
    known = cells.known()
    for c in names:
        if not isinstance(c, str) or c not in known:
            raise ConfigError(f"{field}: unknown cell {c!r}; known: {', '.join(sorted(known))}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{field}: duplicate cell in {list(names)!r}")
    return list(names)


def _coerce(key, value, default):
    """Accept a value of the default's type (ints for floats, lists for tuples)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"{key}: expected {type(default).__name__}, got {value!r}")


@x64
def run(name: str, config: dict | None = None, *, scale: str = "quick", out: str | os.PathLike = "results",
        store: Store | None = None, backend: str | object = "local", address: str | None = None,
        progress: bool = True, force: bool = False) -> ExperimentResult:
    """Run experiment `name` (or reuse its finished run) and write OUT/NAME/."""
    t0 = time.perf_counter()
    mod = _module(name)
    cfg = resolve_config(mod, scale, config)
    if isinstance(backend, str) and backend not in backends.BACKENDS:   # before touching the store
        raise ConfigError(f"backend: unknown backend {backend!r}; known: {', '.join(backends.BACKENDS)}")
    out_dir = Path(out) / mod.NAME
    store = store or Store(Path(out) / "store")
    version = getattr(mod, "VERSION", 1)
    # the module's code is part of the run id: editing claims or figures re-renders them from the
    # stored shards (whose keys hold VERSION, not the code), so no stale claims are ever served
    ident = {"experiment": mod.NAME, "version": version, "config": cfg, "code": _code_hash(mod)}
    fp = plugins.fingerprint(cfg)            # user cells/tasks of the config: their code too
    if fp:
        ident["plugins"] = fp
    run_id = config_hash(ident)

    with store.lock(f"run-{run_id}"):
        done = _stored_run(store, run_id)
        if not force and done and done.get("status") == "done" and _stored_intact(store, done) \
                and _outputs_present(out_dir, run_id, done):
            return _load_result(mod, out_dir, run_id, cfg, time.perf_counter() - t0)
        be = backends.get(backend, address) if isinstance(backend, str) else backend
        started = time.time()
        store.record_run(run_id, {"experiment": mod.NAME, "config": cfg, "status": "running",
                                  "started": started, "host": socket.gethostname(), "pid": os.getpid()})
        ctx = Context(mod.NAME, version, cfg, store, be, progress)
        try:
            tables, total = execute_rounds(mod, ctx, cfg)
            claims = mod.claims(tables, total)
            figs = mod.figures(tables, total)
        except BaseException as e:
            store.record_run(run_id, {"experiment": mod.NAME, "config": cfg, "status": "failed",
                                      "started": started, "finished": time.time(),
                                      "error": "".join(traceback.format_exception_only(type(e), e)).strip()})
            raise
        finally:
            if isinstance(backend, str):
                be.close()
        wall = time.perf_counter() - t0
        paths = _write_outputs(mod, out_dir, run_id, cfg, tables, claims, figs, wall, ctx, store)
        outputs = paths + [out_dir / n for n in ("config.json", "run.json", "claims.json")]
        store.record_run(run_id, {"experiment": mod.NAME, "config": cfg, "status": "done",
                                  "started": started, "finished": time.time(), "wall_s": wall,
                                  "verdicts": {c.id: c.verdict for c in claims},
                                  # what a rerun checks before reusing the run (module docstring)
                                  "stored": ctx.stored + [[f"{mod.NAME}.{t}", run_id] for t in tables],
                                  "outputs": {p.name: digest(p)[0] for p in outputs}})
    return ExperimentResult(mod.NAME, run_id, out_dir, cfg, tables, claims, wall, False,
                            ctx.shards_computed, ctx.shards_reused, paths)


#: model ids of round j are shifted by (j - 1) * MODEL_SHIFT when the rounds' tables are merged
MODEL_SHIFT = 1_000_000


def round_configs(mod, cfg: dict) -> list[dict]:
    """The configs of the rounds of a run: round 1 is `cfg` itself; round j adds
    ``round_sizes(...)[j - 1]`` units whose seeds start after every earlier round's."""
    rounds = int(cfg.get("rounds", 1))
    if rounds == 1:
        return [cfg]
    units, offset = mod.ROUNDS["units"], mod.ROUNDS["offset"]
    sizes = stats.round_sizes(int(cfg[units]), int(cfg["max_rounds"]))[:rounds]
    out, start = [], int(cfg[offset])
    for m in sizes:
        out.append({**cfg, units: m, offset: start})
        start += m
    return out


def execute_rounds(mod, ctx, cfg: dict) -> tuple[dict, dict]:
    """Tables of every round merged (``mod.merge_rounds`` or :func:`merge_rounds`), and the config
    the claims and figures see (its unit count is the total over rounds)."""
    cfgs = round_configs(mod, cfg)
    if len(cfgs) == 1:
        return mod.execute(ctx), cfg
    parts = []
    for c in cfgs:
        ctx.config = c
        parts.append(mod.execute(ctx))
    ctx.config = cfg
    units = mod.ROUNDS["units"]
    total = {**cfg, units: sum(c[units] for c in cfgs)}
    return getattr(mod, "merge_rounds", merge_rounds)(parts, total), total


def merge_rounds(parts: list[dict], cfg: dict) -> dict:
    """Concatenate each table over rounds, with a `round` column; model ids are made unique by
    shifting round j's by (j - 1) * MODEL_SHIFT."""
    out = {}
    for name in parts[0]:
        frames = []
        for j, t in enumerate(parts):
            df = t[name].copy()
            if "model" in df:
                df["model"] = df["model"].astype("int64") + j * MODEL_SHIFT
            df["round"] = j + 1
            frames.append(df)
        out[name] = pd.concat(frames, ignore_index=True)
    return out


def run_until_decided(name: str, config: dict | None = None, *, budget_s: float = 600.0, max_rounds: int = 4,
                      scale: str = "quick", **kw) -> ExperimentResult:
    """Run `name` in rounds until every claim is decided, `max_rounds` rounds are done or the next
    round would overrun `budget_s` (estimated from the last round's wall time and size). Every
    round's models are kept in the store; each look uses the alpha spending of `max_rounds` looks."""
    mod = _module(name)
    if not getattr(mod, "ROUNDS", None):
        raise ConfigError(f"until-decided: {mod.NAME} does not declare ROUNDS (no unit to add in rounds)")
    t0 = time.perf_counter()
    base_cfg = {**(config or {}), "max_rounds": int(max_rounds)}
    sizes = stats.round_sizes(int(resolve_config(mod, scale, base_cfg)[mod.ROUNDS["units"]]), max_rounds)
    rounds = 1
    while True:
        t1 = time.perf_counter()
        res = run(name, {**base_cfg, "rounds": rounds}, scale=scale, **kw)
        took = time.perf_counter() - t1
        undecided = [c.id for c in res.claims if c.verdict == "inconclusive"]
        if not undecided or rounds >= max_rounds:
            break
        est = took * sizes[rounds] / max(sizes[rounds - 1], 1)     # the next round, at this round's pace
        if time.perf_counter() - t0 + est > budget_s:
            break
        rounds += 1
    res.wall_s = time.perf_counter() - t0
    return res


def _code_hash(mod) -> str:
    import hashlib
    import inspect
    return hashlib.sha256(inspect.getsource(mod).encode()).hexdigest()[:16]


def _write_outputs(mod, out_dir: Path, run_id, cfg, tables, claims, figs, wall, ctx, store) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.parquet"):
        old.unlink()
    paths = []
    for tname, df in tables.items():
        df = df.copy()
        df.insert(0, "run_id", run_id)
        store.write(f"{mod.NAME}.{tname}", run_id, df, meta={"config": canonical(cfg)})
        tmp = out_dir / f".{tname}.parquet.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, out_dir / f"{tname}.parquet")
        paths.append(out_dir / f"{tname}.parquet")
    for fname, fig in figs.items():
        paths += style.save(fig, out_dir, fname)
    _write_json(out_dir / "config.json", {
        "experiment": mod.NAME, "run_id": run_id, "paper": mod.PAPER, "source": mod.SOURCE,
        "question": mod.QUESTION, "config": cfg, "choices": getattr(mod, "CHOICES", {})})
    _write_json(out_dir / "run.json", {"run_id": run_id, "wall_s": wall, "shards_computed": ctx.shards_computed,
                                       "shards_reused": ctx.shards_reused, "backend": getattr(ctx.backend, "name", "?")})
    _write_json(out_dir / "claims.json", [c.to_dict() for c in claims])   # last: marks completion
    return paths


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def _stored_run(store: Store, run_id: str) -> dict | None:
    """The run's record; a damaged one is moved to quarantine (one warning) and the run done
    again from its stored shards."""
    try:
        return store.run(run_id)
    except DamagedFileError as e:
        store.quarantine(e.path, e.reason)
        return None


def _stored_intact(store: Store, done: dict) -> bool:
    """Whether every store file the finished run was built from is there and whole; each
    damaged one is moved to quarantine (one warning each) to be recomputed. (Runs recorded
    before records listed their files have nothing listed: their outputs alone are checked.)"""
    return all([store.intact(t, k) for t, k in done.get("stored", [])])


def _outputs_present(out_dir: Path, run_id: str, done: dict) -> bool:
    expected = done.get("outputs")
    if expected is not None:
        tables = {p.name for p in out_dir.glob("*.parquet")}
        for name, sha in expected.items():
            path = out_dir / name
            if not path.is_file():
                return False
            if digest(path)[0] != sha:
                warnings.warn(StoreWarning(f"output {path} does not match its checksum in the "
                                           f"run's record; writing the outputs again"), stacklevel=3)
                return False
        return tables <= set(expected)
    try:
        ok = json.loads((out_dir / "run.json").read_text())["run_id"] == run_id and (out_dir / "claims.json").exists()
        json.loads((out_dir / "claims.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    # a damaged output table: write the outputs again (from the stored shards)
    return ok and all(looks_complete(p) for p in out_dir.glob("*.parquet"))


def _load_result(mod, out_dir: Path, run_id, cfg, wall) -> ExperimentResult:
    tables = {p.stem: pd.read_parquet(p).drop(columns=["run_id"]) for p in sorted(out_dir.glob("*.parquet"))}
    claims = [Claim(**{**c, "interval": None if c["interval"] is None else tuple(c["interval"])})
              for c in json.loads((out_dir / "claims.json").read_text())]
    return ExperimentResult(mod.NAME, run_id, out_dir, cfg, tables, claims, wall, True)


class ExperimentError(RnnlabError):
    pass
