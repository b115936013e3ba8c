"""Statistics for comparing algorithms: training runs are the unit, problems are nested inside them.

Pure functions on numpy arrays (no I/O, no scipy). A claim about algorithms is a claim about training
runs, and runs of one algorithm from different seeds differ, so every test and CI between algorithms
treats the run (seed) as the unit: each run is summarised by its avg@k on the evaluation set (the mean
over problems of the share of correct samples), and the run scores are compared (`seed_level_test`).
Also here: seeds needed for 80% power, rliable's IQM and probability of improvement with stratified-
bootstrap CIs, the problem-level sign-flip permutation test, and learning-speed summaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Ties in |mean| between the observed and a flipped sample must count as "as extreme"; sums of the same
# numbers in a different order can differ in the last bits.
_TIE_TOLERANCE = 1e-12


# ----------------------------------------------------------------------------------------------------
# Student's t distribution (the incomplete beta function by its continued fraction)


def _regularized_beta(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """I_x(a, b), elementwise, for a, b > 0 and 0 <= x <= 1.

    The continued fraction of the incomplete beta function (Abramowitz & Stegun 26.5.8), evaluated by
    the modified Lentz method; it converges fast for x < (a + 1) / (a + b + 2), and the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) covers the rest.
    """
    a, b, x = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, x)))
    swap = x > (a + 1.0) / (a + b + 2.0)
    a, b, x = np.where(swap, b, a), np.where(swap, a, b), np.where(swap, 1.0 - x, x)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    with np.errstate(divide="ignore"):
        log_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * np.log(x) + b * np.log1p(-x)
    tiny = 1e-300
    c = np.ones_like(x)
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
    fraction = d.copy()
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
            c = 1.0 + numerator / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            fraction = fraction * d * c
        if np.all(np.abs(d * c - 1.0) < 1e-15):
            break
    value = np.exp(log_front) * fraction / a
    value = np.where(x == 0.0, 0.0, value)
    return np.where(swap, 1.0 - value, value)


def t_two_sided_pvalue(t, df) -> np.ndarray:
    """P(|T| >= |t|) for Student's T with `df` degrees of freedom (df > 0, need not be an integer)."""
    t, df = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(df, dtype=np.float64))
    x = np.where(np.isinf(t), 0.0, df / (df + np.where(np.isinf(t), 0.0, t) ** 2))
    return _regularized_beta(df / 2.0, np.full_like(df, 0.5), x)


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t (0.5 < q < 1): Newton's method on the two-sided tail, kept inside a
    bracket that bisection shrinks whenever a Newton step would leave it."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"t_quantile needs 0.5 < q < 1, got {q}")
    target = 2.0 * (1.0 - q)  # two-sided tail beyond the quantile
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    low, high = 0.0, 1.0
    while float(t_two_sided_pvalue(high, df)) > target:
        low, high = high, high * 2.0
    t = 0.5 * (low + high)
    for _ in range(100):
        excess = float(t_two_sided_pvalue(t, df)) - target  # decreasing in t
        if excess > 0:
            low = t
        else:
            high = t
        density = math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = t + excess / (2.0 * density)
        t_next = step if low < step < high else 0.5 * (low + high)
        if abs(t_next - t) < 1e-13 * max(1.0, t):
            return t_next
        t = t_next
    return t


# ----------------------------------------------------------------------------------------------------
# Seed-level test of a difference between two algorithms


def paired_t(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, standard error, degrees of freedom) of per-seed paired differences [..., n], over the last
    axis; the standard error is NaN for n < 2 (no variance from one pair)."""
    d = np.asarray(differences, dtype=np.float64)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    if n < 2:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, se, np.full_like(mean, n - 1.0)


def welch_t(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean of a - mean of b, standard error, Welch-Satterthwaite degrees of freedom) of independent
    run scores a [..., n_a] and b [..., n_b]; NaN standard error when either has fewer than 2 runs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mean = a.mean(axis=-1) - b.mean(axis=-1)
    n_a, n_b = a.shape[-1], b.shape[-1]
    if min(n_a, n_b) < 2:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    va, vb = a.var(axis=-1, ddof=1) / n_a, b.var(axis=-1, ddof=1) / n_b
    se = np.sqrt(va + vb)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    # Both samples constant: no variance, and the df formula is 0/0; any df gives the same verdict.
    return mean, se, np.where(np.isfinite(df), df, n_a + n_b - 2.0)


def t_test_pvalue(mean, se, df) -> np.ndarray:
    """Two-sided p-value of mean / se; 1 when both are 0, 0 for a non-zero mean with no spread, NaN
    where the standard error is NaN (no test)."""
    mean, se, df = (np.asarray(v, dtype=np.float64) for v in (mean, se, df))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.where(mean == 0, 0.0, np.inf))
    p = t_two_sided_pvalue(np.abs(t), np.where(np.isnan(df), 1.0, df))
    return np.where(np.isnan(se), np.nan, p)


@dataclass(frozen=True)
class SeedTest:
    """A difference between two algorithms' run scores, tested with runs as the unit."""

    mean: float
    """Mean run score of A minus that of B (paired: the mean per-seed difference)."""
    design: str
    """"paired" (per-seed differences), "unpaired" (Welch), or "none" (one run on a side: no test)."""
    seeds_a: tuple[int, ...]
    seeds_b: tuple[int, ...]
    """The runs that entered (paired: the shared seeds, in the same order on both sides)."""
    ci: tuple[float, float] | None
    p_value: float | None
    df: float | None
    sd: float | None
    """Paired: SD of the per-seed differences; unpaired: pooled SD of the run scores. None with 1 run."""


def seed_level_test(scores_a: dict[int, float], scores_b: dict[int, float],
                    confidence: float = 0.95) -> SeedTest:
    """Compare two algorithms' run scores (seed -> score), runs as the unit.

    Paired t-test on the shared seeds when there are at least two; else Welch's t-test on all runs when
    each side has at least two; else no test (a mean difference only). CI: mean +- t_{df} x SE.

    Why a t-test on per-run scores (the "summary statistics" approach), not a bootstrap or a mixed model:
    - A run score averages over the problems and samples of one evaluation, so the run x problem
      interaction and the sampling noise are inside its run-to-run variance: for a balanced nested design
      the test on the cluster means equals the mixed-model F test (Murtaugh, "Simplicity and complexity
      in ecological data analysis", Ecology 2007). Problems are the fixed evaluation set: the question is
      whether a new training run of A scores higher than one of B on these problems.
    - With few seeds a bootstrap over seeds is miscalibrated: 3 seeds have 10 distinct resamples, and
      percentile intervals from so few are too narrow; Colas, Sigaud & Oudeyer ("A Hitchhiker's Guide to
      Statistical Comparisons of Reinforcement Learning Algorithms", 2019) measured bootstrap tests'
      false positive rates far above nominal at small n and found Welch's t-test closest to nominal. An
      exact sign-flip permutation over 3 paired seeds has 8 assignments, so its smallest two-sided p is
      2/8 = 0.25: calibrated, but it can never detect anything. The t-test is exact for normal run
      scores; a run score is a mean over problems and samples, so close to normal by the CLT.
    - Pairing: runs of A and B with the same seed start from the same base checkpoint and the same first
      rollout, so with at least two shared seeds the per-seed differences are tested (paired t-test,
      n - 1 df). Otherwise the runs are independent samples: Welch's t-test (Welch 1947,
      Welch-Satterthwaite df), as in Colas et al.
    - One run per algorithm: the run-to-run variance cannot be estimated, so no test or CI exists; the
      design is "none", and the report says how to add seeds.
    Calibration and power are checked by simulation in tests/test_seed_stats.py (A/A false-positive rate
    at 1, 3 and 8 seeds; power for a planted effect; the power formula against the simulation).
    """
    shared = sorted(set(scores_a) & set(scores_b))
    if len(shared) >= 2:
        d = np.array([scores_a[s] - scores_b[s] for s in shared])
        mean, se, df = paired_t(d)
        design, seeds_a, seeds_b, sd = "paired", tuple(shared), tuple(shared), float(d.std(ddof=1))
    else:
        seeds_a, seeds_b = tuple(sorted(scores_a)), tuple(sorted(scores_b))
        a = np.array([scores_a[s] for s in seeds_a])
        b = np.array([scores_b[s] for s in seeds_b])
        mean, se, df = welch_t(a, b)
        if np.isnan(se):
            return SeedTest(float(mean), "none", seeds_a, seeds_b, None, None, None, None)
        design = "unpaired"
        sd = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    p = float(t_test_pvalue(mean, se, df))
    half = t_quantile(0.5 + confidence / 2.0, float(df)) * float(se)
    return SeedTest(float(mean), design, seeds_a, seeds_b, (float(mean) - half, float(mean) + half), p,
                    float(df), sd)


def mean_ci_over_seeds(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """t-interval of the mean of per-run values (None with fewer than 2 runs)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    half = t_quantile(0.5 + confidence / 2.0, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


# ----------------------------------------------------------------------------------------------------
# Power and the number of seeds


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * (1.0 + erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))


def t_test_power(effect_size: float, n: int, *, paired: bool, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test at level alpha for a true standardized difference.

    paired: n pairs, effect_size = mean difference / SD of the differences (Cohen's d_z), df = n - 1,
    noncentrality d_z sqrt(n). Unpaired: n runs per algorithm, effect_size = difference / SD of a run
    score (Cohen's d, equal variances), df = 2n - 2, noncentrality d sqrt(n/2).
    The noncentral t tail P(|Z + lambda| > c S) with S = sqrt(chi2_df / df) is integrated over the chi
    density of sqrt(chi2_df) by Simpson's rule on 6001 points (error below 1e-8 against scipy's nct).
    """
    if n < 2:
        return float("nan")
    df = n - 1 if paired else 2 * n - 2
    noncentrality = abs(effect_size) * math.sqrt(n if paired else n / 2.0)
    critical = t_quantile(1.0 - alpha / 2.0, df)
    r = np.linspace(0.0, math.sqrt(df) + 12.0, 6001)  # sqrt(chi2_df); the tail past the grid is < 1e-30
    log_density = ((df - 1) * np.log(np.where(r > 0, r, 1.0)) - r**2 / 2.0
                   - (df / 2.0 - 1.0) * math.log(2.0) - math.lgamma(df / 2.0))
    density = np.where((r > 0) | (df == 1), np.exp(log_density), 0.0)
    s = critical * r / math.sqrt(df)
    tail = _normal_cdf(noncentrality - s) + _normal_cdf(-noncentrality - s)
    simpson = np.ones_like(r)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    return float((r[1] - r[0]) / 3.0 * np.sum(simpson * density * tail))


def seeds_for_power(difference: float, sd: float, *, paired: bool, power: float = 0.8, alpha: float = 0.05,
                    max_seeds: int = 1000) -> int | None:
    """Fewest seeds (paired: seeds shared by both algorithms; unpaired: runs per algorithm) for which the
    two-sided t-test at level alpha detects `difference` with the given power, when run scores (or
    per-seed differences) have standard deviation `sd`. None when no difference or above max_seeds.
    Power from the noncentral t (Cohen 1988, Ch. 2; `t_test_power`)."""
    if difference == 0 or not math.isfinite(difference):
        return None
    if not sd > 0:  # no spread at all: two seeds show the difference exactly
        return 2
    effect = abs(difference) / sd
    if t_test_power(effect, max_seeds, paired=paired, alpha=alpha) < power:
        return None
    low, high = 2, max_seeds  # power rises with n: the first n reaching it, by bisection
    if t_test_power(effect, low, paired=paired, alpha=alpha) >= power:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if t_test_power(effect, mid, paired=paired, alpha=alpha) >= power:
            high = mid
        else:
            low = mid
    return high


# ----------------------------------------------------------------------------------------------------
# rliable's aggregates (Agarwal et al. 2021) and the stratified bootstrap


def interquartile_mean(scores: np.ndarray) -> np.ndarray:
    """IQM of run x task scores [..., runs, tasks]: the 25% trimmed mean over all runs and tasks, with
    int(0.25 N) scores cut at each end as rliable's `aggregate_iqm` (scipy's trim_mean) does (Agarwal et
    al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021)."""
    s = np.asarray(scores, dtype=np.float64)
    flat = np.sort(s.reshape(*s.shape[:-2], -1), axis=-1)
    cut = int(0.25 * flat.shape[-1])
    return flat[..., cut:flat.shape[-1] - cut].mean(axis=-1)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of runs x [..., n_x, tasks] over runs y [..., n_y, tasks]: per task the Mann-Whitney U
    statistic over n_x n_y (a tie counts 1/2), averaged over tasks, as rliable defines it."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    greater = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    ties = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (greater + 0.5 * ties).mean(axis=-1)


def stratified_resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """[reps, runs, tasks] resamples of scores [runs, tasks]: within each task (stratum) runs are drawn
    with replacement, independently per task (rliable's StratifiedBootstrap)."""
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def _percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def iqm_with_ci(scores: np.ndarray, *, reps: int = 10_000, confidence: float = 0.95,
                seed: int = 0) -> tuple[float, tuple[float, float]]:
    """(IQM, its percentile stratified-bootstrap CI) of scores [runs, tasks]."""
    scores = np.asarray(scores, dtype=np.float64)
    resampled = stratified_resample(scores, reps, np.random.default_rng(seed))
    return float(interquartile_mean(scores)), _percentile_ci(interquartile_mean(resampled), confidence)


def improvement_with_ci(x: np.ndarray, y: np.ndarray, *, reps: int = 10_000, confidence: float = 0.95,
                        seed: int = 0) -> tuple[float, tuple[float, float]]:
    """(P(X > Y), its percentile CI) with x [n_x, tasks] and y [n_y, tasks] resampled independently, each
    stratified by task (rliable's StratifiedIndependentBootstrap)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    resampled = probability_of_improvement(stratified_resample(x, reps, rng),
                                           stratified_resample(y, reps, rng))
    return float(probability_of_improvement(x, y)), _percentile_ci(resampled, confidence)


# ----------------------------------------------------------------------------------------------------
# The problem-level permutation test (one pair of checkpoints on one problem set)


def paired_permutation_pvalue(
    differences: Sequence[float],
    *,
    max_exact: int = 16,
    n_resamples: int = 100_000,
    seed: int = 0,
) -> float:
    """Two-sided sign-flip test of "mean paired difference = 0".

    Under the null hypothesis the two labels of each pair are exchangeable, so every difference is
    equally likely to have either sign. The p-value is the share of sign assignments whose |mean| is at
    least the observed |mean|. Zero differences do not change under a flip and are left out of the
    enumeration. With at most `max_exact` non-zero differences every one of the 2^n assignments is
    enumerated (exact p-value); otherwise `n_resamples` random assignments from a generator seeded with
    `seed` give (1 + hits) / (1 + n_resamples) (Phipson & Smyth, "Permutation P-values Should Never Be
    Zero", 2010). Applied to per-problem differences it asks whether two checkpoints differ on this
    problem set; it cannot see run-to-run variance, so it is no test of algorithms (it is kept to show
    that, in benchmarks/aa_real_runs.py).

    differences: [P] per-pair differences (e.g. per-problem accuracy of A minus B).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"expected a non-empty 1-d sequence of differences, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite")
    d = d[d != 0.0]
    n = d.size
    if n == 0:
        return 1.0
    # Compare sums instead of means: same ordering, one division less.
    observed = abs(d.sum()) - _TIE_TOLERANCE * max(1.0, np.abs(d).sum())
    if n <= max_exact:
        codes = np.arange(2**n, dtype=np.int64)[:, None]  # [2^n, 1]
        signs = 1.0 - 2.0 * ((codes >> np.arange(n)) & 1)  # [2^n, n], row i = bits of i
        return float(np.mean(np.abs(signs @ d) >= observed))
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 2_000_000 // n)  # bounds memory to ~16 MB of signs per chunk
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))  # [size, n]
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed))
    return (1 + hits) / (1 + n_resamples)


# ----------------------------------------------------------------------------------------------------
# Learning speed


def normalized_auc(steps: Sequence[float], values: Sequence[float]) -> float:
    """Area under a curve by the trapezoid rule, divided by its step span: the mean value over training.

    steps: [S] strictly increasing; values: [S]. A single point returns that value.
    """
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"steps and values must be equal-length non-empty 1-d, got {x.shape}, {y.shape}")
    if x.size == 1:
        return float(y[0])
    if np.any(np.diff(x) <= 0):
        raise ValueError("steps must be strictly increasing")
    area = np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)
    return float(area / (x[-1] - x[0]))


def first_step_reaching(steps: Sequence[float], values: Sequence[float], threshold: float) -> float | None:
    """The first step whose value is >= threshold, or None if the curve never reaches it."""
    for step, value in zip(steps, values, strict=True):
        if value >= threshold:
            return step
    return None


def align_on_common_steps(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> tuple[np.ndarray, np.ndarray]:
    """Stack several (steps, values) curves on the steps that all of them have.

    Returns (steps [S], values [C, S]) for C curves; S = 0 when they share no step. Averaging only over
    shared steps keeps every point of a mean curve an average over the same seeds.
    """
    if not curves:
        return np.zeros(0), np.zeros((0, 0))
    maps = [dict(zip(np.asarray(s).tolist(), np.asarray(v, dtype=np.float64).tolist(), strict=True))
            for s, v in curves]
    common = sorted(set.intersection(*(set(m) for m in maps)))
    values = np.array([[m[s] for s in common] for m in maps], dtype=np.float64)
    values = values.reshape(len(maps), len(common))  # keeps the [C, 0] shape when no step is shared
    return np.array(common, dtype=np.float64), values
