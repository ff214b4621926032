"""Shared pieces of the benchmarks: interleaved timing, workloads in fresh subprocesses (peak
memory, cold compilation), tables, machine facts.

Rules every benchmark follows:
* rnnlab and its baseline run IN THE SAME PROCESS, interleaved (A B A B ...), several times; the
  report gives medians and the ratio of medians - on a shared machine only such ratios mean
  anything;
* compilation is excluded from the steady-state timings and reported on its own (XLA's
  persistent cache is switched off in the measuring process, so it is a cold compile);
* peak memory (ru_maxrss) is measured per workload in a fresh subprocess that runs just that
  side once (XLA allocates outside Python, tracemalloc cannot see it).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARK = "@@BENCH-RESULT@@"


def cpu_time() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def median(xs) -> float:
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return float("nan")
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def interleave(fns: dict, reps: int) -> dict:
    """Run every callable once per round, in order, `reps` rounds (A B A B ...). Returns
    {name: {"wall": [s...], "cpu": [s...]}} (cpu = this process's CPU seconds, all threads)."""
    out = {k: {"wall": [], "cpu": []} for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            w0, c0 = time.perf_counter(), cpu_time()
            f()
            out[k]["wall"].append(time.perf_counter() - w0)
            out[k]["cpu"].append(cpu_time() - c0)
    return out


def timed(f):
    """(result, wall seconds) of one call."""
    t0 = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0


def block(x):
    import jax
    return jax.block_until_ready(x)


# ----------------------------------------------------------------------------- subprocesses


def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["RNNLAB_JAX_CACHE"] = "0"          # cold compiles: the compile times reported are real
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


def peak_rss_self_mb() -> float:
    """This process's peak resident memory (MB) since it was exec'd: VmHWM from /proc (ru_maxrss
    would include the parent's memory at fork time), ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_PEAK_SRC = "__import__('benchmarks.common', fromlist=['x']).peak_rss_self_mb()"


def run_child(module: str, func: str, kwargs: dict | None = None, timeout: float = 3600,
              env: dict | None = None) -> dict:
    """Call benchmarks.<module>.<func>(**kwargs) in a fresh Python process; returns its result
    dict plus peak_rss_mb (the child's own peak, see :func:`peak_rss_self_mb`) and child_wall_s."""
    code = (
        "import json, resource, sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'src')!r}]\n"
        f"from benchmarks import {module} as m\n"
        f"r = m.{func}(**json.loads(sys.argv[1]))\n"
        "r = dict(r or {})\n"
        f"r['peak_rss_mb'] = {_PEAK_SRC}\n"
        "r['children_peak_rss_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0\n"
        f"print({MARK!r} + json.dumps(r), flush=True)\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs or {})], capture_output=True,
                          text=True, timeout=timeout, env=child_env(env), cwd=str(ROOT))
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(MARK):
            r = json.loads(line[len(MARK):])
            r["child_wall_s"] = wall
            return r
    raise RuntimeError(f"benchmark child {module}.{func} failed (exit {proc.returncode}):\n"
                       f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def peak_rss(module: str, func: str, kwargs: dict | None = None, timeout: float = 3600) -> float:
    """Peak resident memory (MB) of a fresh process that runs benchmarks.<module>.<func> once."""
    return run_child(module, func, kwargs, timeout)["peak_rss_mb"]


# ----------------------------------------------------------------------------- reporting


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        import jax
        import jaxlib
        info["jax"] = jax.__version__
        info["jaxlib"] = jaxlib.__version__
    except ImportError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def fmt(x, nd=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        if x != x:
            return "-"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 10:
            return f"{x:.1f}"
        return f"{x:.{nd}g}"
    return str(x)


def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    """Plain-text table: cols = [(key, header), ...]."""
    cells = [[h for _, h in cols]] + [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    width = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c[i].rjust(width[i]) if i else c[i].ljust(width[i]) for i in range(len(cols)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in width))
    return "\n".join(lines)


def print_result(res: dict) -> None:
    print(f"\n== {res['workload']}: {res.get('title', '')}")
    cols = res.get("columns") or [(k, k) for k in res["cases"][0]] if res.get("cases") else []
    if res.get("cases"):
        print(table(res["cases"], [tuple(c) for c in cols]))
    for n in res.get("notes", []):
        print(f"  - {n}")


def cli(run_fn, argv=None) -> int:
    """`python benchmarks/X.py [--quick]`: run the workload, print its table, write its JSON."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    ap.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/*.json")
    args = ap.parse_args(argv)
    res = run_fn(quick=args.quick)
    print_result(res)
    if not args.no_save:
        path = save({"machine": machine(), "quick": args.quick, "workloads": [res]}, prefix=res["workload"])
        print(f"\nwritten {path}")
    return 0


def save(summary: dict, prefix: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / (f"{prefix}-{stamp}.json" if prefix else f"{stamp}.json")
    path.write_text(json.dumps(summary, indent=2, default=_json_default))
    return path


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)
