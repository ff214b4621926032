"""The whole `rnnlab reproduce --scale quick` (every registered experiment), end to end.

Runs the CLI in a subprocess with a fresh output folder (so nothing is reused from an earlier
store) and an empty XLA persistent compilation cache (every program compiles once, as on a first run):
wall time, CPU time and peak memory of that process, and how many claims the run decided. No
baseline: the targets are absolute (the decisive-claims issue): <= 5 minutes, >= 90% of the
claims decided (holds or fails). With --quick the workload is skipped (it is the long one) unless --scale is given.

    python benchmarks/reproduce_quick.py [--quick]
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

try:
    from . import common
except ImportError:       # run as a script
    import common

WORKLOAD = "reproduce_quick"
TARGET_S = 300.0
TARGET_DECIDED = 0.90


def measure(scale: str = "quick", paper: str = "all", timeout: float = 3600) -> dict:
    """Run the CLI once (this process's only child); wall, CPU and peak RSS of that child."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as out:
        cmd = [sys.executable, "-c", "import sys; from rnnlab.cli import main; sys.exit(main(sys.argv[1:]))",
               "reproduce", "--scale", scale, "--paper", paper, "--out", out, "--device", "cpu"]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        # a fresh machine: XLA's persistent cache on (as `make reproduce` has it) but empty, so
        # everything compiles once; reproduce's worker processes share what they compile
        env = common.child_env({"RNNLAB_JAX_CACHE": os.path.join(out, "xla-cache")})
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        n_exp = len([d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)) and d not in ("store", "xla-cache")])
        per_exp, verdicts = {}, []
        try:
            with open(os.path.join(out, "reproduce.json")) as fh:
                exps = json.load(fh).get("experiments", {})
            per_exp = {k: round(float(v.get("wall_s") or 0.0), 1) for k, v in exps.items()}
            verdicts = [x for v in exps.values() for x in (v.get("verdicts") or {}).values()]
        except (OSError, ValueError):
            pass
    if proc.returncode != 0:
        raise RuntimeError(f"rnnlab reproduce failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    decided = sum(v in ("holds", "fails") for v in verdicts)
    return {"case": f"rnnlab reproduce --scale {scale} --paper {paper}", "wall_s": wall, "cpu_s": cpu,
            "rss_mb": r1.ru_maxrss / 1024.0, "result_folders": n_exp, "experiments_wall_s": per_exp,
            "claims": len(verdicts), "decided": decided, "decided_frac": decided / max(1, len(verdicts)),
            "target_s": TARGET_S if scale == "quick" else None,
            "met": bool(wall <= TARGET_S and decided >= TARGET_DECIDED * len(verdicts)) if scale == "quick" else None,
            "load_avg": list(os.getloadavg())}


def run(quick: bool = False, isolate: bool = True, memory: bool = True, scale: str | None = None,
        paper: str = "all", **overrides) -> dict:
    cols = [("case", "case"), ("wall_s", "wall s"), ("cpu_s", "cpu s"), ("target_s", "target s"),
            ("claims", "claims"), ("decided_frac", "decided"), ("met", "met"), ("rss_mb", "peak MB"), ("result_folders", "experiments")]
    if quick and scale is None:
        return {"workload": WORKLOAD, "title": "whole reproduce --scale quick", "cases": [], "columns": cols,
                "notes": ["skipped with --quick (run `python benchmarks/reproduce_quick.py` for it)"]}
    scale = scale or "quick"
    kw = {"scale": scale, "paper": paper}
    r = common.run_child("reproduce_quick", "measure", kw) if isolate else measure(**kw)
    for k in ("peak_rss_mb", "children_peak_rss_mb", "child_wall_s"):
        r.pop(k, None)
    per = sorted(r.get("experiments_wall_s", {}).items(), key=lambda kv: -kv[1])
    return {"workload": WORKLOAD, "title": f"whole reproduce --scale {scale}", "cases": [r], "columns": cols,
            "notes": ["per experiment (s): " + ", ".join(f"{k} {v:.0f}" for k, v in per),
                      "fresh output folder, empty XLA persistent cache (a first run: everything compiles once)",
                      f"met: wall <= {TARGET_S:.0f} s and >= {100 * TARGET_DECIDED:.0f}% of the claims decided",
                      "peak MB = ru_maxrss of the reproduce process",
                      f"load average at the end: {', '.join(f'{x:.1f}' for x in r.get('load_avg', []))} "
                      "(the machine is shared)"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
