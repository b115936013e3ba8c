"""Evaluation metrics over k samples per problem.

- avg@k: mean over problems of the fraction of a problem's samples that are correct (the unbiased
  estimate of Pass@1 that DAPO and FIPO report as "AIME avg@32");
- pass@k: Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1), the unbiased
  estimate of the chance that at least one of k samples is correct, from n >= k samples with c correct:
  1 - C(n-c, k) / C(n, k);
- cons@k: majority vote over the normalized extracted answers of a problem (samples without an answer
  do not vote; ties go to the answer that appeared first);
- a percentile-bootstrap confidence interval of avg@k, resampling problems.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from fipo_bench.evals.checker import VERDICTS
from fipo_bench.evals.extract import normalize_answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (needs 1 <= k <= n, 0 <= c <= n)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): a product of c terms, no huge binomials.
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `values`."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D sequence of values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)  # [n_boot]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """Most frequent normalized answer (ties: first seen), None when no sample has an answer."""
    normalized = [normalize_answer(a) for a in answers if a is not None]
    normalized = [a for a in normalized if a]
    if not normalized:
        return None
    counts = Counter(normalized)
    best = max(counts.values())
    return next(a for a in normalized if counts[a] == best)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an ascending sequence."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def length_stats(lengths: Sequence[float]) -> dict[str, float | None]:
    """mean, median, p90 and max of response lengths (None for all when there are none)."""
    if not lengths:
        return {"mean": None, "median": None, "p90": None, "max": None}
    ordered = sorted(lengths)
    return {
        "mean": sum(ordered) / len(ordered),
        "median": _quantile(ordered, 0.5),
        "p90": _quantile(ordered, 0.9),
        "max": ordered[-1],
    }


def summarize_generations(rows: list[dict], *, dataset: str, checkpoint: str, k: int, sampling: dict) -> dict:
    """The summary.json of an evaluation from its generations.jsonl rows (results/README.md).

    pass@k is reported for every power of two up to k that every problem has enough samples for.
    """
    if not rows:
        raise ValueError("summarize_generations: no generations")
    by_problem: dict[str, list[dict]] = {}
    for row in rows:
        by_problem.setdefault(str(row["problem_id"]), []).append(row)

    per_problem = []
    consensus_correct = []
    for problem_id, samples in by_problem.items():
        num_correct = sum(bool(s["correct"]) for s in samples)
        per_problem.append({
            "problem_id": problem_id,
            "num_correct": num_correct,
            "num_samples": len(samples),
            "accuracy": num_correct / len(samples),
        })
        vote = majority_vote([s.get("extracted") for s in samples])
        voters = [s for s in samples if s.get("extracted") and normalize_answer(s["extracted"]) == vote]
        consensus_correct.append(vote is not None and any(s["correct"] for s in voters))

    accuracies = [p["accuracy"] for p in per_problem]
    min_samples = min(p["num_samples"] for p in per_problem)
    powers = [2**i for i in range(int(math.log2(max(1, min(k, min_samples)))) + 1)]
    pass_at = {
        str(p): sum(pass_at_k(q["num_samples"], q["num_correct"], p) for q in per_problem) / len(per_problem)
        for p in powers
    }
    lengths = [r["num_tokens"] for r in rows if r.get("num_tokens") is not None]
    truncated = [bool(r["truncated"]) for r in rows if r.get("truncated") is not None]
    verdicts = Counter(r["verdict"] for r in rows)
    return {
        "dataset": dataset,
        "checkpoint": checkpoint,
        "k": k,
        "num_problems": len(per_problem),
        "num_samples": len(rows),
        "avg_at_k": sum(accuracies) / len(accuracies),
        "avg_at_k_ci95": list(bootstrap_ci(accuracies)),
        "pass_at_k": pass_at,
        "cons_at_k": sum(consensus_correct) / len(consensus_correct),
        "response_length": length_stats(lengths),
        "truncation_rate": sum(truncated) / len(truncated) if truncated else None,
        "verdict_counts": {v: verdicts.get(v, 0) for v in VERDICTS},
        "per_problem": per_problem,
        "sampling": dict(sampling),
    }
