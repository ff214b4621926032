"""Claims: a paper's conclusion turned into a statistic the run computes and checks.

Every claim ends in one verdict: ``holds``, ``fails`` or ``inconclusive``. Verdicts come from
an interval (bootstrap over inits/draws) compared with a threshold, so a claim can fail.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

VERDICTS = ("holds", "fails", "inconclusive")


@dataclass
class Claim:
    id: str
    text: str
    statistic: str
    value: float | None
    interval: tuple[float, float] | None
    verdict: str
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value"] = _num(self.value)
        d["interval"] = None if self.interval is None else [_num(x) for x in self.interval]
        return d


def _num(x):
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def threshold_claim(id: str, text: str, statistic: str, value: float, interval, threshold: float,
                    direction: str = ">", details: dict | None = None) -> Claim:
    """holds when the whole interval is on the claimed side of `threshold`, fails when the whole
    interval is on the other side, inconclusive when it straddles (or value is NaN). Without an
    interval the point value decides."""
    details = dict(details or {}, threshold=threshold, direction=direction)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Claim(id, text, statistic, value, interval, "inconclusive", details)
    lo, hi = (value, value) if interval is None else interval
    if direction == ">":
        verdict = "holds" if lo > threshold else "fails" if hi <= threshold else "inconclusive"
    elif direction == "<":
        verdict = "holds" if hi < threshold else "fails" if lo >= threshold else "inconclusive"
    else:
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    return Claim(id, text, statistic, float(value),
                 None if interval is None else (float(lo), float(hi)), verdict, details)


def bootstrap(stat, *samples, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05):
    """(value, (lo, hi)) of stat(*samples) with a percentile bootstrap interval; each sample is
    resampled independently (with replacement). Samples of fewer than 2 items give no interval."""
    samples = [np.asarray(s) for s in samples]
    value = float(stat(*samples))
    if any(len(s) < 2 for s in samples):
        return value, None
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        reps[b] = stat(*[s[rng.integers(0, len(s), len(s))] for s in samples])
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return value, None
    return value, (float(np.quantile(reps, alpha / 2)), float(np.quantile(reps, 1 - alpha / 2)))


def wilson(successes: int, n: int, z: float = 1.96):
    """Wilson score interval for a success rate."""
    if n == 0:
        return float("nan"), None
    p = successes / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, (max(0.0, c - h), min(1.0, c + h))


def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov distance sup |F_a - F_b|."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))
