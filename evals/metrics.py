"""Evaluation metrics over k samples per problem: avg@k, pass@k, cons@k, maj@k, G-Pass@k_tau and
mG-Pass@k, and a bootstrap CI of avg@k; each function names its source.

avg@k is the mean over problems of the fraction of a problem's samples that are correct (the unbiased
estimate of Pass@1 that DAPO and FIPO report as "AIME avg@32"). One difference from the references
(open-compass/GPassK, lighteval): k > n is an error here; they return 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from fipo_bench.evals.extract import normalize_answer
from fipo_bench.evals.result import VERDICTS

G_PASS_TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The thresholds GPassK and lighteval report."""


def _check_nck(name: str, n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"{name} needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (needs 1 <= k <= n, 0 <= c <= n):
    1 - C(n-c, k) / C(n, k), the chance that at least one of k samples is correct (Chen et al. 2021,
    "Evaluating Large Language Models Trained on Code", eq. 1)."""
    _check_nck("pass_at_k", n, c, k)
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): a product of c terms, no huge binomials.
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def _at_least(n: int, c: int, k: int, m: int) -> float:
    """P(X >= m) for X ~ Hypergeometric(n samples, c correct, k drawn): exact integers, one division."""
    ways = sum(math.comb(c, j) * math.comb(n - c, k - j) for j in range(max(m, 0), min(c, k) + 1))
    return ways / math.comb(n, k)


def g_pass_at_k(n: int, c: int, k: int, tau: float) -> float:
    """G-Pass@k_tau from n samples of which c are correct: P(at least max(ceil(k tau), 1) of k correct).

    Liu et al. 2024, "Are Your LLMs Capable of Stable Reasoning?" (arXiv 2412.13147), exactly as
    open-compass/GPassK and lighteval compute it: a hypergeometric tail over k samples drawn without
    replacement from the n; tau = 0 is pass@k. The threshold is computed as the references do (ceil of
    the float product k * tau)."""
    _check_nck("g_pass_at_k", n, c, k)
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"g_pass_at_k needs 0 <= tau <= 1, got {tau}")
    return _at_least(n, c, k, max(math.ceil(k * tau), 1))


def mg_pass_at_k(n: int, c: int, k: int) -> float:
    """mG-Pass@k = (2/k) sum_{i=ceil(k/2)+1}^{k} P(at least i of k correct); 0 for k = 1 (an empty sum).
    Source: as `g_pass_at_k`."""
    _check_nck("mg_pass_at_k", n, c, k)
    return 2.0 * sum(_at_least(n, c, k, i) for i in range(math.ceil(k * 0.5) + 1, k + 1)) / k


def maj_at_k(votes: Sequence[tuple[int, bool]], n: int, k: int) -> float:
    """Unbiased maj@k of one problem: the mean, over every size-k subset of its n samples, of the
    subset's majority vote being right (ties: the share of tied answers that are right; no vote: 0).
    Not the plug-in vote of the first k: the expected accuracy of a majority vote of k fresh samples,
    ties split evenly (the expectation of breaking them at random). At k = n it is cons@k
    (`majority_vote`) except where the vote ties.

    votes: (count, correct) per distinct normalized answer; the n - sum(counts) other samples have no
    answer and do not vote. Exact: for each right answer j and each count x it gets in the subset, the
    other answers must get at most x (those that get exactly x tie with it); a table over (samples
    drawn from answers that can reach x, answers tied at x) counts those subsets, and answers with fewer
    than x samples join the non-voters, which draw the rest freely. Counts are float64: n <= 1020.
    """
    import numpy as np

    counts = [int(a) for a, _ in votes]
    if any(a < 1 for a in counts) or sum(counts) > n or not 1 <= k <= n:
        raise ValueError(f"maj_at_k needs vote counts >= 1 summing to <= n and 1 <= k <= n, got "
                         f"counts={counts}, n={n}, k={k}")
    total = math.comb(n, k)
    if total > 1e300:
        raise ValueError(f"maj_at_k: C({n}, {k}) overflows float64")
    expected = 0.0
    for j, (a_j, right) in enumerate(votes):
        if not right:
            continue
        for x in range(1, min(a_j, k) + 1):
            rivals = [a for i, a in enumerate(counts) if i != j and a >= x]
            free = n - a_j - sum(rivals)
            rest = k - x
            table = np.zeros((rest + 1, len(rivals) + 1))  # [samples drawn, answers tied at x]
            table[0, 0] = 1.0
            for a in rivals:
                grown = np.zeros_like(table)
                for y in range(min(x, rest) + 1):
                    tied = int(y == x)
                    grown[y:, tied:] += math.comb(a, y) * table[:rest + 1 - y, :table.shape[1] - tied]
                table = grown
            fill = np.array([math.comb(free, rest - s) for s in range(rest + 1)], dtype=np.float64)
            by_ties = fill @ table  # [answers tied at x]
            expected += math.comb(a_j, x) * float(by_ties @ (1.0 / np.arange(1, len(rivals) + 2)))
    return expected / total


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `values`.

    Over problems, it says how precisely one checkpoint's avg@k is known on this problem set; a
    comparison of algorithms needs seeds (fipo_bench.report.stats)."""
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
    """cons@k's vote: the most frequent normalized answer (ties: first seen; samples without an answer
    do not vote), None when no sample has an answer."""
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

    pass@k, maj@k, G-Pass@k_tau and mG-Pass@k are reported for every power of two up to k that every
    problem has enough samples for; each problem uses its own sample count n, then problems are averaged.
    """
    if not rows:
        raise ValueError("summarize_generations: no generations")
    by_problem: dict[str, list[dict]] = {}
    for row in rows:
        by_problem.setdefault(str(row["problem_id"]), []).append(row)

    per_problem = []
    consensus_correct = []
    problem_votes = []  # per problem: [(count, correct)] per distinct normalized answer
    for problem_id, samples in by_problem.items():
        num_correct = sum(bool(s["correct"]) for s in samples)
        per_problem.append({
            "problem_id": problem_id,
            "num_correct": num_correct,
            "num_samples": len(samples),
            "accuracy": num_correct / len(samples),
        })
        vote = majority_vote([s.get("extracted") for s in samples])
        # An answer is right when any sample giving it was graded correct (as cons@k reads the vote).
        answers: dict[str, list[int]] = {}
        for s in samples:
            answer = normalize_answer(s["extracted"]) if s.get("extracted") else ""
            if answer:
                tally = answers.setdefault(answer, [0, 0])
                tally[0] += 1
                tally[1] |= bool(s["correct"])
        consensus_correct.append(vote is not None and bool(answers[vote][1]))
        problem_votes.append([(count, bool(right)) for count, right in answers.values()])

    accuracies = [p["accuracy"] for p in per_problem]
    min_samples = min(p["num_samples"] for p in per_problem)
    powers = [2**i for i in range(int(math.log2(max(1, min(k, min_samples)))) + 1)]

    def mean_over_problems(metric) -> float:
        return sum(metric(q["num_samples"], q["num_correct"], votes)
                   for q, votes in zip(per_problem, problem_votes, strict=True)) / len(per_problem)

    pass_at = {str(j): mean_over_problems(lambda n, c, _, j=j: pass_at_k(n, c, j)) for j in powers}
    g_pass = {str(j): {str(tau): mean_over_problems(lambda n, c, _, j=j, tau=tau: g_pass_at_k(n, c, j, tau))
                       for tau in G_PASS_TAUS} for j in powers}
    mg_pass = {str(j): mean_over_problems(lambda n, c, _, j=j: mg_pass_at_k(n, c, j)) for j in powers}
    maj = {str(j): mean_over_problems(lambda n, _, votes, j=j: maj_at_k(votes, n, j)) for j in powers}
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
        "maj_at_k": maj,
        "g_pass_at_k": g_pass,
        "mg_pass_at_k": mg_pass,
        "response_length": length_stats(lengths),
        "truncation_rate": sum(truncated) / len(truncated) if truncated else None,
        "verdict_counts": {v: verdicts.get(v, 0) for v in VERDICTS},
        "per_problem": per_problem,
        "sampling": dict(sampling),
    }
