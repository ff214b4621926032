"""A results folder as pandas DataFrames: ``rnnlab.open("results")``.

>>> r = rnnlab.open("results")
>>> r.experiments()                       # one row per experiment folder with results
>>> r.claims()                            # one row per claim: experiment, claim, verdict, value, lo, hi, ...
>>> r.table("capacity-inits.accuracy")    # the current run's table (all_runs=True: every stored run)
>>> r.tables()                            # the table names
>>> r.sql("SELECT cell, avg(best_val_acc) FROM capacity_inits_accuracy GROUP BY cell")
>>> r.rankings()                          # rnnlab compare-cell results, one row per (cell, claim)

Reads only: nothing is created or changed in the folder. The experiment folders are those
``rnnlab run``/``reproduce`` (``OUT/<experiment>/``) and ``rnnlab compare-cell``
(``OUT/compare-CELL/<experiment>/``) write; their ``claims.json`` marks a finished run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .errors import ConfigError, StoreError

CLAIM_COLUMNS = ["experiment", "folder", "claim", "verdict", "value", "lo", "hi", "statistic", "text",
                 "scale", "run_id"]
EXPERIMENT_COLUMNS = ["experiment", "folder", "paper", "scale", "run_id", "wall_s", "claims", "holds",
                      "fails", "inconclusive", "tables", "path"]


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Results:
    def __init__(self, path: str | os.PathLike = "results"):
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            what = "is a file, not a results folder" if self.path.exists() else "does not exist"
            raise ConfigError(f"results: {self.path} {what}")

    def __repr__(self) -> str:
        return f"rnnlab.open({str(self.path)!r})"

    # ------------------------------------------------------------------ experiment folders
    def _folders(self) -> list[Path]:
        """Folders holding a finished run (claims.json and config.json), the top level first."""
        found = []
        for base in [self.path] + sorted(p for p in self.path.glob("compare-*") if p.is_dir()):
            found += sorted(p for p in base.iterdir()
                            if p.is_dir() and (p / "claims.json").is_file() and (p / "config.json").is_file())
        return found

    def _folder(self, experiment: str) -> Path:
        p = self.path / experiment
        if not (p / "claims.json").is_file():
            raise ConfigError(f"experiment: no finished run of {experiment!r} in {self.path}")
        return p

    def _label(self, folder: Path) -> str:
        return str(folder.parent.relative_to(self.path)) if folder.parent != self.path else ""

    def experiments(self) -> pd.DataFrame:
        """One row per finished experiment folder: experiment, folder ('' or compare-CELL),
        paper, scale, run_id, wall_s, claims and their verdict counts, its tables, path."""
        rows = []
        for f in self._folders():
            cfg = _json(f / "config.json") or {}
            run = _json(f / "run.json") or {}
            claims = _json(f / "claims.json") or []
            verdicts = [c.get("verdict") for c in claims if isinstance(c, dict)]
            rows.append({"experiment": cfg.get("experiment", f.name), "folder": self._label(f),
                         "paper": cfg.get("paper"), "scale": (cfg.get("config") or {}).get("scale"),
                         "run_id": cfg.get("run_id"), "wall_s": run.get("wall_s"), "claims": len(verdicts),
                         "holds": verdicts.count("holds"), "fails": verdicts.count("fails"),
                         "inconclusive": verdicts.count("inconclusive"),
                         "tables": sorted(p.stem for p in f.glob("*.parquet")), "path": str(f)})
        return pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)

    def claims(self, experiment: str | None = None) -> pd.DataFrame:
        """One row per claim (of `experiment`, or of every finished experiment): experiment,
        folder, claim (its id), verdict, value, lo, hi (the interval), statistic, text, scale,
        run_id."""
        rows = []
        for f in self._folders():
            cfg = _json(f / "config.json") or {}
            name = cfg.get("experiment", f.name)
            if experiment is not None and name != experiment:
                continue
            for c in _json(f / "claims.json") or []:
                iv = c.get("interval") or (None, None)
                rows.append({"experiment": name, "folder": self._label(f), "claim": c.get("id"),
                             "verdict": c.get("verdict"), "value": c.get("value"), "lo": iv[0], "hi": iv[1],
                             "statistic": c.get("statistic"), "text": c.get("text"),
                             "scale": (cfg.get("config") or {}).get("scale"), "run_id": cfg.get("run_id")})
        df = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
        for k in ("value", "lo", "hi"):
            df[k] = pd.to_numeric(df[k], errors="coerce")
        return df

    # ----------------------------------------------------------------------------- tables
    def _store(self):
        from .store import Store
        return Store(self.path / "store", create=False)

    def tables(self) -> list[str]:
        """The names of the tables: "EXPERIMENT.TABLE" of the experiment folders, then the
        store's other tables (train.summary, shard tables...)."""
        names = [f"{f.name}.{p.stem}" for f in self._folders() if f.parent == self.path
                 for p in sorted(f.glob("*.parquet"))]
        try:
            names += [t for t in self._store().tables() if t not in names]
        except StoreError:
            pass
        return names

    def table(self, name: str, all_runs: bool = False) -> pd.DataFrame:
        """Table `name` ("capacity-inits.accuracy"): the experiment folder's current run, or
        with `all_runs` every run the store holds (a run_id column tells them apart). Names
        that are no experiment table ("train.summary") come from the store."""
        exp, _, tab = name.partition(".")
        if not all_runs and tab and (self.path / exp / f"{tab}.parquet").is_file():
            self._folder(exp)
            return pd.read_parquet(self.path / exp / f"{tab}.parquet")
        try:
            store = self._store()
        except StoreError as e:
            raise StoreError(f"results: {e}") from None
        if name not in store.tables():
            raise ConfigError(f"table: no table {name!r} in {self.path}; known: {', '.join(self.tables())}")
        return store.read(name)

    def sql(self, query: str) -> pd.DataFrame:
        """DuckDB SQL over the store (as ``rnnlab query``): table "a.b-c" is the view a_b_c."""
        return self._store().query(query)

    def rankings(self) -> pd.DataFrame:
        """The compare-cell rankings of this folder: one row per (compared cell, claim), with the
        compared cell in column ``compared``."""
        from .compare import COLUMNS, read_rankings
        frames = [pd.DataFrame(d["ranking"], columns=COLUMNS).assign(compared=d.get("cell"))
                  for d in read_rankings(self.path)]
        if not frames:
            return pd.DataFrame(columns=["compared"] + COLUMNS)
        df = pd.concat(frames, ignore_index=True)
        return df[["compared"] + COLUMNS]
