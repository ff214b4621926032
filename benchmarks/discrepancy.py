"""The (l, k)-discrepancy grid of Sterin et al. against a plain per-draw NumPy loop.

rnnlab: ``rnnlab.discrepancy(cell, lengths=1..50, hidden_sizes=1..20, draws=2000)`` for the paper's
two cells (rnn-sigmoid, gru-s; N(0, 1) weights, no biases) - the whole paper grid.
Baseline: what the authors' notebooks do, written plainly: for every hidden size k and every draw,
draw N(0, 1) parameters, run u = 0...0 and v = 1 0...0 step by step in NumPy and take the norm of
the difference (one pass of 50 steps records every length l, which is already kinder to the
baseline than recomputing each l from scratch). It is timed on a slice of the grid (a few k
values, a few draws, interleaved with rnnlab) and extrapolated linearly in k to the full grid.
Targets: >= 1000x, and the full grid (both cells) in < 3 s.

    python benchmarks/discrepancy.py [--quick]
"""
from __future__ import annotations

import time

try:
    from . import common
except ImportError:       # run as a script
    import common

WORKLOAD = "discrepancy"
CELLS = ("rnn-sigmoid", "gru-s")
TARGET_RATIO = 1000.0
TARGET_S = 3.0


def config(quick: bool) -> dict:
    return {"cells": list(CELLS), "lmax": 50, "kmax": 20, "draws": 2000,
            "slice_ks": [1, 10, 20], "slice_draws": 5 if quick else 20, "reps": 2 if quick else 3}


# ----------------------------------------------------------------------------- the baseline


def _sig(x):
    import numpy as np
    return 1.0 / (1.0 + np.exp(-x))


def numpy_loop(cell: str, lmax: int, ks, draws: int, seed: int = 0):
    """The plain loop: distances [len(ks), draws, lmax] (float64)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    zero, one = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    out = np.zeros((len(ks), draws, lmax))
    for j, k in enumerate(ks):
        for d in range(draws):
            if cell == "rnn-sigmoid":
                U, W = rng.standard_normal((k, 2)), rng.standard_normal((k, k))
            else:
                U, W = rng.standard_normal((3 * k, 2)), rng.standard_normal((3 * k, k))
            hu, hv = np.zeros(k), np.zeros(k)
            for t in range(lmax):
                xu, xv = zero, (one if t == 0 else zero)
                if cell == "rnn-sigmoid":
                    hu = _sig(U @ xu + W @ hu)
                    hv = _sig(U @ xv + W @ hv)
                else:
                    hu = _gru_s(U, W, hu, xu, k)
                    hv = _gru_s(U, W, hv, xv, k)
                out[j, d, t] = np.linalg.norm(hu - hv)
    return out


def _gru_s(U, W, h, x, k):
    import numpy as np
    gi = U @ x
    z = _sig(gi[:k] + W[:k] @ h)
    r = _sig(gi[k:2 * k] + W[k:2 * k] @ h)
    hc = np.tanh(gi[2 * k:] + W[2 * k:] @ (r * h))
    return (1 - z) * hc + z * h


# ----------------------------------------------------------------------------- measurements


def _rnnlab(cell, lmax, kmax, draws):
    import rnnlab
    return rnnlab.discrepancy(cell, range(1, lmax + 1), range(1, kmax + 1), draws=draws)


def measure(cells, lmax: int, kmax: int, draws: int, slice_ks, slice_draws: int, reps: int) -> dict:
    import numpy as np
    from rnnlab.analysis import discrepancy as dm
    rows = []
    first = {}
    for cell in cells:
        t = dm.timings(cell, range(1, lmax + 1), range(1, kmax + 1), draws)   # fresh compile
        first[cell] = t
        _rnnlab(cell, lmax, kmax, draws)                                     # warm executable
    fns = {f"rnnlab:{c}": (lambda c=c: _rnnlab(c, lmax, kmax, draws)) for c in cells}
    for c in cells:
        for k in slice_ks:
            fns[f"numpy:{c}:{k}"] = (lambda c=c, k=k: numpy_loop(c, lmax, [k], slice_draws))
    t = common.interleave(fns, reps)
    ks_all = np.arange(1, kmax + 1)
    total_r, total_b = 0.0, 0.0
    for c in cells:
        r = common.median(t[f"rnnlab:{c}"]["wall"])
        per_pair = np.array([common.median(t[f"numpy:{c}:{k}"]["wall"]) / slice_draws for k in slice_ks])
        # seconds per (k, draw) pair, linear in k between the measured ks, times all draws
        est = float(np.interp(ks_all, np.asarray(slice_ks), per_pair).sum() * draws)
        total_r += r
        total_b += est
        rows.append({"case": f"{c} l<={lmax} k<={kmax} x{draws}", "rnnlab_s": r, "numpy_est_s": est,
                     "ratio": est / r, "compile_s": first[c].get("compile_s"),
                     "numpy_per_draw_ms": 1000 * float(per_pair.mean()), "target": TARGET_RATIO,
                     "met": bool(est / r >= TARGET_RATIO)})
    rows.append({"case": "both cells (paper grid)", "rnnlab_s": total_r, "numpy_est_s": total_b,
                 "ratio": total_b / total_r, "target": TARGET_RATIO,
                 "met": bool(total_b / total_r >= TARGET_RATIO and total_r < TARGET_S),
                 "compile_s": sum(first[c].get("compile_s", 0.0) for c in cells)})
    return {"cases": rows}


def rnnlab_once(cells, lmax: int, kmax: int, draws: int) -> dict:
    for c in cells:
        _rnnlab(c, lmax, kmax, draws)
    return {}


def baseline_once(cells, lmax: int, kmax: int, slice_draws: int) -> dict:
    for c in cells:
        numpy_loop(c, lmax, [kmax], slice_draws)
    return {}


def run(quick: bool = False, isolate: bool = True, memory: bool = True, **overrides) -> dict:
    cfg = {**config(quick), **overrides}
    kw = {k: cfg[k] for k in ("cells", "lmax", "kmax", "draws", "slice_ks", "slice_draws", "reps")}
    res = common.run_child("discrepancy", "measure", kw) if isolate else measure(**kw)
    cases = res["cases"]
    if memory:
        rss_r = common.peak_rss("discrepancy", "rnnlab_once",
                                {k: cfg[k] for k in ("cells", "lmax", "kmax", "draws")})
        rss_b = common.peak_rss("discrepancy", "baseline_once",
                                {"cells": cfg["cells"], "lmax": cfg["lmax"], "kmax": cfg["kmax"],
                                 "slice_draws": cfg["slice_draws"]})
        cases[-1]["rss_rnnlab_mb"], cases[-1]["rss_numpy_mb"] = rss_r, rss_b
    return {"workload": WORKLOAD, "title": "D(l, k) on the paper grid vs a per-draw NumPy loop",
            "config": cfg, "cases": cases,
            "columns": [("case", "case"), ("rnnlab_s", "rnnlab s"), ("numpy_est_s", "numpy s (extrap.)"),
                        ("ratio", "ratio"), ("target", "target"), ("met", "met"), ("compile_s", "compile s"),
                        ("numpy_per_draw_ms", "numpy ms/(k,draw)"), ("rss_rnnlab_mb", "rnnlab MB"),
                        ("rss_numpy_mb", "numpy MB")],
            "notes": [f"numpy timed on k in {cfg['slice_ks']} x {cfg['slice_draws']} draws per cell, "
                      f"interleaved with rnnlab ({cfg['reps']} rounds), extrapolated linearly in k to "
                      f"k = 1..{cfg['kmax']} x {cfg['draws']} draws",
                      f"targets: ratio >= {TARGET_RATIO:.0f}x and the whole grid (both cells) < {TARGET_S:.0f} s "
                      "(the last row's 'met' checks both)",
                      "compile s: a fresh ahead-of-time compilation (rnnlab.analysis.discrepancy.timings)"]}


if __name__ == "__main__":
    raise SystemExit(common.cli(run))
