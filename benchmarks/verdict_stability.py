"""Are the verdicts stable? The default run against a run with `--factor` times the units on another seed.

Every experiment runs twice: as configured at `--scale` (seed 0, or the results folder given
with `--base`), and with its sampling units (the ``ROUNDS`` units it declares: inits, draws or
reps; ``inits`` and ``max_inits`` for update-cosine) multiplied by `--factor` and ``seed`` =
`--seed`. A claim decided in both runs (holds or fails) either agrees or not; the script prints
every claim, the fraction of agreeing verdicts among the claims both runs decide (target >= 95%)
and every disagreement.

    python benchmarks/verdict_stability.py [--scale quick] [--factor 4] [--seed 1]
                                           [--experiments a,b] [--base results] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DECIDED = ("holds", "fails")


def bigger(mod, cfg: dict, factor: int, seed: int) -> dict:
    """The override that multiplies `mod`'s sampling units by `factor` on seed `seed`."""
    units = (getattr(mod, "ROUNDS", None) or {}).get("units", "inits")
    over = {"seed": int(seed)}
    if units in cfg:
        over[units] = int(cfg[units]) * int(factor)
    if "max_inits" in cfg:                     # update-cosine draws inits until enough qualify
        over["max_inits"] = int(cfg["max_inits"]) * int(factor)
    return over


def _claims_of(folder: Path) -> dict:
    f = folder / "claims.json"
    if not f.exists():
        return {}
    doc = json.loads(f.read_text())
    return {c["id"]: c for c in (doc["claims"] if isinstance(doc, dict) else doc)}


def compare(base: dict, big: dict) -> tuple[list[dict], list[dict]]:
    """(rows for every claim in either run, the disagreements among claims both decide)."""
    rows, bad = [], []
    for exp in sorted(set(base) | set(big)):
        a, b = base.get(exp, {}), big.get(exp, {})
        for cid in list(a) + [c for c in b if c not in a]:
            va = a.get(cid, {}).get("verdict", "missing")
            vb = b.get(cid, {}).get("verdict", "missing")
            row = {"experiment": exp, "claim": cid, "base": va, "big": vb,
                   "both_decided": va in DECIDED and vb in DECIDED, "agree": va == vb}
            rows.append(row)
            if row["both_decided"] and not row["agree"]:
                bad.append(row)
    return rows, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--experiments", default="", help="comma-separated (default: every experiment)")
    ap.add_argument("--base", default="", help="a results folder of the base run (e.g. results/ of make reproduce)")
    ap.add_argument("--out", default="", help="where the runs go (default: a temporary folder)")
    a = ap.parse_args(argv)
    from rnnlab import experiments
    from rnnlab.cli import _release_compiled
    from rnnlab.experiments.base import resolve_config
    names = [n for n in a.experiments.split(",") if n] or experiments.names()
    out = Path(a.out or tempfile.mkdtemp(prefix="rnnlab-stability-"))
    base_dir = Path(a.base) if a.base else out / "base"
    base, big, wall = {}, {}, {}
    for name in names:
        mod = experiments.get(name)
        t0 = time.perf_counter()
        if not a.base:
            experiments.run(name, {}, scale=a.scale, out=base_dir, progress=False)
        over = bigger(mod, resolve_config(mod, a.scale, {}), a.factor, a.seed)
        _release_compiled()          # one process, 2 x 15 experiments: see cli._release_compiled
        experiments.run(name, over, scale=a.scale, out=out / "big", progress=False)
        _release_compiled()
        wall[name] = time.perf_counter() - t0
        base[name], big[name] = _claims_of(base_dir / name), _claims_of(out / "big" / name)
        print(f"{name:22s} {wall[name]:7.1f} s  x{a.factor} override {over}", flush=True)
    rows, bad = compare(base, big)
    print(f"\n{'experiment':22s} {'claim':58s} {'base':13s} {'x' + str(a.factor):13s}")
    for r in rows:
        mark = "" if not r["both_decided"] else ("  agree" if r["agree"] else "  DISAGREE")
        print(f"{r['experiment']:22s} {r['claim'][:58]:58s} {r['base']:13s} {r['big']:13s}{mark}")
    both = [r for r in rows if r["both_decided"]]
    frac = (len(both) - len(bad)) / len(both) if both else float("nan")
    print(f"\n{len(rows)} claims; decided in both runs: {len(both)}; agreeing: {len(both) - len(bad)} "
          f"({100 * frac:.1f}%, target >= 95%: {'met' if frac >= 0.95 else 'NOT met'})")
    for r in bad:
        print(f"disagreement: {r['experiment']} {r['claim']}: base {r['base']}, x{a.factor} {r['big']}")
    (out / "stability.json").write_text(json.dumps({"rows": rows, "disagreements": bad, "agree_fraction": frac,
                                                    "scale": a.scale, "factor": a.factor, "seed": a.seed}, indent=1))
    print(f"written: {out / 'stability.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
