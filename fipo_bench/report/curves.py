"""Compute-performance curves: ScaleRL's sigmoid fitted to eval accuracy against training compute.

Khatri et al., "The Art of Scaling Reinforcement Learning Compute for LLMs" (arXiv 2510.13786), Eq. 1:

    R_C - R_0 = (A - R_0) / (1 + (C_mid / C)^B)

R_C: eval accuracy after compute C; R_0: the accuracy before training; A: the asymptote; B > 0: the
scaling exponent (how sharply accuracy rises around the midpoint); C_mid: the compute at which half of
the gain A - R_0 is reached. ScaleRL ranks recipes by A first, then by B. Pure numpy, no I/O. The fitting
procedure is ours (`fit_scalerl`). Deviation: ScaleRL leaves out the first ~1.5k GPU-hours of a run as a
noisy warm-up; runs here are short, and every point is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fipo_bench.report.stats import t_quantile

B_RANGE = (0.1, 10.0)
C_MID_RANGE_FACTOR = 100.0
"""C_mid is searched from the smallest positive compute / 100 to the largest x 100 (log scale)."""
MIN_POINTS = 4


def scalerl_curve(compute, r0: float, a: float, b: float, c_mid: float) -> np.ndarray:
    """Eq. 1 of arXiv 2510.13786: R(C) = R_0 + (A - R_0) / (1 + (C_mid / C)^B); R(0) = R_0."""
    c = np.asarray(compute, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        share = 1.0 / (1.0 + np.exp(b * (math.log(c_mid) - np.log(np.where(c > 0, c, 1.0)))))
    return r0 + (a - r0) * np.where(c > 0, share, 0.0)


@dataclass(frozen=True)
class CurveFit:
    """One fitted curve and why it may not be trusted."""

    r0: float
    a: float
    b: float
    c_mid: float
    rmse: float
    """Root mean squared residual of the fitted points."""
    points: int
    """Points with C > 0."""
    r0_fitted: bool
    """R_0 fitted (no point at C = 0) rather than measured."""
    flags: tuple[str, ...]

    @property
    def reliable(self) -> bool:
        return not self.flags

    def predict(self, compute) -> np.ndarray:
        return scalerl_curve(compute, self.r0, self.a, self.b, self.c_mid)


def _grid_fit(log_c: np.ndarray, at_zero: np.ndarray, reward: np.ndarray, r0: float | None,
              log_b: np.ndarray, log_mid: np.ndarray) -> tuple[float, float, float, float, float]:
    """Best (sse, r0, a, log b, log c_mid) over the grid log_b x log_mid; A (and R_0) in closed form."""
    b = np.exp(log_b)[:, None, None]  # [nb, 1, 1]
    share = 1.0 / (1.0 + np.exp(np.clip(b * (log_mid[None, :, None] - log_c[None, None, :]), -700, 700)))
    share = np.where(at_zero[None, None, :], 0.0, share)  # [nb, nm, N]
    if r0 is not None:
        y = reward - r0
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = (share * y).sum(-1) / (share**2).sum(-1)
        a = np.clip(r0 + np.nan_to_num(gain), 0.0, 1.0)
        r0s = np.full_like(a, r0)
    else:
        # Normal equations of R = r0 (1 - s) + a s, per grid cell.
        u, s = 1.0 - share, share
        suu, sus, sss = (u * u).sum(-1), (u * s).sum(-1), (s * s).sum(-1)
        suy, ssy = (u * reward).sum(-1), (s * reward).sum(-1)
        det = suu * sss - sus**2
        with np.errstate(invalid="ignore", divide="ignore"):
            r0s = np.clip(np.nan_to_num((sss * suy - sus * ssy) / det), 0.0, 1.0)
            a = np.clip(np.nan_to_num((suu * ssy - sus * suy) / det), 0.0, 1.0)
    sse = ((r0s[..., None] + (a - r0s)[..., None] * share - reward) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return float(sse[i, j]), float(r0s[i, j]), float(a[i, j]), float(log_b[i]), float(log_mid[j])


def fit_scalerl(compute: Sequence[float], reward: Sequence[float], *, r0: float | None = None,
                noise: float | None = None) -> CurveFit | None:
    """Fit Eq. 1 to points (compute [N] >= 0, reward [N]); None with fewer than 2 points at C > 0.

    r0: the measured accuracy before training (None: fitted). noise: the typical standard error of a
    point; residuals (RMSE) above twice it flag the fit.

    Least squares on the points (the paper's own procedure is not reproduced). For fixed (B, C_mid) the
    model is linear in (R_0, A) (R = R_0 (1 - s) + A s with s = 1 / (1 + (C_mid / C)^B)), so A (and R_0
    when it is not measured) has a closed form, and (B, log C_mid) are searched on a grid refined three
    times around the best cell: deterministic, no local minima to start from, no scipy. R_0 is fixed to
    the measured step-0 accuracy when there is one (every run starts from the same base checkpoint). A is
    kept in [0, 1] (an accuracy). The fit is flagged unreliable when A sits on a bound, when C_mid lies
    beyond the last point (the curve has not turned yet: A is an extrapolation), when B sits on its
    search bound, when fewer than 4 points with C > 0 support the 3 parameters, or when the residuals
    are larger than twice `noise`.
    """
    c = np.asarray(compute, dtype=np.float64)
    y = np.asarray(reward, dtype=np.float64)
    if c.shape != y.shape or c.ndim != 1 or np.any(c < 0) or not np.all(np.isfinite(c) & np.isfinite(y)):
        raise ValueError("fit_scalerl needs equal-length 1-d finite compute >= 0 and reward")
    positive = c > 0
    if positive.sum() < 2:
        return None
    log_c = np.log(np.where(positive, c, 1.0))
    at_zero = ~positive
    lo_b, hi_b = math.log(B_RANGE[0]), math.log(B_RANGE[1])
    lo_m = float(log_c[positive].min()) - math.log(C_MID_RANGE_FACTOR)
    hi_m = float(log_c[positive].max()) + math.log(C_MID_RANGE_FACTOR)
    log_b, log_mid = np.linspace(lo_b, hi_b, 81), np.linspace(lo_m, hi_m, 121)
    for _ in range(4):  # the coarse grid, then three refinements around the best cell
        sse, r0_fit, a, lb, lm = _grid_fit(log_c, at_zero, y, r0, log_b, log_mid)
        db, dm = 2.0 * (log_b[1] - log_b[0]), 2.0 * (log_mid[1] - log_mid[0])
        log_b = np.linspace(max(lo_b, lb - db), min(hi_b, lb + db), 41)
        log_mid = np.linspace(max(lo_m, lm - dm), min(hi_m, lm + dm), 41)
    rmse = math.sqrt(sse / y.size)
    b, c_mid = math.exp(lb), math.exp(lm)
    flags = []
    if int(positive.sum()) < MIN_POINTS:
        flags.append(f"{int(positive.sum())} points with C > 0 for 3 parameters (fewer than {MIN_POINTS})")
    if a <= 1e-9 or a >= 1.0 - 1e-9:
        flags.append(f"A on its bound ({a:g})")
    if c_mid > float(c[positive].max()):
        flags.append("C_mid beyond the last point: the curve has not turned, A is an extrapolation")
    if math.isclose(lb, lo_b) or math.isclose(lb, hi_b):
        flags.append(f"B on its search bound ({b:g})")
    if noise is not None and noise > 0 and rmse > 2.0 * noise:
        flags.append(f"residuals {rmse:.3g} RMSE > 2 x the points' standard error {noise:.3g}")
    return CurveFit(r0=r0_fit, a=a, b=b, c_mid=c_mid, rmse=rmse, points=int(positive.sum()),
                    r0_fitted=r0 is None, flags=tuple(flags))


def jackknife_ci(leave_one_out: Sequence[float], full: float, confidence: float = 0.95,
                 log: bool = False) -> tuple[float, float] | None:
    """CI of a statistic from its n leave-one-seed-out values: full +- t_{n-1} x jackknife SE
    (sqrt((n - 1) / n x sum (theta_i - mean)^2); Efron & Tibshirani 1993, Ch. 11); on the log scale when
    `log` (used for B: positive and skewed). None for n < 2."""
    values = np.asarray(leave_one_out, dtype=np.float64)
    n = values.size
    if n < 2 or not np.all(np.isfinite(values)) or (log and (full <= 0 or np.any(values <= 0))):
        return None
    if log:
        values, full = np.log(values), math.log(full)
    se = math.sqrt((n - 1) / n * float(((values - values.mean()) ** 2).sum()))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    low, high = full - half, full + half
    return (math.exp(low), math.exp(high)) if log else (low, high)


def rank_by_asymptote_then_efficiency(
        fits: dict[str, tuple[CurveFit, tuple[float, float] | None]]) -> list[str]:
    """ScaleRL's ordering: by A (higher first), and by B (higher first) among algorithms whose asymptotes
    are not told apart: each A within the other's CI (their difference below the narrower half-width, so
    a fit with a wide CI does not tie with everything). Walks the A-sorted list and starts a new tier
    whenever an A falls below the tier's first by more than that."""
    def half_width(ci):
        return 0.0 if ci is None else (ci[1] - ci[0]) / 2.0

    ordered = sorted(fits, key=lambda name: -fits[name][0].a)
    tiers: list[list[str]] = []
    for name in ordered:
        if tiers:
            head = tiers[-1][0]
            margin = min(half_width(fits[head][1]), half_width(fits[name][1]))
            if fits[head][0].a - fits[name][0].a < margin:
                tiers[-1].append(name)
                continue
        tiers.append([name])
    return [name for tier in tiers for name in sorted(tier, key=lambda n: -fits[n][0].b)]
