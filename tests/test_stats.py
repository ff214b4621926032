"""The statistics are honest: simulations with a known truth.

For every statistic type of :mod:`rnnlab.analysis.stats`, nominal 95% intervals must cover the
truth in >= 93% of the replicates; a claim whose truth is at the threshold (no effect) must come
out wrongly decided at most 5% of the time, also when a sequential run looks after every round;
the power calculation must deliver its power. Negative controls (an anti-conservative interval,
naive peeking) must FAIL the same checks, so the checks can fail. Replicate counts put the Monte
Carlo standard error at 0.5-0.7 points for coverage (1000-2000 replicates; 1.3 points for the
BCa bootstrap, 300 replicates), so an interval that covers 90% fails the 93% bar.
"""
import numpy as np
import pytest
from scipy import stats as st

from rnnlab.analysis import stats as S
from rnnlab.analysis.claims import Declaration

MIN_COVER = 0.93


def _coverage(draw, estimate, truth, reps, seed=0):
    rng = np.random.default_rng(seed)
    hit = 0
    for _ in range(reps):
        e = estimate(*draw(rng))
        assert e.defined, e
        hit += e.interval[0] <= truth <= e.interval[1]
    return hit / reps


# ----------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("p,n", [(0.05, 30), (0.3, 20), (0.5, 60), (0.97, 40)])
def test_exact_proportion_covers(p, n):
    cache = {}

    def est(k):
        if k not in cache:
            cache[k] = S.proportion(k, n)
        return cache[k]
    assert _coverage(lambda r: (int(r.binomial(n, p)),), est, p, 2000) >= MIN_COVER


@pytest.mark.parametrize("p1,p2,n", [(0.5, 0.2, 30), (0.3, 0.1, 30), (0.05, 0.01, 125), (0.9, 0.9, 20)])
def test_newcombe_difference_covers(p1, p2, n):
    cache = {}

    def est(k1, k2):
        if (k1, k2) not in cache:
            cache[k1, k2] = S.proportion_difference(k1, n, k2, n)
        return cache[k1, k2]
    cov = _coverage(lambda r: (int(r.binomial(n, p1)), int(r.binomial(n, p2))), est, p1 - p2, 2000)
    assert cov >= MIN_COVER


def test_pooled_strata_difference_covers():
    """Counts pooled over equal-sized strata with different rates (model sizes)."""
    pg, pv, n = np.array([0.9, 0.7, 0.5, 0.3]), np.array([0.5, 0.2, 0.1, 0.0]), 8
    est = lambda kg, kv: S.proportion_difference(kg, 4 * n, kv, 4 * n)  # noqa: E731
    draw = lambda r: (int(r.binomial(n, pg).sum()), int(r.binomial(n, pv).sum()))  # noqa: E731
    assert _coverage(draw, est, float(pg.mean() - pv.mean()), 2000) >= MIN_COVER


@pytest.mark.parametrize("law,n", [("normal", 5), ("exponential", 20), ("beta", 10)])
def test_welch_difference_covers(law, n):
    def draw(r):
        if law == "normal":
            return r.normal(1.0, 1.0, n), r.normal(0.0, 3.0, n + 3)
        if law == "exponential":
            return r.exponential(2.0, n), r.exponential(1.0, n)
        return r.beta(8, 2, n), r.beta(2, 2, n)
    truth = {"normal": 1.0, "exponential": 1.0, "beta": 0.8 - 0.5}[law]
    assert _coverage(draw, S.mean_difference, truth, 1000) >= MIN_COVER


def test_bca_log_ratio_of_means_covers():
    n, sig = 200, 1.0
    truth = np.log(np.exp(0.5 + sig ** 2 / 2) / 1.0)

    def draw(r):
        z = r.normal(size=n)
        return np.exp(0.5 + sig * z), r.exponential(1.0, n)     # paired units, independent here
    est = lambda x, y: S.log_ratio_of_means(x, y)  # noqa: E731
    assert _coverage(draw, est, truth, 300) >= MIN_COVER


def test_delta_log_ratio_covers():
    """The delta-method log ratio of paired means (discrepancy's retained fractions), skewed data."""
    n = 400
    truth = np.log10(2.0 / 1.0)

    def draw(r):
        u = r.exponential(1.0, n)
        return 2.0 * u * r.lognormal(0, 0.5, n) / np.exp(0.125), u
    est = lambda x, y: S.log_ratio_of_means(x, y, method="delta", base=10)  # noqa: E731
    assert _coverage(draw, est, truth, 2000) >= MIN_COVER


def test_order_statistic_quantile_covers():
    n = 30
    est = lambda x: S.quantile(x, 0.5)  # noqa: E731
    assert _coverage(lambda r: (r.exponential(1.0, n),), est, np.log(2), 2000) >= MIN_COVER
    # censoring at c commutes with order statistics: still covers a median below c
    est_c = lambda x: S.quantile(np.minimum(x, 2.0), 0.5)  # noqa: E731
    assert _coverage(lambda r: (r.exponential(1.0, n),), est_c, np.log(2), 1000) >= MIN_COVER


def test_dkw_ks_distance_covers():
    support = np.arange(21)
    pa = st.binom.pmf(support, 20, 0.5)
    pb = st.binom.pmf(support, 20, 0.55)
    truth = float(np.max(np.abs(np.cumsum(pa) - np.cumsum(pb))))
    draw = lambda r: (r.multinomial(400, pa), r.multinomial(300, pb))  # noqa: E731
    assert _coverage(draw, S.ks_counts, truth, 1000) >= MIN_COVER


def test_simultaneous_min_covers():
    """min over 3 means from Bonferroni-simultaneous t intervals (no bootstrap of a minimum)."""
    mus = np.array([0.3, 0.32, 0.6])

    def est(*xs):
        lv = S.bonferroni(0.95, len(xs))
        return S.extreme([S.mean(x, lv) for x in xs], "min", 0.95)
    draw = lambda r: tuple(r.normal(m, 0.2, 6) for m in mus)  # noqa: E731
    assert _coverage(draw, est, mus.min(), 1000) >= MIN_COVER


# ----------------------------------------------------------------------------- negative control


def _wald(k, n):
    p = k / n
    h = 1.96 * np.sqrt(p * (1 - p) / n)
    return S.Estimate(p, (p - h, p + h), n, "Wald (anti-conservative)")


def test_coverage_check_catches_an_anticonservative_interval():
    """The Wald interval at p = 0.05, n = 30 covers ~78%: the check must reject it, and the same
    check with a 90% interval passed off as 95% must reject that too."""
    assert _coverage(lambda r: (int(r.binomial(30, 0.05)), 30), _wald, 0.05, 2000) < MIN_COVER
    narrow = lambda k: S.proportion(k, 60, level=0.90)  # noqa: E731
    assert _coverage(lambda r: (int(r.binomial(60, 0.4)),), narrow, 0.4, 2000) < MIN_COVER


# ----------------------------------------------------------------------------- wrong decisions


DIFF = Declaration("d", "t", "s", 0.0, ">", 0.3, "difference", planning={"p_base": 0.2})
PROP = Declaration("p", "t", "s", 0.5, ">", 0.3, "proportion", effect=False)
EXIST = Declaration("e", "t", "s", 0.0, ">", 1 / 30, "existence")
MEAN = Declaration("m", "t", "s", 0.0, ">", 0.5, "normal", planning={"sd": np.sqrt(2)})


def _rate(decl, draw, estimate, reps, verdict, seed=1):
    rng = np.random.default_rng(seed)
    return np.mean([decl.verdict(estimate(*draw(rng)).interval) == verdict for _ in range(reps)])


def test_no_effect_is_rarely_decided_wrongly():
    n = 40
    est = lambda a, b: S.proportion_difference(a, n, b, n)  # noqa: E731
    null = lambda r: (int(r.binomial(n, 0.2)), int(r.binomial(n, 0.2)))  # noqa: E731
    assert _rate(DIFF, null, est, 3000, "holds") <= 0.05
    at_min = lambda r: (int(r.binomial(n, 0.5)), int(r.binomial(n, 0.2)))  # noqa: E731
    assert _rate(DIFF, at_min, est, 3000, "fails") <= 0.05
    # a bound at its threshold: neither verdict more than 5% of the time
    prop = lambda k: S.proportion(k, 50)  # noqa: E731
    bound = lambda r: (int(r.binomial(50, 0.5)),)  # noqa: E731
    assert _rate(PROP, bound, prop, 3000, "holds") + _rate(PROP, bound, prop, 3000, "fails") <= 0.05
    # existence: with no success possible it never holds
    assert _rate(EXIST, lambda r: (0,), lambda k: S.proportion(k, 30), 10, "holds") == 0.0


@pytest.mark.parametrize("decl,draw,est", [
    (DIFF, lambda r, n: (int(r.binomial(n, 0.5)), int(r.binomial(n, 0.2))),
     lambda n: (lambda a, b: S.proportion_difference(a, n, b, n))),
    (PROP, lambda r, n: (int(r.binomial(n, 0.8)),), lambda n: (lambda k: S.proportion(k, n))),
    (MEAN, lambda r, n: (r.normal(0.5, 1, n), r.normal(0, 1, n)), lambda n: S.mean_difference),
])
def test_required_n_gives_the_declared_power(decl, draw, est):
    """At the minimal effect, n = required_n decides the claim (holds) with probability ~ power."""
    n = decl.required_n()
    assert 2 <= n < 500
    got = _rate(decl, lambda r: draw(r, n), est(n), 1000, "holds")
    assert got >= decl.power - 0.05, (n, got)


def test_existence_n():
    n = EXIST.required_n()
    assert n == 109          # 1 - (29/30)^n >= 0.8 needs 48; k = 0 upper bound < 1/30 needs 109
    assert S.proportion(0, n).interval[1] < 1 / 30 < S.proportion(0, n - 1).interval[1]


# ----------------------------------------------------------------------------- sequential looks


def _sequential_wrong(decl, p1, p2, first, max_rounds, level_of, wrong, reps=2000, seed=3):
    """Rounds of new units (sizes fixed in advance), a look after every round, stop when decided."""
    rng = np.random.default_rng(seed)
    sizes = S.round_sizes(first, max_rounds)
    bad = 0
    for _ in range(reps):
        k1 = k2 = n = 0
        for j, m in enumerate(sizes):
            k1 += rng.binomial(m, p1)
            k2 += rng.binomial(m, p2)
            n += m
            v = decl.verdict(S.proportion_difference(k1, n, k2, n, level_of(j, len(sizes))).interval)
            if v != "inconclusive":
                bad += v in wrong
                break
    return bad / reps


def test_peeking_after_every_round_keeps_the_error_rate():
    spent = lambda j, k: S.look_level(0.95, k)  # noqa: E731
    bound = Declaration("b", "t", "s", 0.0, ">", 0.3, "difference", effect=False)
    # no effect: a wrong "holds" (effect claim), a wrong "holds" or "fails" (bound at its threshold)
    assert _sequential_wrong(DIFF, 0.2, 0.2, 10, 4, spent, {"holds"}) <= 0.05
    assert _sequential_wrong(bound, 0.3, 0.3, 10, 4, spent, {"holds", "fails"}) <= 0.05
    # the negative control: the same rounds analysed naively at 95% every time exceed 5%
    naive = lambda j, k: 0.95  # noqa: E731
    assert _sequential_wrong(bound, 0.3, 0.3, 4, 10, naive, {"holds", "fails"}) > 0.05


def test_round_sizes_are_fixed_in_advance():
    assert S.round_sizes(30, 4) == [30, 30, 60, 120]
    assert S.look_level(0.95, 1) == 0.95 and S.look_level(0.95, 4) == pytest.approx(0.9875)


@pytest.mark.parametrize("ties", [False, True])
def test_sorted_sample_shortcuts_equal_scipy_and_numpy(ties):
    """ks_distance_sorted is ks_2samp's statistic; histogram_sorted is np.histogram (last bin
    closed, out-of-range values dropped), on sorted samples, ties included."""
    from scipy.stats import ks_2samp
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.lognormal(0, 1, rng.integers(1, 400))
        b = rng.lognormal(0.3, 1.2, rng.integers(1, 400))
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        a, b = np.sort(a), np.sort(b)
        assert S.ks_distance_sorted(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-15)
        for edges in (np.linspace(0, 4, 41), np.linspace(0, 0.5, 9), np.array([0.0, 1.0, 1.0 + 1e-12, 3.0])):
            np.testing.assert_array_equal(S.histogram_sorted(a, edges), np.histogram(a, bins=edges)[0])
        np.testing.assert_array_equal(S.histogram_sorted(np.array([0.0, 4.0, 4.0]), np.linspace(0, 4, 5)),
                                      [1, 0, 0, 2])


def test_blocked_mean_and_se_equal_numpy():
    """mean_and_se (blocks of rows) is x.mean(0) and x.std(0, ddof=1) / sqrt(n), for a block
    size that does not divide n, one row, and extra axes."""
    rng = np.random.default_rng(5)
    x = rng.standard_t(3, (1001, 4, 3)) * 10 + 7
    m, se = S.mean_and_se(x, block=64)
    np.testing.assert_allclose(m, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(se, x.std(0, ddof=1) / np.sqrt(len(x)), rtol=1e-12)
    m1, se1 = S.mean_and_se(x[:1])
    np.testing.assert_array_equal(m1, x[0])
    np.testing.assert_array_equal(se1, np.zeros((4, 3)))
