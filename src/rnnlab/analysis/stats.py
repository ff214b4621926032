"""The statistics every claim uses: estimates with intervals, and the sample sizes that decide them.

Thin, documented wrappers on :mod:`scipy.stats`; every function returns an :class:`Estimate`
(point value, interval at a stated confidence level, the number of units behind it, the method).
The choice of method follows the data:

* proportions (k of n units): exact Clopper-Pearson (``binomtest(...).proportion_ci``);
* a difference of two proportions: Newcombe's hybrid score interval (from the two Wilson
  intervals); counts pooled over equal-sized strata (model sizes) keep it valid - pooling
  stratified binomials can only lower the variance;
* several parameters at once (a min or max over k, sizes, cells): simultaneous intervals
  (Bonferroni), combined bound by bound - never a bootstrap of a maximum or a minimum;
* quantiles: distribution-free order-statistic intervals (``quantile_test``);
* means and differences of means: Student / Welch t intervals; smooth statistics of larger
  samples (ratios of means): BCa ``scipy.stats.bootstrap``;
* a two-sample Kolmogorov-Smirnov distance: the DKW band of each empirical CDF (distribution
  free, valid for discrete data, no resampling);
* censored times (forgetting horizons): Kaplan-Meier (``ecdf`` of ``CensoredData``) and the
  log-rank test, reported beside the verdict's statistic.

Sample sizes: ``n_*`` functions give the number of units at which a claim with minimal effect
``delta`` is decided with probability ``power`` (closed form, or exact binomial sums), and
:func:`n_to_decide` scales a finished estimate's interval (width ~ 1/sqrt(n)) to the n at which
it would exclude the nearer decision boundary.

Sequential designs: :func:`look_level` splits the error budget over a fixed maximum number of
looks (Bonferroni alpha spending), so looking after every round of added units cannot raise the
probability of a wrong decision above alpha (``tests/test_stats.py`` checks it by simulation).
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as st

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic's value and its interval. ``n``: the units behind it (the smaller group of a
    two-sample statistic); ``sd``: the per-unit standard deviation when known (sample sizes
    scale with it); ``parts``: the numbers it was computed from (counts, per-group values)."""
    value: float
    interval: tuple[float, float] | None
    n: int
    method: str
    level: float = LEVEL
    sd: float | None = None
    parts: dict = field(default_factory=dict)

    @property
    def defined(self) -> bool:
        return self.interval is not None and np.isfinite(self.value)


def undefined(method: str, n: int = 0, level: float = LEVEL, why: str = "no data", **parts) -> Estimate:
    return Estimate(float("nan"), None, int(n), method, level, None, {"undefined": why, **parts})


def _z(level: float) -> float:
    return float(st.norm.ppf(0.5 + level / 2))


# ------------------------------------------------------------------------------ proportions


def proportion(k: int, n: int, level: float = LEVEL, method: str = "exact") -> Estimate:
    """k successes of n units: Clopper-Pearson ("exact", never below nominal) or Wilson."""
    k, n = int(k), int(n)
    if n == 0:
        return undefined(f"binomial proportion ({method})", 0, level)
    p = k / n
    return Estimate(p, _binom_ci(k, n, float(level), method), n,
                    "Clopper-Pearson exact" if method == "exact" else "Wilson score", level,
                    math.sqrt(max(p * (1 - p), 0.25 / n)), {"k": k, "n": n})


@lru_cache(maxsize=65536)
def _binom_ci(k: int, n: int, level: float, method: str) -> tuple[float, float]:
    ci = st.binomtest(k, n).proportion_ci(confidence_level=level, method=method)
    return float(ci.low), float(ci.high)


def proportion_difference(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Estimate:
    """p1 - p2 of two independent binomials: Newcombe's hybrid score interval (his method 10,
    built from the two Wilson intervals)."""
    if n1 == 0 or n2 == 0:
        return undefined("difference of proportions (Newcombe)", min(n1, n2), level,
                         k1=int(k1), n1=int(n1), k2=int(k2), n2=int(n2))
    a, b = proportion(k1, n1, level, "wilson"), proportion(k2, n2, level, "wilson")
    (l1, u1), (l2, u2) = a.interval, b.interval
    p1, p2 = a.value, b.value
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    sd = math.sqrt(max(p1 * (1 - p1), 0.25 / n1) + max(p2 * (1 - p2), 0.25 / n2))
    return Estimate(d, (max(-1.0, lo), min(1.0, hi)), min(int(n1), int(n2)), "difference of proportions "
                    "(Newcombe hybrid score)", level, sd,
                    {"k1": int(k1), "n1": int(n1), "p1": p1, "k2": int(k2), "n2": int(n2), "p2": p2})


def paired_counts(b: int, c: int, level: float = LEVEL) -> Estimate:
    """Paired binary outcomes: b pairs (1, 0) and c pairs (0, 1). Exact McNemar: the share of
    discordant pairs that favour the first member, b / (b + c), with its exact interval (> 0.5
    means the first member succeeds more often)."""
    e = proportion(b, b + c, level)
    return replace(e, method="exact McNemar (discordant pairs)", parts={**e.parts, "b": int(b), "c": int(c)})


# ------------------------------------------------------------------------------ combining


def bonferroni(level: float, m: int) -> float:
    """The per-parameter level that makes m intervals hold simultaneously at `level`."""
    return 1 - (1 - level) / max(int(m), 1)


def extreme(ests: list[Estimate], how: str, level: float, what: str = "") -> Estimate:
    """max or min of several parameters from intervals computed at ``bonferroni(level, len)``:
    if every interval covers its parameter (probability >= level), [max lo, max hi] covers the
    max (and [min lo, min hi] the min). No resampling of an extreme."""
    if not ests or any(not e.defined for e in ests):
        bad = [e.parts.get("undefined", "undefined") for e in ests if not e.defined]
        return undefined(f"{how} of {len(ests)} simultaneous intervals", 0, level,
                         why="; ".join(bad) or "nothing to combine")
    f = max if how == "max" else min
    lo, hi = f(e.interval[0] for e in ests), f(e.interval[1] for e in ests)
    val = f(e.value for e in ests)
    arg = [e.value for e in ests].index(val)
    return Estimate(val, (lo, hi), min(e.n for e in ests),
                    f"{how} over {len(ests)} {what or 'parameters'} (Bonferroni-simultaneous {ests[0].method})",
                    level, ests[arg].sd, {"arg": arg})


def absolute(e: Estimate) -> Estimate:
    """|theta| from an interval for theta (for 'within a margin' claims)."""
    if not e.defined:
        return e
    lo, hi = e.interval
    iv = (lo, hi) if lo >= 0 else (-hi, -lo) if hi <= 0 else (0.0, max(-lo, hi))
    return replace(e, value=abs(e.value), interval=iv, method=f"|{e.method}|")


# ------------------------------------------------------------------------------ continuous data


def _finite(x) -> np.ndarray:
    x = np.asarray(x, float).ravel()
    return x[np.isfinite(x)]


def mean(x, level: float = LEVEL) -> Estimate:
    """Mean with Student's t interval (n >= 2)."""
    x = _finite(x)
    if len(x) < 2:
        return undefined("mean (t interval)", len(x), level, why=f"{len(x)} value(s); a t interval needs 2")
    sd = float(x.std(ddof=1))
    if sd == 0:
        return Estimate(float(x.mean()), (float(x[0]), float(x[0])), len(x), "mean (t interval)", level, 0.0)
    ci = st.ttest_1samp(x, 0.0).confidence_interval(confidence_level=level)
    return Estimate(float(x.mean()), (float(ci.low), float(ci.high)), len(x), "mean (t interval)", level, sd)


def mean_difference(a, b, level: float = LEVEL) -> Estimate:
    """mean(a) - mean(b) of two independent samples: Welch's t interval (n >= 2 each)."""
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return undefined("difference of means (Welch t)", min(len(a), len(b)), level,
                         why=f"{len(a)} and {len(b)} values; Welch needs 2 per group", n_a=len(a), n_b=len(b))
    d = float(a.mean() - b.mean())
    sd = math.sqrt(a.var(ddof=1) + b.var(ddof=1))
    parts = {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "n_a": len(a), "n_b": len(b)}
    if sd == 0:
        return Estimate(d, (d, d), min(len(a), len(b)), "difference of means (Welch t)", level, 0.0, parts)
    ci = st.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=level)
    return Estimate(d, (float(ci.low), float(ci.high)), min(len(a), len(b)), "difference of means (Welch t)",
                    level, sd, parts)


def bca(samples: tuple, statistic, level: float = LEVEL, paired: bool = False, n_resamples: int = 1999,
        seed: int = 0, what: str = "statistic", min_n: int = 10) -> Estimate:
    """BCa bootstrap interval (``scipy.stats.bootstrap``) of a SMOOTH statistic of one or more
    samples (a mean, a ratio of means); `statistic(*samples, axis)` must be vectorized. Never used
    for a maximum or a minimum. Samples smaller than `min_n` get no interval (BCa undercovers)."""
    samples = tuple(np.asarray(s, float) for s in samples)
    n = min(len(s) for s in samples)
    if n < min_n:
        return undefined(f"{what} (BCa bootstrap)", n, level, why=f"{n} units; BCa needs >= {min_n}")
    value = float(statistic(*samples, axis=-1))
    res = st.bootstrap(samples, statistic, paired=paired, vectorized=True, n_resamples=n_resamples,
                       confidence_level=level, method="BCa", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return undefined(f"{what} (BCa bootstrap)", n, level, why="degenerate bootstrap distribution")
    return Estimate(value, (lo, hi), n, f"{what} (BCa bootstrap, {n_resamples} resamples)", level,
                    float(res.standard_error) * math.sqrt(n))


def log_ratio_of_means(x, y, level: float = LEVEL, method: str = "bca", base: float = math.e,
                       seed: int = 0) -> Estimate:
    """log(mean(x) / mean(y)) for paired positive data (one (x, y) per unit): BCa bootstrap, or
    "delta": the delta-method normal interval (closed form; for large samples and for the extreme
    per-parameter levels of simultaneous intervals, where a bootstrap's tails are too thin)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    what = f"log{'' if base == math.e else f'{base:g}'} ratio of means"
    if len(x) < 2 or x.mean() <= 0 or y.mean() <= 0:
        return undefined(f"{what} ({method})", len(x), level, why="fewer than 2 units or a mean that is not positive")
    lb = math.log(base)
    if method == "bca":
        def stat(a, b, axis=-1):
            with np.errstate(divide="ignore", invalid="ignore"):
                return (np.log(np.mean(a, axis=axis)) - np.log(np.mean(b, axis=axis))) / lb
        return bca((x, y), stat, level, paired=True, seed=seed, what=what)
    n, mx, my = len(x), x.mean(), y.mean()
    c = np.cov(x, y, ddof=1)
    sd = math.sqrt(max(c[0, 0] / mx ** 2 + c[1, 1] / my ** 2 - 2 * c[0, 1] / (mx * my), 0.0)) / lb
    v = (math.log(mx) - math.log(my)) / lb
    h = _z(level) * sd / math.sqrt(n)
    return Estimate(v, (v - h, v + h), n, f"{what} (delta method)", level, sd)


def quantile(x, p: float, level: float = LEVEL) -> Estimate:
    """The p-quantile with its distribution-free order-statistic interval (``quantile_test``).
    For data right-censored at c pass min(x, c): order statistics commute with the censoring,
    so the interval is valid for the uncensored quantile wherever it lies below c."""
    x = _finite(x)
    if len(x) == 0:
        return undefined(f"{p:g}-quantile (order statistics)", 0, level)
    ranks = _quantile_ranks(len(x), float(p), float(level))
    method = f"{p:g}-quantile (order-statistic interval)"
    if ranks is None:
        return undefined(method, len(x), level, why=f"{len(x)} values: no pair of order statistics covers "
                         f"the {p:g}-quantile with probability {level:g}")
    xs = np.sort(x)
    return Estimate(float(np.quantile(x, p, method="inverted_cdf")), (float(xs[ranks[0]]), float(xs[ranks[1]])),
                    len(x), method, level)


@lru_cache(maxsize=4096)
def _quantile_ranks(n: int, p: float, level: float):
    """Ranks (0-based) of the order statistics bounding the p-quantile: they depend only on n, p
    and the level, so ``quantile_test`` runs once on the ranks themselves."""
    ci = st.quantile_test(np.arange(n, dtype=float), q=0.0, p=p).confidence_interval(confidence_level=level)
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        return None
    return int(ci.low), int(ci.high)


def ks_counts(ca, cb, level: float = LEVEL) -> Estimate:
    """Kolmogorov-Smirnov distance sup|F_a - F_b| of two samples given as counts on a common
    sorted support (exact histograms of the accuracies of random draws), with the DKW interval:
    each empirical CDF lies within eps = sqrt(log(4 / (1 - level)) / (2 n)) of its truth with
    probability >= 1 - (1 - level) / 2 (Massart's constant; valid for discrete data)."""
    ca, cb = np.asarray(ca, float), np.asarray(cb, float)
    na, nb = ca.sum(), cb.sum()
    if na == 0 or nb == 0:
        return undefined("KS distance (DKW band)", int(min(na, nb)), level)
    d = float(np.max(np.abs(np.cumsum(ca) / na - np.cumsum(cb) / nb)))
    a2 = (1 - level) / 2
    eps = math.sqrt(math.log(2 / a2) / (2 * na)) + math.sqrt(math.log(2 / a2) / (2 * nb))
    return Estimate(d, (max(0.0, d - eps), min(1.0, d + eps)), int(min(na, nb)), "KS distance (DKW band)",
                    level, None, {"eps": eps})


def ks_samples(a, b, level: float = LEVEL) -> Estimate:
    """KS distance of two raw samples (``ks_2samp``) with the same DKW interval; the KS p-value
    is in ``parts``."""
    a, b = _finite(a), _finite(b)
    if len(a) == 0 or len(b) == 0:
        return undefined("KS distance (DKW band)", 0, level)
    grid = np.unique(np.concatenate([a, b]))
    ca = np.bincount(np.searchsorted(grid, a), minlength=len(grid))
    cb = np.bincount(np.searchsorted(grid, b), minlength=len(grid))
    e = ks_counts(ca, cb, level)
    return replace(e, parts={**e.parts, "ks_2samp_pvalue": float(st.ks_2samp(a, b).pvalue)})


def ks_distance_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """``scipy.stats.ks_2samp(a, b).statistic`` of two already SORTED samples, without its two
    sorts (the gradient distributions hold millions of values): sup|F_a - F_b| is reached at a
    sample point, and F_a, F_b at the points of either sample are searchsorted ranks (sorted
    queries; tests check it equals ks_2samp, ties included)."""
    a, b = np.asarray(a), np.asarray(b)
    d = 0.0
    for x in (a, b):
        fa = np.searchsorted(a, x, side="right") / len(a)
        fb = np.searchsorted(b, x, side="right") / len(b)
        d = max(d, float(np.max(np.abs(fa - fb))))
    return d


def histogram_sorted(sorted_x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(sorted_x, bins=edges)[0]`` of an already SORTED sample by rank lookups
    (np.histogram sorts every 65536-value block again for array edges): bins are half-open,
    the last one closed, values outside [edges[0], edges[-1]] are not counted."""
    idx = np.searchsorted(sorted_x, edges, side="left")
    idx[-1] = np.searchsorted(sorted_x, edges[-1], side="right")
    return np.diff(idx)


def mean_and_se(x: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and its standard error (``x.std(0, ddof=1) / sqrt(n)``; zeros for
    n = 1) in blocks of rows: ``x.std`` makes two temporaries of x's size, ~1 s for the
    discrepancy's 260 MB of per-draw distances on this kind of VM (first touch of fresh pages),
    the blocked sum of squared deviations ~0.2 s (tests check it equals NumPy's)."""
    x = np.asarray(x)
    n = len(x)
    m = x.mean(axis=0)
    if n < 2:
        return m, np.zeros_like(m)
    ss = np.zeros_like(m)
    for a in range(0, n, block):
        d = x[a:a + block] - m
        ss += np.einsum("i...,i...->...", d, d)
    return m, np.sqrt(ss / (n - 1)) / np.sqrt(n)


def censored(times, limit: float) -> dict:
    """Kaplan-Meier summary of times right-censored at `limit` (a value >= limit: never
    happened within the limit): the fraction censored and the KM median (None if above limit)."""
    t = _finite(times)
    if len(t) == 0:
        return {"n": 0}
    cd = st.CensoredData(uncensored=t[t < limit], right=np.minimum(t[t >= limit], limit))
    sf = st.ecdf(cd).sf
    below = sf.quantiles[sf.probabilities <= 0.5]
    return {"n": int(len(t)), "censored": int((t >= limit).sum()),
            "km_median": float(below[0]) if len(below) else None}


def logrank_pvalue(a, b, limit: float) -> float | None:
    """Log-rank test of two samples of times right-censored at `limit` (None if undefined)."""
    a, b = _finite(a), _finite(b)
    if len(a) == 0 or len(b) == 0 or ((a >= limit).all() and (b >= limit).all()):
        return None
    cd = [st.CensoredData(uncensored=x[x < limit], right=np.minimum(x[x >= limit], limit)) for x in (a, b)]
    return float(st.logrank(*cd).pvalue)


# ------------------------------------------------------------------------------ sample sizes


def _zb(power: float) -> float:
    return float(st.norm.ppf(power))


def n_normal(sd: float, delta: float, level: float = LEVEL, power: float = 0.8, groups: int = 1) -> int:
    """Units (per group) for an interval of a statistic with per-unit sd `sd` to exclude a
    boundary `delta` away from the truth with probability `power`: ((z + z_b) sd / delta)^2."""
    if not (delta > 0) or sd is None or not np.isfinite(sd):
        return -1
    n = ((_z(level) + _zb(power)) * sd / delta) ** 2
    return max(2, int(math.ceil(n)))


def n_proportion(p0: float, p1: float, level: float = LEVEL, power: float = 0.8, n_max: int = 20000) -> int:
    """Smallest n at which the exact (Clopper-Pearson) interval of a proportion whose truth is p1
    excludes p0 with probability >= power (exact binomial sums). p1 > p0: the lower bound must
    exceed p0; p1 < p0: the upper bound must fall below p0."""
    if p1 == p0:
        return -1
    for n in _grid(n_max):
        if proportion_power(p0, p1, n, level) >= power:
            return _refine(n, lambda m: proportion_power(p0, p1, m, level) >= power)
    return n_max


def proportion_power(p0: float, p1: float, n: int, level: float = LEVEL) -> float:
    """P(the exact interval of k/n excludes p0 on p1's side) when k ~ Binomial(n, p1)."""
    a2 = (1 - level) / 2
    k = np.arange(n + 1)
    if p1 > p0:     # the lower CP bound of k/n, beta.ppf(a2, k, n - k + 1), rises with k
        ok = k[(k > 0) & (st.beta.ppf(a2, np.maximum(k, 1), n - k + 1) > p0)]
        return float(st.binom.sf(ok.min() - 1, n, p1)) if len(ok) else 0.0
    ok = k[(k < n) & (st.beta.ppf(1 - a2, k + 1, np.maximum(n - k, 1)) < p0)]
    return float(st.binom.cdf(ok.max(), n, p1)) if len(ok) else 0.0


def _grid(n_max: int):
    n = 1
    while n < n_max:
        yield n
        n = n + 1 if n < 20 else int(n * 1.1) + 1


def _refine(n_hi: int, ok) -> int:
    """The smallest m <= n_hi with ok(m), scanning down from n_hi (power is nearly monotone)."""
    m = n_hi
    while m > 1 and ok(m - 1):
        m -= 1
    return m


def n_two_proportions(p_base: float, delta: float, level: float = LEVEL, power: float = 0.8) -> int:
    """Units per group for a difference-of-proportions claim: at truth p_base + delta vs p_base the
    interval excludes 0 with probability `power`, and at no difference it excludes delta (normal
    approximation of the Newcombe interval, the larger variance of the two cases)."""
    p1 = min(max(p_base + delta, 0.0), 1.0)
    sd = math.sqrt(max(p1 * (1 - p1) + p_base * (1 - p_base), 2 * p_base * (1 - p_base), 1e-4))
    return n_normal(sd, delta, level, power)


def n_existence(rate: float, level: float = LEVEL, power: float = 0.8) -> int:
    """Units for an existence claim ("k >= 1 of n reach the level", fails when the exact upper
    bound of k/n falls below `rate`): n such that a truth of `rate` gives k >= 1 with probability
    `power`, and k = 0 gives an upper bound below `rate`."""
    see = math.log(1 - power) / math.log(1 - rate)
    exclude = math.log((1 - level) / 2) / math.log(1 - rate)
    return int(math.ceil(max(see, exclude)))


def n_to_decide(e: Estimate, threshold: float, fails_at: float, direction: str,
                power: float = 0.8) -> int | None:
    """From a finished estimate: the number of units at which an interval of the same per-unit
    spread (width ~ 1/sqrt(n)), centred on the same value, excludes the decision boundary it is
    farther from (holds: the threshold; fails: the fails boundary) with probability `power`."""
    if not e.defined or e.n < 1:
        return None
    gap = (max(e.value - threshold, fails_at - e.value) if direction == ">"
           else max(threshold - e.value, e.value - fails_at))
    lo, hi = e.interval
    sd = e.sd if e.sd is not None and e.sd > 0 else (hi - lo) / (2 * _z(e.level)) * math.sqrt(e.n)
    if not gap > 0 or not sd > 0:
        return None
    return max(e.n + 1, n_normal(sd, gap, e.level, power))


# ------------------------------------------------------------------------------ sequential looks


def look_level(level: float, max_looks: int) -> float:
    """Confidence level of each look of a design with at most `max_looks` looks (Bonferroni alpha
    spending: alpha / max_looks per look). Whatever the data do between looks, the probability
    that ANY look decides wrongly is at most 1 - level. One look: `level` itself."""
    return bonferroni(level, max_looks)


def round_sizes(first: int, max_rounds: int, growth: float = 2.0) -> list[int]:
    """Units added in each round of a sequential design, fixed in advance (data-independent, as
    the alpha spending requires): round 1 is the plain run's `first` units, and every later
    round multiplies the total by `growth`."""
    total, out = first, [first]
    for _ in range(max_rounds - 1):
        new = int(math.ceil(total * (growth - 1)))
        out.append(new)
        total += new
    return out


def mean_from_counts(values, counts, level: float = LEVEL) -> Estimate:
    """Mean of a sample given as a histogram (values with counts), with Student's t interval."""
    v, c = np.asarray(values, float), np.asarray(counts, float)
    n = float(c.sum())
    if n < 2:
        return undefined("mean of a histogram (t interval)", int(n), level)
    m = float((v * c).sum() / n)
    sd = math.sqrt(float(((v - m) ** 2 * c).sum()) / (n - 1))
    h = float(st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(m, (m - h, m + h), int(n), "mean of a histogram (t interval)", level, sd)


def combine(terms: list[tuple[float, Estimate]], level: float, what: str) -> Estimate:
    """A linear combination sum(w * theta) of parameters whose intervals were computed at
    ``bonferroni(level, len(terms))``: the interval adds the bounds (valid whenever all cover)."""
    if any(not e.defined for _, e in terms):
        return undefined(what, 0, level, why="; ".join(e.parts.get("undefined", "") for _, e in terms
                                                      if not e.defined))
    val = sum(w * e.value for w, e in terms)
    lo = sum(w * (e.interval[0] if w > 0 else e.interval[1]) for w, e in terms)
    hi = sum(w * (e.interval[1] if w > 0 else e.interval[0]) for w, e in terms)
    sd = math.sqrt(sum((w * (e.sd or 0.0)) ** 2 for w, e in terms))
    return Estimate(val, (lo, hi), min(e.n for _, e in terms), f"{what} (simultaneous intervals combined)",
                    level, sd or None)
