"""Seed-level statistics (fipo_bench.report.stats): the t distribution against closed forms, power and
sample sizes against published tables, rliable's IQM and probability of improvement against hand values,
and the calibration and power of the seed-level test in a simulation with a known truth.

The simulation (tests/support/synthetic_runs.py) draws, per replicate, a new set of 30 problems
(difficulty SD 1.5 logits, mean logit 0) and, per algorithm and seed, a training run with a run effect
(SD 0.25 logits) and a run x problem effect (SD 0.4 logits), graded on k = 8 samples per problem. Same-seed
runs of the two algorithms share half their run-effect variance (correlation 0.5) in the paired design;
the unpaired design uses disjoint seeds (correlation 0). Fixed generator seeds make every number below
deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fipo_bench.report.stats import (
    SeedTest,
    improvement_with_ci,
    interquartile_mean,
    iqm_with_ci,
    mean_ci_over_seeds,
    paired_permutation_pvalue,
    paired_t,
    probability_of_improvement,
    seed_level_test,
    seeds_for_power,
    stratified_resample,
    t_quantile,
    t_test_power,
    t_test_pvalue,
    t_two_sided_pvalue,
    welch_t,
)

REPLICATES = 4000
"""At a true rate of 5%, 4000 replicates estimate it with a binomial SE of sqrt(.05 x .95 / 4000) = 0.34
percentage points: the 10% bound is 14 SE above nominal, and a test whose true rate were 7.5% would land
inside [2.5%, 7.5%] only half the time, so the tighter band below is a real check of calibration."""


# ----------------------------------------------------------------------------------------------------
# Student's t


def test_t_pvalue_matches_closed_forms():
    t = np.array([0.0, 0.3, 1.0, 2.0, 4.0, 12.7062, 100.0])
    # df = 1 is the Cauchy distribution: P(|T| >= t) = 1 - (2/pi) atan(t).
    assert t_two_sided_pvalue(t, 1) == pytest.approx(1 - 2 / np.pi * np.arctan(t), abs=1e-13)
    # df = 2: P(|T| >= t) = 1 - t / sqrt(t^2 + 2).
    assert t_two_sided_pvalue(t, 2) == pytest.approx(1 - t / np.sqrt(t**2 + 2), abs=1e-13)
    # Large df: the normal tail erfc(t / sqrt 2).
    normal = np.array([math.erfc(x / math.sqrt(2)) for x in t])
    assert t_two_sided_pvalue(t, 1e7) == pytest.approx(normal, abs=1e-6)
    assert t_two_sided_pvalue(np.inf, 3) == 0.0


def test_t_quantiles_match_the_tables():
    # Two-sided 5% critical values (any t table): df 1, 2, 7, 30, and the normal's 1.95996.
    for df, value in ((1, 12.7062047), (2, 4.30265273), (7, 2.36462425), (30, 2.04227246), (1e7, 1.95996398)):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-6)
    assert t_quantile(0.995, 5) == pytest.approx(4.03214340, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile(0.4, 3)


def test_paired_and_welch_statistics_by_hand():
    mean, se, df = paired_t(np.array([1.0, 2.0, 3.0]))
    assert (mean, se, df) == (pytest.approx(2.0), pytest.approx(1 / math.sqrt(3)), 2.0)
    # a = [1, 2, 3] (var 1), b = [2, 4] (var 2): SE^2 = 1/3 + 2/2;
    # Welch df = (4/3)^2 / ((1/3)^2 / 2 + 1) = 32/19.
    mean, se, df = welch_t(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0]))
    assert (mean, se, df) == (pytest.approx(-1.0), pytest.approx(math.sqrt(4 / 3)), pytest.approx(32 / 19))
    assert np.isnan(paired_t(np.array([0.3]))[1])
    assert np.isnan(welch_t(np.array([1.0]), np.array([1.0, 2.0]))[1])
    # No spread: p = 1 for no difference, 0 for a constant non-zero one, NaN without a variance.
    assert t_test_pvalue(0.0, 0.0, 3.0) == 1.0 and t_test_pvalue(0.2, 0.0, 3.0) == 0.0
    assert np.isnan(t_test_pvalue(0.2, np.nan, np.nan))


def test_seed_level_test_pairs_by_seed_and_refuses_one_run():
    a = {0: 0.50, 1: 0.60, 2: 0.55}
    b = {0: 0.40, 1: 0.45, 2: 0.50}
    paired = seed_level_test(a, b)
    d = np.array([0.10, 0.15, 0.05])  # per-seed differences: mean .1, SD .05, SE .05 / sqrt 3, t = 2 sqrt 3
    assert paired.design == "paired" and paired.seeds_a == paired.seeds_b == (0, 1, 2)
    assert paired.mean == pytest.approx(0.1) and paired.sd == pytest.approx(d.std(ddof=1))
    assert paired.p_value == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(12 + 2), abs=1e-12)  # df = 2
    half = 4.30265273 * 0.05 / math.sqrt(3)
    assert paired.ci == pytest.approx((0.1 - half, 0.1 + half), abs=1e-7)
    # Disjoint seeds: Welch over all runs; one shared seed is no pairing either.
    unpaired = seed_level_test(a, {5: 0.40, 6: 0.45, 7: 0.50})
    assert unpaired.design == "unpaired" and unpaired.seeds_b == (5, 6, 7)
    assert unpaired.df == pytest.approx(4.0)
    assert seed_level_test(a, {0: 0.4, 9: 0.5}).design == "unpaired"
    # One run on a side: a difference, nothing else.
    single = seed_level_test({0: 0.5}, {0: 0.4})
    assert single == SeedTest(pytest.approx(0.1), "none", (0,), (0,), None, None, None, None)
    assert seed_level_test({0: 0.5}, {0: 0.4, 1: 0.5}).design == "none"
    assert mean_ci_over_seeds([0.3]) is None
    assert mean_ci_over_seeds([0.2, 0.4]) == pytest.approx((0.3 - 12.7062047 * 0.1, 0.3 + 12.7062047 * 0.1))


# ----------------------------------------------------------------------------------------------------
# Power and seeds needed


def test_power_and_sample_sizes_match_published_values():
    # G*Power (Faul et al. 2007) / Cohen (1988, Table 2.4.1): per group for 80% power, two-sided 5%:
    # d = .2 -> 394 (Cohen's normal approximation: 393), .5 -> 64, .8 -> 26; paired d_z = .5 -> 34 (.8078).
    assert [seeds_for_power(d, 1.0, paired=False) for d in (0.2, 0.5, 0.8)] == [394, 64, 26]
    assert seeds_for_power(0.5, 1.0, paired=True) == 34
    assert t_test_power(0.5, 34, paired=True) == pytest.approx(0.8078, abs=1e-4)
    assert t_test_power(1.0, 10, paired=True) == pytest.approx(0.8031, abs=1e-4)
    assert t_test_power(0.5, 64, paired=False) == pytest.approx(0.8015, abs=1e-4)
    # Scale invariance, no effect, an effect too small for 1000 seeds, no spread.
    assert seeds_for_power(0.05, 0.1, paired=True) == seeds_for_power(0.5, 1.0, paired=True)
    assert seeds_for_power(0.0, 0.1, paired=True) is None
    assert seeds_for_power(0.001, 1.0, paired=True) is None
    assert seeds_for_power(0.1, 0.0, paired=True) == 2
    assert t_test_power(0.0, 8, paired=True) == pytest.approx(0.05, abs=1e-6)  # power at no effect = alpha


# ----------------------------------------------------------------------------------------------------
# rliable's aggregates


def test_iqm_and_probability_of_improvement_by_hand():
    runs = np.arange(1.0, 9.0)[:, None]  # 8 runs, 1 task: cut int(.25 x 8) = 2 at each end -> mean(3..6)
    assert interquartile_mean(runs) == 4.5
    assert interquartile_mean(np.array([[1.0], [2.0], [9.0]])) == 4.0  # 3 scores: int(.75) = 0 cut
    # 4 runs x 2 tasks = 8 scores, trimmed over all of them: sorted 0 1 2 3 | 4 5 6 7 -> mean(2..5) = 3.5.
    assert interquartile_mean(np.array([[0.0, 7.0], [1.0, 6.0], [2.0, 5.0], [3.0, 4.0]])) == 3.5
    # P(X > Y): x = [1, 2], y = [0, 2]: 1>0, 1<2, 2>0, 2=2 (1/2) -> 2.5 / 4; per task, then the mean.
    x, y = np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([[0.0, 1.0], [2.0, 1.0]])
    assert probability_of_improvement(x, y) == pytest.approx((0.625 + 0.0) / 2)
    assert probability_of_improvement(y[:, :1], y[:, :1]) == 0.5  # identical runs: 1/2 (rliable's rule)


def test_stratified_bootstrap_resamples_runs_within_each_task():
    scores = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])  # 3 runs x 2 tasks
    resampled = stratified_resample(scores, 500, np.random.default_rng(0))
    assert resampled.shape == (500, 3, 2)
    assert set(np.unique(resampled[..., 0])) == {0.0, 1.0, 2.0}
    assert set(np.unique(resampled[..., 1])) == {10.0, 11.0, 12.0}  # never mixes tasks
    # Runs are drawn independently per task: the two columns' run choices are not the same rows.
    assert np.mean(resampled[..., 0] + 10.0 == resampled[..., 1]) < 0.5
    value, ci = iqm_with_ci(scores)
    assert value == pytest.approx(6.0) and ci[0] <= value <= ci[1]
    assert (value, ci) == iqm_with_ci(scores)  # seeded: deterministic
    # Shifted by .5: in each task 6 of the 9 run pairs favour the shifted runs.
    p, ci = improvement_with_ci(scores + 0.5, scores)
    assert p == pytest.approx(6 / 9) and ci[0] <= p <= ci[1]


# ----------------------------------------------------------------------------------------------------
# Calibration and power by simulation


def _rejections(synthetic_runs, *, seeds: int, effect: float, correlation: float, generator_seed: int):
    """(p-values [REPLICATES], per-seed differences of run scores [REPLICATES, seeds]) of the report's
    test on simulated comparisons; Welch on independent runs when correlation is 0."""
    pop = synthetic_runs.Population(seed_correlation=correlation)
    a, b = synthetic_runs.simulate_counts(pop, np.random.default_rng(generator_seed), replicates=REPLICATES,
                                          seeds=seeds, effect=effect)
    score_a, score_b = a.mean(-1) / pop.samples, b.mean(-1) / pop.samples  # avg@k of each run
    if correlation > 0:
        p = t_test_pvalue(*paired_t(score_a - score_b))
    else:
        p = t_test_pvalue(*welch_t(score_a, score_b))
    # The vectorized core is what the report calls, one comparison at a time.
    seeds_b = range(seeds) if correlation > 0 else range(100, 100 + seeds)  # disjoint seeds: unpaired
    first = seed_level_test(dict(enumerate(score_a[0])), dict(zip(seeds_b, score_b[0], strict=True)))
    assert (first.p_value is None and np.isnan(p[0])) or first.p_value == pytest.approx(p[0], rel=1e-9)
    return p, score_a - score_b


@pytest.mark.parametrize("correlation", [0.5, 0.0], ids=["paired", "welch"])
def test_aa_false_positive_rate_is_calibrated_at_1_3_and_8_seeds(synthetic_runs, correlation):
    rates = {}
    for seeds in (1, 3, 8):
        p, _ = _rejections(synthetic_runs, seeds=seeds, effect=0.0, correlation=correlation,
                           generator_seed=seeds)
        rates[seeds] = float(np.mean(p < 0.05))
        if seeds == 1:
            assert np.isnan(p).all()  # one run per algorithm: no test at all, so no false positive
    assert rates[1] == 0.0
    for seeds in (3, 8):
        assert rates[seeds] <= 0.10, rates
        # Near nominal, not merely below the bound (Welch is slightly conservative at 3 runs each).
        assert (0.025 if correlation > 0 else 0.015) <= rates[seeds] <= 0.075, rates


def test_planted_effect_is_detected_and_power_formula_matches_simulation(synthetic_runs):
    # 1.2 logits at 8 seeds: the example of an effect a seed-level analysis must see.
    p, d = _rejections(synthetic_runs, seeds=8, effect=1.2, correlation=0.5, generator_seed=11)
    assert np.mean(p < 0.05) >= 0.8
    # The power formula behind "seeds needed", against the simulated power where power is far from 0 and 1.
    for seeds, effect, generator_seed in ((8, 0.3, 12), (3, 1.2, 13)):
        p, d = _rejections(synthetic_runs, seeds=seeds, effect=effect, correlation=0.5,
                           generator_seed=generator_seed)
        simulated = float(np.mean(p < 0.05))
        sd = float(np.sqrt(np.mean(d.var(axis=1, ddof=1))))  # the SD of a per-seed difference
        predicted = t_test_power(float(d.mean()) / sd, seeds, paired=True)
        assert 0.1 < simulated < 0.9
        # Simulation SE <= .008; the run scores are near-normal, so the formula is close to exact.
        assert simulated == pytest.approx(predicted, abs=0.03)


def test_the_problem_level_test_is_not_calibrated_for_algorithms(synthetic_runs):
    """The old report's test (sign flips of per-problem differences, averaged over seeds) on the same A/A
    comparisons: it ignores run-to-run variance, so it calls identical algorithms different far more often
    than 5%. The simulation can tell a miscalibrated test from a calibrated one."""
    pop = synthetic_runs.Population()
    a, b = synthetic_runs.simulate_counts(pop, np.random.default_rng(108), replicates=1500, seeds=8)
    per_problem = (a - b).mean(axis=1) / pop.samples  # [replicates, problems]
    p = np.array([paired_permutation_pvalue(d, n_resamples=1000, seed=0) for d in per_problem])
    # About 15% (13-16% at 1, 3 and 8 seeds with 3000 replicates); SE at 1500 replicates <= 0.01, so it
    # fails the calibration bound that the seed-level test passes.
    assert np.mean(p < 0.05) > 0.10
