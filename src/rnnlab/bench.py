"""`rnnlab bench [--quick]`: every benchmark of benchmarks/ against the baseline a user would
otherwise run, one summary.

Workloads (one script each in benchmarks/, also runnable alone): train_population,
train_engine, native_peer (the engine vs a hand-written C epoch, where gcc and AVX-512 are
present), population_vs_one_by_one, discrepancy,
random_landscape, reproduce_quick. Each measures rnnlab and its baseline in the same process,
interleaved, and its peak memory in fresh processes; see benchmarks/common.py for the rules.
The summary is printed as tables and written to benchmarks/results/<timestamp>.json.
"""
from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

WORKLOADS = ("train_population", "train_engine", "native_peer", "population_vs_one_by_one", "discrepancy",
             "random_landscape", "reproduce_quick")


def benchmarks_dir() -> Path:
    """The benchmarks/ folder of the source tree rnnlab runs from."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    root = benchmarks_dir().parent
    if not (root / "benchmarks" / f"{name}.py").is_file():
        raise FileNotFoundError(f"bench: benchmarks/{name}.py not found next to the rnnlab sources ({root}); "
                                "the benchmarks need a source checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"benchmarks.{name}")


def run_all(quick: bool, workloads=WORKLOADS, **kw) -> dict:
    """Run the workloads; returns the summary dict (also what main writes)."""
    common = _load("common")
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": bool(quick),
               "machine": common.machine(), "workloads": []}
    for name in workloads:
        t0 = time.perf_counter()
        try:
            res = _load(name).run(quick=quick, **kw)
        except Exception as e:    # noqa: BLE001 - one broken workload must not hide the others
            res = {"workload": name, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                   "cases": []}
        res["bench_wall_s"] = time.perf_counter() - t0
        summary["workloads"].append(res)
    summary["machine_end"] = {"loadavg": common.machine().get("loadavg")}
    summary["targets"] = targets(summary)
    return summary


def _target_row(row: dict, measure: str, value, target, below: bool = False) -> dict:
    """One target of a case: met when `value` reaches `target` (at most it, if `below`)."""
    met = value is not None and target is not None and (value <= target if below else value >= target)
    return dict(row, measure=measure, value=value, target=target, met=bool(met))


def targets(summary: dict) -> list[dict]:
    """One row per target of a case that has targets: met or missed."""
    rows = []
    for w in summary["workloads"]:
        for c in w.get("cases", []):
            if c.get("met") is None:
                continue
            row = {"workload": w["workload"], "case": c.get("case")}
            if "target_peak" in c or "target_vec" in c:      # several targets, one row each
                rows.append(_target_row(row, "ratio", c.get("ratio"), c.get("target")))
                if "ratio_epval" in c:                       # train_engine: the epoch with its validation pass
                    rows.append(_target_row(row, "ratio ep+val", c.get("ratio_epval"), c.get("target")))
                if "target_peak" in c:                       # train_engine: a ratio and a fraction of the peak
                    rows.append(_target_row(row, "of peak", c.get("frac_peak"), c["target_peak"]))
                if "target_vec" in c:                        # the discrepancy: vectorised NumPy, wall time
                    rows.append(_target_row(row, "ratio vec", c.get("ratio_vec"), c["target_vec"]))
                    if "target_s" in c:
                        rows.append(_target_row(row, "wall s", c.get("rnnlab_s"), c["target_s"], below=True))
                continue
            measure = "of peak" if "frac_peak" in c else "ratio" if "ratio" in c else "wall s"
            value = c["frac_peak"] if "frac_peak" in c else c.get("ratio", c.get("wall_s"))
            rows.append(dict(row, measure=measure, value=value, target=c.get("target", c.get("target_s")),
                             met=c["met"]))
    return rows


def main(quick: bool = False) -> int:
    common = _load("common")
    summary = run_all(quick)
    for res in summary["workloads"]:
        if res.get("error"):
            print(f"\n== {res['workload']}: FAILED\n{res['traceback']}", file=sys.stderr)
        else:
            common.print_result(res)
    if summary["targets"]:
        print("\n== targets")
        print(common.table(summary["targets"], [("workload", "workload"), ("case", "case"), ("measure", "measure"),
                                                ("value", "value"), ("target", "target"), ("met", "met")]))
    path = common.save(summary)
    print(f"\nsummary written to {path}")
    return 1 if any(r.get("error") for r in summary["workloads"]) else 0
