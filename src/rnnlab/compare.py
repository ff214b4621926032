"""Rank a cell (e.g. your plugin's) against rnn-tanh, gru and lstm on the papers' claims.

:func:`compare_cell` runs every experiment of both papers that takes ``cells`` (or the ones
named) with ``cells = against + [cell]`` into ``OUT/compare-CELL/`` (its own experiment
folders; the store, and so every shard already computed, is OUT's), then reads the claims the
experiments' own ``claims(tables, config)`` functions made: nothing is re-implemented here.

Every claim is about one cell (its *subject*), usually against the first baseline (the
vanilla reference): ``more-good-inits-first-gru-vs-rnn-tanh`` is gru's,
``reber-learned[lstm]`` lstm's. Claims that differ only in their subject form a *family*
(``more-good-inits-first-{cell}-vs-rnn-tanh``); within a family the cells are ranked by
verdict (holds, then inconclusive, then fails), then by the claim's statistic in the direction
the claim asks for (``>``: larger first; ``<``: smaller first). Claims naming no cell are kept
in the table without a rank. The summary counts, per cell, its verdicts and its mean rank over
the families where at least two cells compete.

Writes ``OUT/compare-CELL/ranking.json`` and ``ranking.parquet``; :func:`rnnlab.report.build_report`
shows every ``compare-*/ranking.json`` of a results folder in the HTML report.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ._jaxcfg import x64
from .errors import ConfigError

DEFAULT_AGAINST = ("rnn-tanh", "gru", "lstm")
PAPERS = ("mehta", "sterin")
VERDICT_RANK = {"holds": 0, "inconclusive": 1, "fails": 2}
COLUMNS = ["experiment", "claim", "family", "cell", "verdict", "value", "lo", "hi", "direction", "rank",
           "text"]


@dataclass
class Comparison:
    cell: str
    against: list[str]
    scale: str
    out_dir: Path
    path: Path
    ranking: pd.DataFrame                  # one row per claim (COLUMNS)
    summary: pd.DataFrame                  # one row per cell
    skipped: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)   # experiment -> ExperimentResult


def applicable(scale: str = "quick") -> list[str]:
    """The experiments of both papers that take a list of cells."""
    from . import experiments
    return [n for n, m in experiments.registry().items()
            if getattr(m, "PAPER", None) in PAPERS and "cells" in m.default_config(scale)]


def subject(claim_id: str, cells: list[str], baseline: str) -> tuple[str | None, str]:
    """(the cell a claim is about, its family id) from the claim id: the longest cell name that
    stands as a word of the id once its "vs BASELINE" part is set aside."""
    vs = ""
    rest = claim_id
    for pat in (f"-vs-{baseline}", f" vs {baseline}"):
        if pat in rest:
            vs = pat
            rest = rest.replace(pat, "\0", 1)
            break
    for name in sorted(cells, key=len, reverse=True):
        m = re.search(rf"(^|[-\[\s,]){re.escape(name)}(?=$|[-\]\s,\0])", rest)
        if m:
            start = m.start() + len(m.group(1))
            fam = rest[:start] + "{cell}" + rest[start + len(name):]
            return name, fam.replace("\0", vs)
    return None, claim_id


def _sort_key(row) -> tuple:
    value = row["value"]
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    v = 0.0 if missing else float(value)
    signed = v if row["direction"] == "<" else -v
    return VERDICT_RANK.get(row["verdict"], 1), missing, signed


def rank(claims_by_experiment: dict, cells: list[str]) -> pd.DataFrame:
    """The ranking table (COLUMNS) from {experiment: [Claim or claim dict]}."""
    baseline = cells[0]
    rows = []
    for exp, claims in claims_by_experiment.items():
        for c in claims:
            d = c if isinstance(c, dict) else c.to_dict()
            iv = d.get("interval") or (None, None)
            who, fam = subject(str(d["id"]), cells, baseline)
            rows.append({"experiment": exp, "claim": d["id"], "family": fam, "cell": who,
                         "verdict": d.get("verdict", "inconclusive"), "value": d.get("value"),
                         "lo": iv[0], "hi": iv[1], "direction": (d.get("details") or {}).get("direction"),
                         "rank": None, "text": d.get("text", "")})
    df = pd.DataFrame(rows, columns=COLUMNS)
    for (exp, fam), grp in df[df.cell.notna()].groupby(["experiment", "family"], sort=False):
        keys = {i: _sort_key(r) for i, r in grp.iterrows()}
        order = sorted(keys.values())
        for i, k in keys.items():
            df.loc[i, "rank"] = order.index(k) + 1            # ties share the better rank
    df["rank"] = pd.to_numeric(df["rank"], errors="coerce")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["lo"] = pd.to_numeric(df["lo"], errors="coerce")
    df["hi"] = pd.to_numeric(df["hi"], errors="coerce")
    return df


def summarize(ranking: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """Per cell: claims, holds / inconclusive / fails, families it wins (rank 1 among >= 2 cells)
    and its mean rank over those families; best first."""
    out = []
    sized = ranking[ranking.cell.notna()].groupby(["experiment", "family"])["cell"].transform("count")
    contested = ranking[ranking.cell.notna() & (sized >= 2)]
    for c in cells:
        mine = ranking[ranking.cell == c]
        ranks = contested[contested.cell == c]["rank"]
        out.append({"cell": c, "claims": len(mine), "holds": int((mine.verdict == "holds").sum()),
                    "inconclusive": int((mine.verdict == "inconclusive").sum()),
                    "fails": int((mine.verdict == "fails").sum()), "contested": len(ranks),
                    "wins": int((ranks == 1).sum()),
                    "mean_rank": float(ranks.mean()) if len(ranks) else float("nan")})
    df = pd.DataFrame(out)
    return df.sort_values(["mean_rank", "holds"], ascending=[True, False], na_position="last",
                          kind="stable").reset_index(drop=True)


@x64
def compare_cell(cell: str, against=DEFAULT_AGAINST, experiments=None, *, scale: str = "quick",
                 out: str | os.PathLike = "results", store=None, backend="local",
                 overrides: dict | None = None, progress: bool = False) -> Comparison:
    """Run the applicable experiments with ``against + [cell]`` and rank the cells (see the
    module docstring). ``overrides``: config keys set in every experiment that has them (e.g.
    ``{"seed": 1}``); ``backend``: a name or a backend object (left open)."""
    from . import cells as cell_registry
    from . import experiments as E
    from .store import Store
    against = [str(c) for c in against]
    for c in against + [cell]:
        cell_registry.get(c)
    if not against:
        raise ConfigError("against: at least one baseline cell is needed")
    if cell in against:
        raise ConfigError(f"cell: {cell!r} is also one of the baselines ({', '.join(against)})")
    cells = against + [cell]
    names = applicable(scale) if experiments is None else list(experiments)
    for n in names:
        E.get(n)
    out = Path(out)
    out_dir = out / f"compare-{cell}"
    store = store or Store(out / "store")
    skipped, runs = {}, {}
    for name in names:
        mod = E.get(name)
        defaults = mod.default_config(scale)
        if "cells" not in defaults:
            skipped[name] = "takes no list of cells"
            continue
        config = {"cells": cells, **{k: v for k, v in (overrides or {}).items() if k in defaults}}
        try:
            E.resolve_config(mod, scale, config)
        except ConfigError as e:
            skipped[name] = str(e)
            continue
        runs[name] = E.run(name, config, scale=scale, out=out_dir, store=store, backend=backend,
                           progress=progress)
    ranking = rank({n: r.claims for n, r in runs.items()}, cells)
    summary = summarize(ranking, cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "ranking.json"
    doc = {"cell": cell, "against": against, "scale": scale, "experiments": list(runs),
           "skipped": skipped, "summary": _records(summary), "ranking": _records(ranking)}
    tmp = path.with_name(".ranking.json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)
    ranking.to_parquet(out_dir / "ranking.parquet", index=False)
    return Comparison(cell, against, scale, out_dir, path, ranking, summary, skipped, runs)


def _records(df: pd.DataFrame) -> list[dict]:
    recs = df.astype(object).where(df.notna(), None).to_dict("records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in recs]


def read_rankings(out_dir: str | os.PathLike) -> list[dict]:
    """Every ranking.json of a results folder: its own, then those of its compare-*/ folders."""
    out_dir = Path(out_dir)
    found = [out_dir / "ranking.json"] + sorted(out_dir.glob("compare-*/ranking.json"))
    docs = []
    for p in found:
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and isinstance(d.get("ranking"), list):
            d["_path"] = str(p)
            d["_folder"] = p.parent.name if p.parent != out_dir else None
            docs.append(d)
    return docs
