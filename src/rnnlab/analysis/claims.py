"""Claims: a paper's conclusion turned into a statistic the run computes and checks.

A claim is declared once (:class:`Declaration`): its statistic, the threshold and direction the
paper's conclusion sets, the smallest effect it must resolve, alpha and power, and how its
sample size follows (``required_n``). A run turns a declaration and an
:class:`~rnnlab.analysis.stats.Estimate` into a :class:`Claim` by ONE verdict rule, the same for
every claim (:meth:`Declaration.verdict`):

* ``holds`` when the whole interval lies on the claimed side of the threshold;
* ``fails`` when the interval excludes the smallest effect the claim asserts (an *effect*
  claim, e.g. "far more good inits": the interval lies below threshold + min_effect), or lies on
  the other side of the threshold (a *bound* claim, e.g. "KS distance < 0.1");
* ``inconclusive`` otherwise; the claim's details then say why (the interval against both
  boundaries) and how many units the power estimate says would decide it.

With a valid (1 - alpha) interval, a claim whose truth is at the threshold (no effect) holds
with probability <= alpha / 2, and one whose truth is the minimal effect fails with probability
<= alpha / 2; ``tests/test_stats.py`` checks both by simulation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from . import stats

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


#: how a declaration's sample size is computed (see Declaration.required_n)
DESIGNS = ("proportion", "difference", "existence", "normal", "dkw", "exact")


@dataclass(frozen=True)
class Declaration:
    """One claim of an experiment, declared before any data.

    id, text, statistic: format templates (filled with the claim's fields, e.g. the task).
    threshold, direction (">" or "<"): the claimed side. min_effect: the smallest effect the
    claim must resolve (> 0). effect: True for an effect claim (it fails when min_effect is
    excluded), False for a bound (it fails on the other side of the threshold). design and
    planning: how ``required_n`` is computed (planning values: ``p_base`` for a difference of
    proportions, ``sd`` (per-unit) for a normal statistic, ``m`` simultaneous parameters (a max or
    min over m intervals, Bonferroni) - planning values are stated in the module's CHOICES). units: what n counts. paper, figure: the paper's sentence the claim tests and the
    figure that shows the evidence."""
    id: str
    text: str
    statistic: str
    threshold: float
    direction: str
    min_effect: float
    design: str
    effect: bool = True
    planning: dict = field(default_factory=dict)
    units: str = "models"
    alpha: float = 0.05
    power: float = 0.8
    paper: str = ""
    figure: str = ""

    def __post_init__(self):
        if self.direction not in (">", "<"):
            raise ValueError(f"direction must be '>' or '<', got {self.direction!r}")
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {self.design!r}")
        if not self.min_effect > 0:
            raise ValueError(f"min_effect must be > 0, got {self.min_effect!r}")

    # ------------------------------------------------------------------ the decision

    @property
    def sign(self) -> int:
        return 1 if self.direction == ">" else -1

    @property
    def fails_at(self) -> float:
        """The boundary the interval must exclude for the claim to fail."""
        return self.threshold + self.sign * self.min_effect if self.effect else self.threshold

    def level(self, config: dict | None = None) -> float:
        """The confidence level of this run's intervals: 1 - alpha, split over the looks of a
        sequential run (``max_rounds`` in the config, 1 for a plain run)."""
        return stats.look_level(1 - self.alpha, int((config or {}).get("max_rounds", 1)))

    def verdict(self, interval) -> str:
        if interval is None:
            return "inconclusive"
        lo, hi = interval
        if self.direction == ">":
            return "holds" if lo > self.threshold else "fails" if hi <= self.fails_at else "inconclusive"
        return "holds" if hi < self.threshold else "fails" if lo >= self.fails_at else "inconclusive"

    # ------------------------------------------------------------------ sample sizes

    def required_n(self, level: float | None = None, **planning) -> int:
        """Units (per group for a two-group statistic) at which the claim is decided with
        probability >= power at its two design points: the truth at the minimal effect (it must
        hold) and the truth at the threshold (effect claims) or min_effect beyond it on the other
        side (bounds) (it must fail)."""
        level = 1 - self.alpha if level is None else level
        p = {**self.planning, **planning}
        if "m" in p and self.design != "dkw":     # m simultaneous parameters share the error budget
            level = stats.bonferroni(level, int(p["m"]))
        t, d, s = self.threshold, self.min_effect, self.sign
        if self.design == "exact":
            return 1
        if self.design == "existence":
            return stats.n_existence(d, level, self.power)
        if self.design == "proportion":
            clip = lambda x: min(max(x, 0.0), 1.0)  # noqa: E731
            truth_fail = clip(t if self.effect else t - s * d)
            return max(stats.n_proportion(t, clip(t + s * d), level, self.power),
                       stats.n_proportion(self.fails_at, truth_fail, level, self.power))
        if self.design == "difference":
            return stats.n_two_proportions(float(p.get("p_base", 0.5 - d / 2)), d, level, self.power)
        if self.design == "dkw":      # two equal samples, m simultaneous distances: half-width <= d
            a2 = (1 - stats.bonferroni(level, int(p.get("m", 1)))) / 2
            return int(math.ceil(2 * math.log(2 / a2) / d ** 2))
        return stats.n_normal(float(p["sd"]), d, level, self.power)

    # ------------------------------------------------------------------ the claim

    def decide(self, est: stats.Estimate, fields: dict | None = None, details: dict | None = None,
               scale: tuple[str, float] | None = None) -> Claim:
        """The claim of this declaration from an estimate. `fields` fill the templates; `scale`
        = (config key, its value in this run) converts units into that key (e.g. inits) for the
        suggested and required sample sizes, at the run's own ratio of units per key."""
        f = dict(fields or {})
        verdict = self.verdict(est.interval if est.defined else None)
        d = dict(details or {})
        d.update({"threshold": self.threshold, "direction": self.direction, "fails_at": self.fails_at,
                  "min_effect": self.min_effect, "claim_kind": "effect" if self.effect else "bound",
                  "method": est.method, "level": est.level, "n": est.n, "units": self.units,
                  "required_n": self.required_n(est.level)})
        if est.parts:
            d["parts"] = {k: v for k, v in est.parts.items() if k != "undefined"}
        per = float(scale[1]) / est.n if scale is not None and est.n > 0 else None
        if per is not None:
            d["required_config"] = {scale[0]: int(math.ceil(d["required_n"] * per))}
        if verdict == "inconclusive":
            d["reason"] = self.reason(est)
            n = stats.n_to_decide(est, self.threshold, self.fails_at, self.direction, self.power)
            if self.design == "existence":       # k = 0: only n itself decides (exact, not ~1/sqrt(n))
                n = max(d["required_n"], est.n + 1)
            d["n_to_decide"] = n if n is not None else max(d["required_n"], est.n + 1)
            if per is not None:
                d["suggested_config"] = {scale[0]: int(math.ceil(d["n_to_decide"] * per))}
        if self.paper:
            d["paper"] = self.paper
        if self.figure:
            d["figure"] = self.figure.format(**f)
        return Claim(self.id.format(**f), self.text.format(**f), self.statistic.format(**f),
                     est.value if est.defined else None, est.interval if est.defined else None, verdict, d)

    def reason(self, est: stats.Estimate) -> str:
        if not est.defined:
            return f"no interval: {est.parts.get('undefined', 'the statistic is undefined')}"
        lo, hi = est.interval
        cmp_hold = f"lower bound {lo:.4g} <= threshold {self.threshold:g}" if self.direction == ">" else \
            f"upper bound {hi:.4g} >= threshold {self.threshold:g}"
        cmp_fail = f"upper bound {hi:.4g} > {self.fails_at:g}" if self.direction == ">" else \
            f"lower bound {lo:.4g} < {self.fails_at:g}"
        what = "the minimal effect" if self.effect else "the threshold"
        return (f"interval [{lo:.4g}, {hi:.4g}] at {100 * est.level:.4g}% straddles the decision: {cmp_hold} "
                f"(cannot hold) and {cmp_fail} = {what} (cannot fail)")


def threshold_claim(id: str, text: str, statistic: str, value: float, interval, threshold: float,
                    direction: str = ">", details: dict | None = None) -> Claim:
    """A bound claim from a value and an interval computed elsewhere (for plugins and simple
    checks): the same verdict rule as every declared claim (:meth:`Declaration.verdict`, a bound
    with min_effect unused). Without an interval the point value is the interval (an exact
    statistic, no sampling); a missing or NaN value is inconclusive."""
    decl = Declaration(id, text, statistic, float(threshold), direction, 1.0, "exact", effect=False)
    details = dict(details or {}, threshold=threshold, direction=direction)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Claim(id, text, statistic, value, interval, "inconclusive",
                     {**details, "reason": "no value: the statistic is undefined on this run"})
    iv = (float(value), float(value)) if interval is None else (float(interval[0]), float(interval[1]))
    verdict = decl.verdict(iv)
    if verdict == "inconclusive":
        details["reason"] = decl.reason(stats.Estimate(float(value), iv, 0, "given"))
    return Claim(id, text, statistic, float(value), None if interval is None else iv, verdict, details)
