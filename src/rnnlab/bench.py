"""`rnnlab bench [--quick]`: every benchmark of benchmarks/ against the baseline a user would
otherwise run, one summary.

Workloads (one script each in benchmarks/, also runnable alone): train_population,
train_engine, population_vs_one_by_one, discrepancy,
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

WORKLOADS = ("train_population", "train_engine", "population_vs_one_by_one", "discrepancy", "random_landscape",
             "reproduce_quick")


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


def targets(summary: dict) -> list[dict]:
    """One row per case that has a target: met or missed."""
    rows = []
    for w in summary["workloads"]:
        for c in w.get("cases", []):
            if c.get("met") is None:
                continue
            row = {"workload": w["workload"], "case": c.get("case")}
            if "target_peak" in c:           # two targets: a ratio and a fraction of the peak
                rows.append(dict(row, measure="ratio", value=c.get("ratio"), target=c.get("target"),
                                 met=bool(c.get("ratio", 0) >= c.get("target", float("inf")))))
                rows.append(dict(row, measure="of peak", value=c.get("frac_peak"), target=c["target_peak"],
                                 met=bool(c.get("frac_peak", 0) >= c["target_peak"])))
                continue
            if "target_vec" in c:            # the discrepancy: vs the paper's loop, vs vectorised NumPy, wall
                rows.append(dict(row, measure="ratio", value=c.get("ratio"), target=c.get("target"),
                                 met=bool(c.get("ratio", 0) >= c.get("target", float("inf")))))
                rows.append(dict(row, measure="ratio vec", value=c.get("ratio_vec"), target=c["target_vec"],
                                 met=bool(c.get("ratio_vec", 0) >= c["target_vec"])))
                if "target_s" in c:
                    rows.append(dict(row, measure="wall s", value=c.get("rnnlab_s"), target=c["target_s"],
                                     met=bool(c.get("rnnlab_s", float("inf")) <= c["target_s"])))
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
