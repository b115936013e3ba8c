"""Metrics against hand-computed values and brute force."""

import itertools
import math
import random

import pytest

from fipo_bench.evals.checker import CheckResult
from fipo_bench.evals.io import generation_row
from fipo_bench.evals.metrics import (
    bootstrap_ci,
    length_stats,
    majority_vote,
    pass_at_k,
    summarize_generations,
)


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    """Fraction of the size-k subsets of the samples that contain a correct one (the definition)."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_brute_force_over_subsets(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(outcomes, k), abs=1e-12)


def test_pass_at_k_hand_values():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the fraction correct; c=0 is 0; n-c < k is 1
    assert pass_at_k(32, 7, 1) == pytest.approx(7 / 32)
    assert pass_at_k(32, 0, 16) == 0.0
    assert pass_at_k(32, 20, 16) == 1.0
    # large n stays finite and matches the binomial form
    assert pass_at_k(1024, 3, 64) == pytest.approx(1 - math.comb(1021, 64) / math.comb(1024, 64), rel=1e-9)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    values = [0.0, 0.25, 0.5, 1.0, 1.0, 0.75, 0.0, 0.5]
    low, high = bootstrap_ci(values, n_boot=5_000, seed=3)
    mean = sum(values) / len(values)
    assert low < mean < high
    assert (low, high) == bootstrap_ci(values, n_boot=5_000, seed=3)
    assert bootstrap_ci([0.4] * 10) == pytest.approx((0.4, 0.4))  # no spread, no interval
    # Normal approximation: the 95% interval of a mean of 400 fair coins is about +-1.96 * 0.5 / 20.
    rng = random.Random(0)
    coins = [float(rng.random() < 0.5) for _ in range(400)]
    low, high = bootstrap_ci(coins)
    assert high - low == pytest.approx(2 * 1.96 * 0.5 / 20, rel=0.1)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_length_stats_hand_values():
    # 10 lengths 1..10: mean 5.5, median 5.5, p90 at position 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9) = 9.1
    stats = length_stats(list(range(10, 0, -1)))
    assert stats == pytest.approx({"mean": 5.5, "median": 5.5, "p90": 9.1, "max": 10})
    assert length_stats([]) == {"mean": None, "median": None, "p90": None, "max": None}


def test_majority_vote_normalizes_and_breaks_ties_by_first_seen():
    assert majority_vote(["$5$", "5", "\\boxed{5}", "6", "6"]) == "5"  # three spellings of 5
    assert majority_vote(["7", "8", "8", "7"]) == "7"  # tie: 7 came first
    assert majority_vote([None, None]) is None
    assert majority_vote([None, "1,000", "1000"]) == "1000"


def _row(pid, i, extracted, correct, tokens, truncated):
    verdict = "no_answer" if extracted is None else ("correct" if correct else "incorrect")
    result = CheckResult(verdict, extracted)
    return generation_row(pid, i, f"Answer: {extracted}", "gold", result, tokens, truncated)


def test_summary_hand_computed():
    # Problem a: 4 samples, 3 correct (answers 5,5,5 correct; 7 wrong) -> accuracy 0.75, vote 5 correct.
    # Problem b: 4 samples, 1 correct (answer 2); wrong answers 3,3 and no answer -> accuracy 0.25,
    #            vote 3 wrong.
    rows = [
        _row("a", 0, "5", True, 10, False), _row("a", 1, "7", False, 20, False),
        _row("a", 2, "$5$", True, 30, False), _row("a", 3, "5", True, 40, True),
        _row("b", 0, "3", False, 50, False), _row("b", 1, "2", True, 60, False),
        _row("b", 2, None, False, 70, True), _row("b", 3, "3", False, 80, True),
    ]
    s = summarize_generations(rows, dataset="d", checkpoint="ckpt", k=4, sampling={"temperature": 1.0})
    assert s["num_problems"] == 2 and s["num_samples"] == 8 and s["k"] == 4
    assert s["avg_at_k"] == pytest.approx((0.75 + 0.25) / 2)
    # pass@2: a: 1 - C(1,2)/C(4,2) = 1; b: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5 -> mean 0.75
    assert s["pass_at_k"] == pytest.approx({"1": 0.5, "2": 0.75, "4": 1.0})
    assert s["cons_at_k"] == pytest.approx(0.5)
    # lengths 10..80: mean 45, median 45, p90 at 0.9 * 7 = 6.3 -> 70 + 0.3 * 10 = 73
    assert s["response_length"] == pytest.approx({"mean": 45.0, "median": 45.0, "p90": 73.0, "max": 80})
    assert s["truncation_rate"] == pytest.approx(3 / 8)
    assert s["verdict_counts"] == {"correct": 4, "incorrect": 3, "no_answer": 1, "timeout": 0, "error": 0}
    assert s["per_problem"] == [
        {"problem_id": "a", "num_correct": 3, "num_samples": 4, "accuracy": 0.75},
        {"problem_id": "b", "num_correct": 1, "num_samples": 4, "accuracy": 0.25},
    ]
    low, high = s["avg_at_k_ci95"]
    assert 0.25 <= low <= s["avg_at_k"] <= high <= 0.75  # resampling 2 problems: means in [0.25, 0.75]
    assert s["sampling"] == {"temperature": 1.0}


def test_summary_pass_at_k_only_where_every_problem_has_enough_samples():
    rows = [_row("a", i, "1", True, 1, False) for i in range(8)]
    rows += [_row("b", i, "1", False, 1, False) for i in range(3)]
    s = summarize_generations(rows, dataset="d", checkpoint="c", k=8, sampling={})
    assert list(s["pass_at_k"]) == ["1", "2"]  # b has 3 samples: 4 and 8 are undefined for it


def test_summary_is_invariant_to_row_order():
    rng = random.Random(1)
    rows = [_row(f"p{i % 5}", i // 5, str(rng.randint(0, 3)), rng.random() < 0.4, rng.randint(1, 99), False)
            for i in range(40)]
    shuffled = rows[:]
    rng.shuffle(shuffled)
    a = summarize_generations(rows, dataset="d", checkpoint="c", k=8, sampling={})
    b = summarize_generations(shuffled, dataset="d", checkpoint="c", k=8, sampling={})
    for key in ("avg_at_k", "pass_at_k", "response_length", "verdict_counts", "truncation_rate"):
        assert a[key] == pytest.approx(b[key])
    assert sorted(a["per_problem"], key=lambda p: p["problem_id"]) == sorted(
        b["per_problem"], key=lambda p: p["problem_id"]
    )
