"""Metrics against hand-computed values and brute force."""

import itertools
import math
import random
from collections import Counter

import pytest

from fipo_bench.evals.io import generation_row
from fipo_bench.evals.metrics import (
    G_PASS_TAUS,
    bootstrap_ci,
    g_pass_at_k,
    length_stats,
    maj_at_k,
    majority_vote,
    mg_pass_at_k,
    pass_at_k,
    summarize_generations,
)
from fipo_bench.evals.result import CheckResult


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


# ----------------------------------------------------------------------------------------------------
# G-Pass@k, mG-Pass@k (arXiv 2412.13147; open-compass/GPassK, lighteval) and maj@k


def naive_at_least(outcomes: list[bool], k: int, m: int) -> float:
    """Share of the size-k subsets with at least m correct samples (the definition, by enumeration)."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(sum(s) >= m for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_g_pass_at_k_is_the_hypergeometric_tail_of_the_subsets(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            for tau in G_PASS_TAUS:
                m = max(math.ceil(k * tau), 1)
                assert g_pass_at_k(n, c, k, tau) == pytest.approx(naive_at_least(outcomes, k, m), abs=1e-12)
            # tau = 0 is pass@k (at least one correct), tau = 1 needs all k correct: C(c, k) / C(n, k).
            assert g_pass_at_k(n, c, k, 0.0) == pytest.approx(pass_at_k(n, c, k), abs=1e-12)
            assert g_pass_at_k(n, c, k, 1.0) == pytest.approx(math.comb(c, k) / math.comb(n, k), abs=1e-12)
            # mG-Pass@k: (2/k) times the tails at i = ceil(k/2) + 1 .. k, written out with its bounds.
            low = -(-k // 2) + 1
            expected = 2 / k * sum(naive_at_least(outcomes, k, i) for i in range(low, k + 1))
            assert mg_pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_g_pass_at_k_hand_values():
    # n=4, c=2, k=2: P(both correct) = C(2,2) C(2,0) / C(4,2) = 1/6; P(at least one) = 5/6.
    assert g_pass_at_k(4, 2, 2, 1.0) == pytest.approx(1 / 6)
    assert g_pass_at_k(4, 2, 2, 0.75) == pytest.approx(1 / 6)  # ceil(1.5) = 2
    assert g_pass_at_k(4, 2, 2, 0.5) == pytest.approx(5 / 6)  # ceil(1) = 1
    assert g_pass_at_k(4, 2, 2, 0.25) == pytest.approx(5 / 6)  # ceil(.5) = 1
    # mG-Pass@2 sums i from ceil(1) + 1 = 2 to 2: (2/2) P(2 of 2) = 1/6.
    assert mg_pass_at_k(4, 2, 2) == pytest.approx(1 / 6)
    # n=8, c=5, k=4: P(>=3) = (C(5,3) C(3,1) + C(5,4) C(3,0)) / C(8,4) = (30 + 5) / 70 = 1/2, P(4) = 5/70;
    # mG-Pass@4 = (2/4) (P(>=3) + P(>=4)) = (1/2) (40/70) = 2/7. G-Pass@4_0.75: ceil(3) = 3 -> 1/2.
    assert g_pass_at_k(8, 5, 4, 0.75) == pytest.approx(0.5)
    assert g_pass_at_k(8, 5, 4, 1.0) == pytest.approx(5 / 70)
    assert mg_pass_at_k(8, 5, 4) == pytest.approx(2 / 7)
    # k = 5: the sum runs from ceil(2.5) + 1 = 4 (not 3); k = 1: the sum is empty.
    assert mg_pass_at_k(5, 5, 5) == pytest.approx(2 / 5 * 2)
    assert mg_pass_at_k(7, 7, 1) == 0.0 and mg_pass_at_k(7, 0, 1) == 0.0
    # Exact at large n (integer arithmetic): all 32 of 32 from 64 samples with 48 correct.
    assert g_pass_at_k(64, 48, 32, 1.0) == pytest.approx(math.comb(48, 32) / math.comb(64, 32), rel=1e-12)


@pytest.mark.parametrize("args", [(4, 5, 1, 0.5), (4, 1, 0, 0.5), (4, 1, 5, 0.5), (4, 1, 2, 1.5),
                                  (4, 1, 2, -0.1)])
def test_g_pass_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        g_pass_at_k(*args)
    if 0 <= args[3] <= 1:
        with pytest.raises(ValueError):
            mg_pass_at_k(*args[:3])


def naive_maj_at_k(answers: list[str | None], right: set[str], k: int) -> float:
    """Mean over every size-k subset of the samples of its vote's correctness, ties split evenly."""
    total = 0.0
    subsets = list(itertools.combinations(answers, k))
    for subset in subsets:
        counts = Counter(a for a in subset if a is not None)
        if counts:
            best = max(counts.values())
            tied = [a for a, n in counts.items() if n == best]
            total += sum(a in right for a in tied) / len(tied)
    return total / len(subsets)


def votes_of(answers: list[str | None], right: set[str]) -> list[tuple[int, bool]]:
    counts = Counter(a for a in answers if a is not None)
    return [(n, a in right) for a, n in counts.items()]


def test_maj_at_k_equals_the_mean_over_subsets():
    rng = random.Random(5)
    cases = [(["a", "a", "b", None, "b", "c"], {"a"}), (["a", "b", "c", "d"], {"b"}),
             ([None, None, "x"], {"x"}),
             (["a", "a", "a", "b", "b", "c", "c", "c"], {"b", "c"})]  # two right spellings of one number
    for _ in range(30):
        n = rng.randint(1, 9)
        answers = [rng.choice(["a", "b", "c", None]) for _ in range(n)]
        cases.append((answers, {rng.choice("abc")}))
    for answers, right in cases:
        for k in range(1, len(answers) + 1):
            expected = naive_maj_at_k(answers, right, k)
            assert maj_at_k(votes_of(answers, right), len(answers), k) == pytest.approx(expected, abs=1e-12)


def test_maj_at_k_hand_values_and_limits():
    # Answers a a b b c, a right. k = 5: a and b tie at 2 -> 1/2 credit. k = 1: 2 of 5 samples say a.
    votes = [(2, True), (2, False), (1, False)]
    assert maj_at_k(votes, 5, 5) == pytest.approx(0.5)
    assert maj_at_k(votes, 5, 1) == pytest.approx(2 / 5)
    # k = 2 over C(5,2) = 10 pairs: {a,a} wins 1; {a,b} x4 and {a,c} x2 tie -> 1/2 each; {b,b},{b,c} lose.
    assert maj_at_k(votes, 5, 2) == pytest.approx((1 + 6 * 0.5) / 10)
    # No answer at all: 0; every sample right: 1; k = 1 is the share of right answers (= avg@k).
    assert maj_at_k([], 4, 2) == 0.0
    assert maj_at_k([(4, True)], 4, 3) == 1.0
    with pytest.raises(ValueError):
        maj_at_k([(3, True), (2, False)], 4, 2)  # 5 votes from 4 samples
    with pytest.raises(ValueError):
        maj_at_k([(1, True)], 4, 5)


def test_summary_g_pass_maj_hand_computed():
    # Problem a: answers 5 5 5 7 (3 right); problem b: 3 2 - 3 (1 right: "2").
    rows = [
        _row("a", 0, "5", True, 1, False), _row("a", 1, "7", False, 1, False),
        _row("a", 2, "$5$", True, 1, False), _row("a", 3, "5", True, 1, False),
        _row("b", 0, "3", False, 1, False), _row("b", 1, "2", True, 1, False),
        _row("b", 2, None, False, 1, False), _row("b", 3, "3", False, 1, False),
    ]
    s = summarize_generations(rows, dataset="d", checkpoint="c", k=4, sampling={})
    assert set(s["g_pass_at_k"]) == set(s["mg_pass_at_k"]) == set(s["maj_at_k"]) == {"1", "2", "4"}
    assert set(s["g_pass_at_k"]["4"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    # G-Pass@4 at tau = 1: a needs 4 of 4 with 3 right -> 0; b -> 0. tau = .75: ceil(3) -> a 1, b 0.
    assert s["g_pass_at_k"]["4"]["1.0"] == 0.0 and s["g_pass_at_k"]["4"]["0.75"] == pytest.approx(0.5)
    # G-Pass@2 tau = 1: a: C(3,2)/C(4,2) = 1/2, b: 0 -> 1/4; tau = 0 is pass@2.
    assert s["g_pass_at_k"]["2"]["1.0"] == pytest.approx(0.25)
    assert s["g_pass_at_k"]["2"]["0.0"] == pytest.approx(s["pass_at_k"]["2"])
    # mG-Pass@4 = (2/4)(P(>=3) + P(>=4)): a (1 + 0) / 2 = .5, b 0 -> .25. mG-Pass@1 = 0.
    assert s["mg_pass_at_k"]["4"] == pytest.approx(0.25) and s["mg_pass_at_k"]["1"] == 0.0
    # maj@4 at k = n: a's vote 5 wins (right), b's vote 3 wins (wrong) -> cons@4 = .5.
    assert s["maj_at_k"]["4"] == pytest.approx(s["cons_at_k"]) == pytest.approx(0.5)
    # maj@1 = avg@k here (whether a sample is right depends only on its answer).
    assert s["maj_at_k"]["1"] == pytest.approx(s["avg_at_k"])
