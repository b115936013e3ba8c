"""Compute-performance fits (fipo_bench.report.curves, ScaleRL arXiv 2510.13786 Eq. 1) and the compute axis
read from metrics.jsonl (fipo_bench.report.compare.step_compute)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fipo_bench.report.compare import cumulative_compute, step_compute
from fipo_bench.report.curves import (
    CurveFit,
    fit_scalerl,
    jackknife_ci,
    rank_by_asymptote_then_efficiency,
    scalerl_curve,
)
from fipo_bench.report.data import RunData

COMPUTE = np.array([0.0, 1e4, 2e4, 4e4, 8e4, 1.6e5, 3.2e5, 6.4e5])


def test_curve_is_eq_1_of_scalerl():
    # At C = C_mid half the gain is reached; C = 0 gives R_0; C -> infinity approaches A.
    assert scalerl_curve([5e4], 0.2, 0.7, 1.5, 5e4)[0] == pytest.approx(0.45)
    assert scalerl_curve([0.0], 0.2, 0.7, 1.5, 5e4)[0] == 0.2
    assert scalerl_curve([1e12], 0.2, 0.7, 1.5, 5e4)[0] == pytest.approx(0.7, abs=1e-9)
    # (C_mid / C)^B by hand at C = 2 C_mid, B = 2: gain share 1 / (1 + 1/4) = .8.
    assert scalerl_curve([1e5], 0.2, 0.7, 2.0, 5e4)[0] == pytest.approx(0.2 + 0.5 * 0.8)


@pytest.mark.parametrize("r0, a, b, c_mid",
                         [(0.2, 0.7, 1.5, 5e4), (0.1, 0.9, 0.8, 2e4), (0.3, 0.35, 3.0, 1e5)])
def test_fit_recovers_a_planted_curve(r0, a, b, c_mid):
    reward = scalerl_curve(COMPUTE, r0, a, b, c_mid)
    for measured_r0 in (r0, None):  # R_0 given (the step-0 eval) or fitted
        fit = fit_scalerl(COMPUTE, reward, r0=measured_r0, noise=0.01)
        assert fit.reliable, fit.flags
        assert (fit.a, fit.b, fit.c_mid, fit.r0) == (
            pytest.approx(a, abs=2e-3), pytest.approx(b, rel=0.02), pytest.approx(c_mid, rel=0.02),
            pytest.approx(r0, abs=2e-3))
        assert fit.rmse < 1e-3 and fit.points == 7 and fit.r0_fitted == (measured_r0 is None)


def test_fit_with_noise_stays_close():
    rng = np.random.default_rng(0)
    reward = scalerl_curve(COMPUTE, 0.2, 0.7, 1.5, 5e4) + rng.normal(0.0, 0.01, COMPUTE.size)
    fit = fit_scalerl(COMPUTE, reward, r0=0.2, noise=0.01)
    assert fit.reliable and fit.a == pytest.approx(0.7, abs=0.03) and fit.rmse < 0.02


def test_unreliable_fits_are_flagged():
    rising = scalerl_curve(COMPUTE, 0.2, 0.7, 1.5, 5e4)
    # Only the start of the curve: C_mid lies beyond the data (A is an extrapolation), and too few points.
    early = fit_scalerl(COMPUTE[:4], rising[:4], r0=0.2)
    assert any("C_mid beyond the last point" in f for f in early.flags)
    assert any("3 points with C > 0" in f for f in early.flags) and not early.reliable
    # A curve heading above 1: A is clipped to its bound.
    steep = fit_scalerl(COMPUTE, scalerl_curve(COMPUTE, 0.2, 1.6, 1.0, 3e5), r0=0.2)
    assert any("A on its bound" in f for f in steep.flags)
    # Residuals far above the points' standard error (a collapse the sigmoid cannot follow).
    collapse = np.array([0.2, 0.5, 0.7, 0.7, 0.3, 0.1, 0.1, 0.1])
    bad = fit_scalerl(COMPUTE, collapse, r0=0.2, noise=0.01)
    assert any("residuals" in f for f in bad.flags)
    assert fit_scalerl([0.0, 1.0], [0.1, 0.2]) is None  # one point with C > 0: nothing to fit
    with pytest.raises(ValueError):
        fit_scalerl([0.0, -1.0, 2.0], [0.1, 0.2, 0.3])


def test_jackknife_ci_by_hand():
    # Leave-one-out values 1, 2, 3: SE = sqrt(2/3 x 2) = sqrt(4/3); t_{.975, 2} = 4.30265.
    low, high = jackknife_ci([1.0, 2.0, 3.0], 2.0)
    half = 4.30265273 * math.sqrt(4 / 3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    # On the log scale: symmetric around log(full), so the bounds multiply to full^2.
    low, high = jackknife_ci([1.0, 2.0, 4.0], 2.0, log=True)
    assert low * high == pytest.approx(4.0) and low < 2.0 < high
    assert jackknife_ci([1.0], 1.0) is None


def _fit(a, b):
    return CurveFit(r0=0.1, a=a, b=b, c_mid=1.0, rmse=0.0, points=5, r0_fitted=False, flags=())


def test_ranking_by_asymptote_then_efficiency():
    # Asymptotes told apart by their CIs: order by A whatever B is.
    apart = {"x": (_fit(0.6, 1.0), (0.58, 0.62)), "y": (_fit(0.7, 0.5), (0.68, 0.72))}
    assert rank_by_asymptote_then_efficiency(apart) == ["y", "x"]
    # Each A inside the other's CI: a tie on A, broken by B (the more compute-efficient first).
    tied = {"x": (_fit(0.6, 2.0), (0.5, 0.7)), "y": (_fit(0.62, 1.0), (0.55, 0.69)),
            "z": (_fit(0.3, 9.0), None)}
    assert rank_by_asymptote_then_efficiency(tied) == ["x", "y", "z"]
    # A fit whose CI covers everything does not tie with a well-measured one whose CI excludes it.
    vague = {"x": (_fit(0.8, 1.0), (0.78, 0.82)), "y": (_fit(0.5, 5.0), (0.0, 1.0))}
    assert rank_by_asymptote_then_efficiency(vague) == ["x", "y"]
    # Without CIs (one seed) only A counts.
    assert rank_by_asymptote_then_efficiency({"x": (_fit(0.6, 2.0), None), "y": (_fit(0.61, 1.0), None)}) == [
        "y", "x"]


def test_compute_is_read_from_the_logged_fields():
    # The local trainer logs tokens_per_s = generated / step_time: the product gives the tokens back.
    assert step_compute({"tokens_per_s": 400.0, "step_time_s": 2.5}) == 2000.0  # trained = generated
    # Dynamic sampling: 2 generation batches, half of the groups kept -> the batch is one of the two.
    assert step_compute({"tokens_per_s": 400.0, "step_time_s": 2.5, "kept_groups_frac": 0.5,
                         "gen_batches": 2}) == 1000.0 + 500.0
    # Fewer groups passed than the batch needs (30% of 2 batches = .6 batch): that share is trained.
    assert step_compute({"tokens_per_s": 100.0, "step_time_s": 10.0, "kept_groups_frac": 0.3,
                         "gen_batches": 2}) == pytest.approx(1000.0 + 300.0)
    # Logged counts win over the reconstruction.
    assert step_compute({"generated_tokens": 7.0, "trained_tokens": 3.0, "tokens_per_s": 1.0,
                         "step_time_s": 1.0}) == 10.0
    assert step_compute({"step_time_s": 1.0}) is None
    run = RunData(name="a-seed0", algo="a", seed=0, path=None, status="completed", status_step=3, error=None,
                  metrics=[{"step": 1, "tokens_per_s": 10.0, "step_time_s": 1.0},
                           {"step": 2, "tokens_per_s": 20.0, "step_time_s": 1.0},
                           {"step": 3, "tokens_per_s": None, "step_time_s": 1.0},
                           {"step": 4, "tokens_per_s": 5.0, "step_time_s": 1.0}])
    # Cumulative; it stops at the first step whose cost is unknown (later totals would be wrong).
    assert cumulative_compute(run) == {0: 0.0, 1: 20.0, 2: 60.0}
