"""Statistics for comparing algorithms: paired permutation test and learning-speed summaries.

Pure functions on numpy arrays (no I/O). The percentile bootstrap of a mean lives in
`fipo_bench.evals.metrics.bootstrap_ci`; a paired bootstrap is that function applied to the
per-problem differences, so it is not repeated here.

Sources: the sign-flip (paired) permutation test, e.g. Good, "Permutation, Parametric, and Bootstrap
Tests of Hypotheses" (2005), ch. 3; the Monte Carlo p-value (1 + hits) / (1 + draws) of Phipson & Smyth,
"Permutation P-values Should Never Be Zero" (2010).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Ties in |mean| between the observed and a flipped sample must count as "as extreme"; sums of the same
# numbers in a different order can differ in the last bits.
_TIE_TOLERANCE = 1e-12


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
    `seed` give (1 + hits) / (1 + n_resamples).

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
